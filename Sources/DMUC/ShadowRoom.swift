import XMPPCore

/// The bridge's copy of one room: the joining node of PROTOCOL.md §3, for one IRC channel.
///
/// Its local occupants are the IRC users of the channel; everyone else in the room (XMPP
/// clients, other bridges' IRC users) is a remote occupant that the bridge shows on IRC.
/// Everything local goes to the master (master-submit); the master's fanout is the only way
/// remote events reach IRC. A pure state machine: events in, actions out.
public struct ShadowRoom: Sendable {
    /// The master room's bare JID.
    public let masterRoom: JID
    /// This shadow's bare JID (`#chan%network@bridge.domain`).
    public let jid: JID

    public enum Action: Sendable, Hashable {
        /// A stanza for the master.
        case send(XMLElement)
        /// A remote occupant entered the room: show them on IRC.
        case remoteJoined(RemoteOccupant)
        /// A remote occupant left the room.
        case remoteLeft(RemoteOccupant, reason: String?)
        /// A remote occupant spoke in the room. `lineID`: the line's id (the room's
        /// stanza-id where it gave one), for `noteIRCMsgID` once IRC has given it a msgid.
        case remoteMessage(RemoteOccupant, body: String, lineID: String? = nil)
        /// A remote occupant replied, corrected a line or reacted (`RoomLine`).
        case remoteLine(RemoteOccupant, RoomLine, lineID: String? = nil)
        /// A remote occupant changed nick (303): one NICK on IRC, not a leave and a join.
        case remoteNickChanged(RemoteOccupant, newNick: String)
        /// A remote occupant changed the subject.
        case remoteSubject(RemoteOccupant, subject: String)
        /// A remote occupant's room role, when they join and when it changes.
        case remoteRole(RemoteOccupant, role: String)
        /// A remote occupant went away (`<show>` away, xa or dnd; the message is the status or
        /// the show) or came back (`nil`).
        case remoteAway(RemoteOccupant, message: String?)
        /// A remote occupant wrote privately to one of our IRC users (flow F).
        case privateMessage(from: RemoteOccupant, toLocalNick: String, body: String)
        /// The master refused an IRC user (flow I); the bridge tells them.
        case localRefused(nick: String, condition: String, text: String?)
        /// The master refused one line an IRC user said (too fast, no voice); the bridge tells
        /// them. The user stays in the room.
        case lineRefused(nick: String, condition: String, text: String?, body: String)
        /// An XMPP moderator kicked or banned an IRC user from the room (flow E): the bridge
        /// kicks (and bans) them on IRC where it holds ops, else tells them; either way they
        /// are no longer relayed.
        case localRemoved(nick: String, banned: Bool, actor: String?, reason: String?)
        /// An IRC user's nick was taken in the room: she is there under `roomNick` (flow I's
        /// one suffixed retry); the bridge tells her.
        case localRenamed(nick: String, roomNick: String)
        /// Federation failed for a reason other than the user (the master unreachable):
        /// the bridge calls `retryFederation()` later.
        case federationFailed(condition: String)
        /// Observations for logs and metrics.
        case note(Note)
    }

    public enum Note: Sendable, Hashable {
        case federated(seq: UInt64)
        case duplicateDropped(seq: UInt64)
        case seqGap(expected: UInt64, got: UInt64)
        case echoMatched
        case epochChanged
        /// The master answered a `resync`: how many stanzas it replayed, or nil for "full".
        case resynced(replayed: Int?)
        /// The link to the master split (unanswered pings, a `<split/>` refusal, the master's
        /// server unreachable); the node federates again.
        case split(why: String)
    }

    /// Someone in the room who is not one of this node's IRC users.
    public struct RemoteOccupant: Sendable, Hashable {
        public var nick: String
        public var realJID: JID

        public init(nick: String, realJID: JID) {
            self.nick = nick
            self.realJID = realJID
        }
    }

    struct Local: Sendable {
        /// The IRC nick.
        var nick: String
        /// The nick in the room: the IRC nick, or it with the collision suffix (flow I).
        var roomNick: String
        var realJID: JID
        /// The room role the channel modes give (PROTOCOL.md §4).
        var role = "participant"
        /// AWAY on IRC (away-notify): `<show>away</show>` with this status, nil when back.
        var away: String?
        /// The join was sent to the master.
        var submitted = false
        var refused = false
        /// The room refused this IRC nick as taken and `roomNick` carries the suffix: a second
        /// conflict refuses her.
        var suffixed = false
        /// She shows under a suffixed `roomNick` but the room has not confirmed it yet: she is
        /// told her room nick when it does, not before (the suffixed join may be refused too).
        var renameUntold = false
    }

    enum Federation: Sendable, Equatable {
        case idle
        /// The federating presence for this local user (folded IRC nick) is out; waiting
        /// for the burst.
        case federating(key: String)
        case federated
    }

    private var federation = Federation.idle
    private var lastSeq: UInt64 = 0
    /// Local users by folded IRC nick.
    private var locals: [String: Local] = [:]
    private var localOrder: [String] = []
    /// Remote occupants by folded room nick.
    private var remotes: [String: RemoteOccupant] = [:]
    /// Away messages of remote occupants who are away, by folded room nick.
    private var away: [String: String] = [:]
    /// Remote occupants' room roles, by folded room nick.
    private var roles: [String: String] = [:]
    /// Remote occupants not yet confirmed by the current burst (a re-federation diff).
    private var unconfirmed: Set<String> = []
    /// This node's own users as the burst being received shows them, by folded room nick.
    private var burstOurs: [String: (nick: String, real: JID)] = [:]
    /// Submitted lines whose echo has not come back, by origin id (also the message's id). Kept
    /// across a re-federation: an echo may come in the replay, and a line the XMPP server
    /// bounced (the master's component down) is held again from here, since the bounce
    /// carries no body (Prosody's error replies do not).
    private var pendingEchoes: [String: HeldLine] = [:]
    /// More than this many lines never echoed (a master that lost them): forgotten.
    static let maximumPendingEchoes = 1000
    /// Lines said on IRC while the room was not federated, sent once it is.
    private var held: [HeldLine] = []
    private struct HeldLine {
        var nick: String
        var body: String
        var originID: String
        var isIRCMsgID: Bool
        /// The XEP-0461 `<reply>` the line carries, if it answers one.
        var reply: XMLElement?
    }
    public static let maximumHeldLines = 500
    /// Numbered stanzas that came after a gap, held until the master replays what is missing.
    private var afterGap: [UInt64: XMLElement] = [:]
    public static let maximumAfterGap = 1000
    /// The id of the `resync` waiting for its answer.
    private var resyncID: String?
    /// Where the node stood when its link split (epoch, last seq): it federates again with
    /// them, and after the new burst asks for the messages it missed (flow G).
    private var resumeFrom: (epoch: String, seq: UInt64)?
    /// The numbers being caught up after a split: replayed messages in this range are relayed
    /// although the burst already moved `lastSeq` past them (its roster covers the presences).
    private var catchUp: ClosedRange<UInt64>?
    /// While catching up: the last seq of `catchUp` handled, which is where the node stands
    /// (`position`) until the catch-up ends; newer live stanzas wait in `afterGap` meanwhile,
    /// so IRC sees the room's lines in the room's order.
    private var caughtUpTo: UInt64 = 0
    /// Liveness of the link (flow G): heard from the master since the last tick, the ping
    /// waiting for an answer, unanswered pings in a row.
    /// Recent lines, so replies and reactions can name whom they refer to.
    private var recent = RecentLines()
    private var heardSinceTick = true
    private var pingID: String?
    private var missedPings = 0

    /// What an IRC user's nick gets when the room has it already (flow I): `alice|irc`.
    public let collisionSuffix: String

    public init(masterRoom: JID, jid: JID, collisionSuffix: String = "|irc") {
        self.masterRoom = masterRoom.bare
        self.jid = jid.bare
        self.collisionSuffix = collisionSuffix
        // `#chan%network`: real JIDs of this network's users end in `%network`.
        let local = jid.local ?? ""
        self.realSuffix = local.lastIndex(of: "%").map { String(local[$0...]) } ?? ""
    }

    /// `%network`, the end of the local part of every real JID this node asserts.
    private let realSuffix: String
    /// The master's epoch, from the last burst's `<sync/>`.
    private var epoch: String?

    public var isFederated: Bool { federation == .federated }

    /// Where this node stands in the room's sequence (the master's epoch and the last seq
    /// handled), once federated: what a restart resumes from.
    public var position: (epoch: String, seq: UInt64)? {
        guard federation == .federated, let epoch else { return nil }
        return (epoch, catchUp == nil ? lastSeq : caughtUpTo)
    }

    /// Before the first federation of a restarted bridge: the room stood at `seq` of `epoch`
    /// when it stopped. The federation carries it, and the lines said since are asked for
    /// after the burst, when the master still has them (the same epoch, its replay buffer).
    public mutating func resume(epoch: String, seq: UInt64) {
        guard federation == .idle, self.epoch == nil else { return }
        resumeFrom = (epoch, seq)
    }
    public var remoteOccupants: [RemoteOccupant] { remotes.values.sorted { $0.nick < $1.nick } }
    /// The remote occupant under `nick` (the room's fold), if any.
    public func remote(nick: String) -> RemoteOccupant? { remotes[Self.fold(nick)] }
    public var localNicks: [String] { localOrder.compactMap { locals[$0]?.nick } }

    /// Room nicks of the remote occupants shown away (away, xa, dnd).
    public var awayNicks: Set<String> { Set(away.keys.compactMap { remotes[$0]?.nick }) }

    static func fold(_ nick: String) -> String { MasterRoom.fold(nick) }

    /// The key (folded IRC nick) of the local user shown in the room as `roomNick`.
    private func localKey(roomNick: String) -> String? {
        let folded = Self.fold(roomNick)
        if let local = locals[folded], Self.fold(local.roomNick) == folded { return folded }
        return locals.first { Self.fold($0.value.roomNick) == folded }?.key
    }

    /// Flow I: `local` (key `key`) shows in the room as her nick with the collision suffix,
    /// numbered (`alice|irc2`...) when another local user shows as that. She is told once the
    /// room shows her under it (`confirmRename`).
    private func suffix(_ local: inout Local, key: String) {
        func taken(_ nick: String) -> Bool { localKey(roomNick: nick).map { $0 != key } ?? false }
        let wanted = local.nick + collisionSuffix
        local.suffixed = true
        local.renameUntold = true
        local.roomNick = !taken(wanted) ? wanted : (2...99).lazy.map { wanted + String($0) }.first { !taken($0) } ?? wanted + RandomID.make(bytes: 2)
    }

    /// The room shows our user under `roomNick` (the master's ack of her presence): if that
    /// is a suffixed nick she has not heard of yet, she hears it now.
    private mutating func confirmRename(roomNick: String) -> [Action] {
        guard let key = localKey(roomNick: roomNick), let local = locals[key], local.renameUntold, Self.fold(local.roomNick) == Self.fold(roomNick) else { return [] }
        locals[key]?.renameUntold = false
        return [.localRenamed(nick: local.nick, roomNick: local.roomNick)]
    }

    /// Whether `roomNick` is `nick` with the collision suffix, numbered or not (`dave|irc2`).
    static func isSuffixed(_ roomNick: String, of nick: String, suffix: String) -> Bool {
        let base = fold(nick + suffix), shown = fold(roomNick)
        guard shown.hasPrefix(base) else { return false }
        let rest = shown.dropFirst(base.count)
        return rest.allSatisfy { $0.isASCII && $0.isNumber }
    }

    /// The room nick of the local user `nick` (an IRC nick), if she is one.
    public func roomNick(ofLocal nick: String) -> String? { locals[Self.fold(nick)]?.roomNick }

    /// True for a real JID this node's network asserts (one of its own IRC users). Another
    /// network bridged by the same process into the same room is not ours.
    public func isOurs(_ real: JID) -> Bool { real.domain == jid.domain && (real.local ?? "").hasSuffix(realSuffix) }

    // MARK: - IRC side

    public mutating func ircJoined(nick: String, realJID: JID, role: String = "participant") -> [Action] {
        let key = Self.fold(nick)
        guard locals[key] == nil else { return [] }
        var local = Local(nick: nick, roomNick: nick, realJID: realJID, role: role)
        // Another IRC user may show as this nick already (`alice|irc` after a collision).
        if localKey(roomNick: nick) != nil { suffix(&local, key: key) }
        locals[key] = local
        localOrder.append(key)
        switch federation {
        case .idle: return federate()
        case .federating: return []
        case .federated: return submitJoin(key)
        }
    }

    /// PART, QUIT or KICK on IRC; `netsplit`: the user's server split from the bridge's
    /// (`reason` names the two servers), shown as 333.
    public mutating func ircLeft(nick: String, reason: String?, kickedBy: String? = nil, netsplit: Bool = false) -> [Action] {
        let key = Self.fold(nick)
        guard let local = locals.removeValue(forKey: key) else { return [] }
        localOrder.removeAll { $0 == key }
        held.removeAll { Self.fold($0.nick) == key }
        var actions: [Action] = []
        if local.submitted && !local.refused {
            var children: [XMLElement] = [LinkElements.fmuc(from: local.realJID)]
            if let kickedBy {
                children.append(LinkElements.removed(kind: "kick", by: kickedBy, reason: reason))
            } else if netsplit {
                children.insert(.text("status", namespace: NS.component, reason ?? "netsplit"), at: 0)
                children.append(LinkElements.removed(kind: "netsplit", by: nil, reason: nil))
            } else if let reason, !reason.isEmpty {
                children.insert(.text("status", namespace: NS.component, reason), at: 0)
            }
            actions.append(.send(.stanza(.presence, from: jid.with(resource: local.roomNick), to: masterRoom.with(resource: local.roomNick), type: "unavailable", children: children)))
        }
        return actions
    }

    /// A channel line from an IRC user. `originID` is the IRC server's msgid where
    /// `isIRCMsgID`; `inReplyTo`: the msgid an IRCv3 client's `+draft/reply` named, which
    /// becomes a XEP-0461 reply when the room's recent lines know it.
    public mutating func ircMessage(nick: String, body: String, originID: String, isIRCMsgID: Bool = false, inReplyTo: String? = nil) -> [Action] {
        let key = Self.fold(nick)
        guard let local = locals[key], !local.refused else { return [] }
        let line = HeldLine(nick: nick, body: body, originID: originID, isIRCMsgID: isIRCMsgID, reply: inReplyTo.flatMap(replyElement))
        guard federation == .federated, local.submitted else {
            if held.count < Self.maximumHeldLines { held.append(line) }
            return []
        }
        return [submitMessage(local, line)]
    }

    /// XEP-0461 for a line IRC named by its msgid: to its author's occupant JID, by the
    /// room's stanza-id.
    private func replyElement(toIRCMsgID msgid: String) -> XMLElement? {
        // An IRC user's line is also known by its origin-id, which is its msgid: so it is
        // found even when it came back in a replay, after its echo was no longer awaited.
        func localLine() -> RecentLines.Line? {
            recent.line(msgid).flatMap { line in if case .local = line.author { line } else { nil } }
        }
        guard let line = recent.line(ircMsgID: msgid) ?? localLine() else { return nil }
        var reply = XMLElement("reply", namespace: RoomLineParsing.reply, attributes: ["id": line.ids[0]])
        if let nick = line.roomNick { reply["to"] = masterRoom.with(resource: nick).description }
        return reply
    }

    /// IRC gave a line relayed from the room (`lineID`, as `remoteMessage` named it) the msgid
    /// `msgid`: a reply from IRC naming that msgid names the line.
    public mutating func noteIRCMsgID(_ msgid: String, forLine lineID: String) {
        recent.noteIRCMsgID(msgid, forLine: lineID)
    }

    /// NICK on IRC: the same real JID under a new nick, which the master shows as one 303
    /// nick change (XEP-0045 §7.6), never as a leave and a join.
    public mutating func ircNickChanged(from oldNick: String, to newNick: String) -> [Action] {
        let oldKey = Self.fold(oldNick)
        let newKey = Self.fold(newNick)
        guard var local = locals.removeValue(forKey: oldKey) else { return [] }
        local.nick = newNick
        local.roomNick = newNick
        local.suffixed = false
        local.renameUntold = false
        if localKey(roomNick: newNick) != nil { suffix(&local, key: newKey) }
        locals[newKey] = local
        if let index = localOrder.firstIndex(of: oldKey) { localOrder[index] = newKey }
        for index in held.indices where Self.fold(held[index].nick) == oldKey { held[index].nick = newNick }
        if case .federating(let key) = federation, key == oldKey { federation = .federating(key: newKey) }
        // Sent whenever her join is out, even before the burst: the master takes them in order.
        guard local.submitted, !local.refused else { return [] }
        return [.send(updatePresence(local))]
    }

    /// Channel modes changed what an IRC user is: moderator (q/a/o/h) or participant.
    public mutating func ircRoleChanged(nick: String, role: String) -> [Action] {
        change(\.role, of: nick, to: role)
    }

    /// AWAY on IRC (away-notify, PROTOCOL.md §4): the user shows away with the message as
    /// status; `message` nil is back.
    public mutating func ircAway(nick: String, message: String?) -> [Action] {
        change(\.away, of: nick, to: message)
    }

    /// Sets what a local user's presence shows; a presence update when it changed and the
    /// master already has her.
    private mutating func change<Value: Equatable>(_ field: WritableKeyPath<Local, Value>, of nick: String, to value: Value) -> [Action] {
        let key = Self.fold(nick)
        guard var local = locals[key], local[keyPath: field] != value else { return [] }
        local[keyPath: field] = value
        locals[key] = local
        guard local.submitted, !local.refused, federation == .federated else { return [] }
        return [.send(updatePresence(local))]
    }

    /// A joined user's presence as it now is: role, away, and who it is.
    private func updatePresence(_ local: Local) -> XMLElement {
        .stanza(.presence, from: jid.with(resource: local.roomNick), to: masterRoom.with(resource: local.roomNick), children: awayChildren(local) + [
            Self.roleElement(local.role), LinkElements.fmuc(from: local.realJID),
        ])
    }

    private func awayChildren(_ local: Local) -> [XMLElement] {
        guard let away = local.away else { return [] }
        return [.text("show", namespace: NS.component, "away")] + (away.isEmpty ? [] : [.text("status", namespace: NS.component, away)])
    }

    static func roleElement(_ role: String) -> XMLElement {
        XMLElement("x", namespace: NS.mucUser, children: [.element(XMLElement("item", namespace: NS.mucUser, attributes: ["role": role]))])
    }

    /// TOPIC on IRC: the room's subject, set by that user.
    public mutating func ircTopic(nick: String, topic: String) -> [Action] {
        guard let local = locals[Self.fold(nick)], !local.refused, local.submitted, federation == .federated else { return [] }
        return [.send(.stanza(.message, from: jid.with(resource: local.roomNick), to: masterRoom, type: "groupchat", children: [
            .text("subject", namespace: NS.component, topic), LinkElements.fmuc(from: local.realJID),
        ]))]
    }

    /// Starts over with the master (its state was lost, or our link to it was): every IRC user
    /// is submitted again, and the new burst is diffed against the remote occupants we show.
    /// `resuming`: the link split, so after the burst the messages missed meanwhile are asked
    /// for, from where this node stood.
    public mutating func refederate(resuming: Bool = false) -> [Action] {
        if !resuming {
            resumeFrom = nil
        } else if let position {
            // Where IRC stands: mid catch-up that is `caughtUpTo`, not the burst's seq.
            resumeFrom = position
        }
        catchUp = nil
        federation = .idle
        epoch = nil
        lastSeq = 0
        afterGap.removeAll()
        resyncID = nil
        pingID = nil
        missedPings = 0
        if !resuming { pendingEchoes.removeAll() }
        for key in localOrder where locals[key]?.refused == false { locals[key]?.submitted = false }
        return federate()
    }

    /// Tries again after `federationFailed`.
    public mutating func retryFederation() -> [Action] {
        guard federation == .idle else { return [] }
        return federate()
    }

    // MARK: - XMPP side (the master's stanzas to this node's bare JID or its occupants)

    public mutating func receive(_ stanza: XMLElement) -> [Action] {
        guard let from = stanza["from"].flatMap(JID.init), from.bare == masterRoom else { return [] }
        // A bounce from the XMPP server (the master's component down, its server unreachable)
        // comes "from" the room too, but says nothing of the master being alive.
        let bounced = LinkElements.isBounce(stanza)
        if !bounced {
            heardSinceTick = true
            missedPings = 0
        }
        if stanza.name == "iq" { return iq(stanza) }
        if stanza["type"] == "error" {
            // A bounced line was never delivered: held for after the (new) burst, whether or
            // not this node already knows the link is down.
            if LinkElements.isSplitError(stanza) || (bounced && stanza.name == "message") {
                return splitRefusal(stanza)
            }
            return error(stanza, from: from)
        }
        if let n = LinkElements.seqNumber(stanza) {
            guard federation == .federated else { return [] }
            if let epoch, let theirs = stanza.child("seq", namespace: NS.link)?["epoch"], theirs != epoch {
                // The master lost the room's state (a restart): what we think is joined is not.
                return [.note(.epochChanged)] + refederate(resuming: true)
            }
            if n <= lastSeq {
                if let catchUp, catchUp.contains(n), n > caughtUpTo {
                    caughtUpTo = n
                    // Only the lines: the burst already showed the roster as it is now.
                    guard stanza.name == "message", stanza.child("body", namespace: stanza.namespace) != nil else { return [] }
                    return apply(stanza, from: from)
                }
                return [.note(.duplicateDropped(seq: n))]
            }
            if catchUp != nil {
                // Live lines wait for the missed ones before them.
                return gap(stanza, seq: n)
            }
            if n != lastSeq + 1 { return gap(stanza, seq: n) }
            lastSeq = n
            return apply(stanza, from: from) + releaseAfterGap()
        }
        // Unnumbered: private messages, the federation burst, or the node's removal.
        if stanza.name == "message", stanza["type"] != "groupchat" {
            return privateMessage(stanza, from: from)
        }
        if stanza.name == "presence", let reason = LinkElements.rejection(stanza) {
            // The master refuses this node altogether (its domain is not allowed): retried
            // slowly, in case the master's configuration changes.
            guard case .federating = federation else { return [] }
            federation = .idle
            return [.federationFailed(condition: "rejected: \(reason)")]
        }
        if stanza.name == "presence" && LinkElements.isLeft(stanza) {
            // Remote occupants stay on IRC until a new burst confirms or removes them.
            unconfirmed = Set(remotes.keys)
            // A join sent after the last leave (a quick /cycle) is already on its way: the master
            // federates us again with it, so wait for that burst rather than going idle.
            if let key = localOrder.first(where: { locals[$0]?.submitted == true && locals[$0]?.refused == false }) {
                federation = .federating(key: key)
            } else {
                federation = .idle
            }
            return []
        }
        if stanza.name == "message", stanza.child("subject", namespace: stanza.namespace) != nil,
            let sync = stanza.child("sync", namespace: NS.link)
        {
            epoch = sync["epoch"]
            return burstEnded(seq: sync["seq"].flatMap { UInt64($0) } ?? 0) + catchUpAfterSplit()
        }
        if stanza.name == "presence", case .federating = federation { return apply(stanza, from: from) }
        return []
    }

    // MARK: - Order and liveness (flows D and G)

    /// A numbered stanza beyond the next one: held, and the missing ones asked for once.
    private mutating func gap(_ stanza: XMLElement, seq n: UInt64) -> [Action] {
        afterGap[n] = stanza
        guard afterGap.count <= Self.maximumAfterGap else {
            // Too far behind to catch up stanza by stanza: start over from a burst.
            return [.note(.resynced(replayed: nil))] + refederate()
        }
        guard resyncID == nil, let epoch else { return [] }
        return [.note(.seqGap(expected: lastSeq + 1, got: n)), requestResync(epoch: epoch, from: lastSeq + 1)]
    }

    /// `<resync/>` for the stanzas from `seq` on; its answer is matched by `resyncID`.
    private mutating func requestResync(epoch: String, from seq: UInt64) -> Action {
        let id = "resync-" + RandomID.make(bytes: 6)
        resyncID = id
        return .send(.stanza(.iq, from: jid, to: masterRoom, type: "set", id: id, children: [LinkElements.resync(epoch: epoch, fromSeq: seq)]))
    }

    /// After a split's burst: the messages said since this node's last seq, if the master
    /// still has them (it answers `full` otherwise, and they are not shown). When the master
    /// restarted meanwhile (a new epoch), everything of its new epoch was missed: from seq 1.
    private mutating func catchUpAfterSplit() -> [Action] {
        guard let resume = resumeFrom, federation == .federated, let epoch else { return [] }
        resumeFrom = nil
        guard resume.epoch != epoch || resume.seq < lastSeq, resyncID == nil else { return [] }
        let missedFrom = resume.epoch == epoch ? resume.seq + 1 : 1
        guard missedFrom <= lastSeq else { return [] }
        catchUp = missedFrom...lastSeq
        caughtUpTo = missedFrom - 1
        return [requestResync(epoch: epoch, from: missedFrom)]
    }

    /// The held stanzas that now follow on, in order.
    private mutating func releaseAfterGap() -> [Action] {
        var actions: [Action] = []
        while let next = afterGap.removeValue(forKey: lastSeq + 1) {
            lastSeq += 1
            if let from = next["from"].flatMap(JID.init) { actions += apply(next, from: from) }
        }
        afterGap = afterGap.filter { $0.key > lastSeq }
        return actions
    }

    /// The master's iqs: its keepalive ping, the answer to ours, the answer to `resync`.
    private mutating func iq(_ stanza: XMLElement) -> [Action] {
        if LinkElements.isPing(stanza) { return [.send(stanza.iqResult())] }
        guard let id = stanza["id"] else { return [] }
        if id == pingID {
            pingID = nil
            if LinkElements.isBounce(stanza), federation == .federated {
                return [.note(.split(why: "the master is unreachable (\(stanza.errorCondition ?? "error"))"))] + refederate(resuming: true)
            }
            return []
        }
        guard id == resyncID else { return [] }
        resyncID = nil
        if catchUp != nil {
            // After a split's new burst: whatever the answer, the roster is already right;
            // the live stanzas that came meanwhile follow now.
            catchUp = nil
            return [.note(.resynced(replayed: stanza.child("replay", namespace: NS.link)?["count"].flatMap(Int.init)))] + releaseAfterGap()
        }
        let replayed = stanza.child("replay", namespace: NS.link)?["count"].flatMap(Int.init)
        if stanza["type"] == "result", let replayed, afterGap.isEmpty {
            return [.note(.resynced(replayed: replayed))]
        }
        // "full", an error, or a replay that did not close the gap: a fresh burst, diffed.
        return [.note(.resynced(replayed: nil))] + refederate()
    }

    /// Called every `link_ping_interval`: a silent master is pinged; three unanswered pings
    /// are a split, and the node federates again (which waits for the master to come back).
    public mutating func tick() -> [Action] {
        guard federation == .federated else { return [] }
        if heardSinceTick {
            heardSinceTick = false
            return []
        }
        if pingID != nil { missedPings += 1 }
        if missedPings >= MasterRoom.missedPingsForSplit {
            return [.note(.split(why: "\(missedPings) pings unanswered"))] + refederate(resuming: true)
        }
        let id = "link-" + RandomID.make(bytes: 6)
        pingID = id
        return [.send(LinkElements.ping(from: jid, to: masterRoom, id: id))]
    }

    /// The master split us away and refused a stanza: a line is held again (it goes out after
    /// the new burst, so nothing is lost), and the node federates again, once.
    private mutating func splitRefusal(_ stanza: XMLElement) -> [Action] {
        var actions: [Action] = []
        if stanza.name == "message", stanza["type"] == "error", let origin = LinkElements.originID(of: stanza) ?? stanza["id"], held.count < Self.maximumHeldLines {
            if let line = pendingEchoes.removeValue(forKey: origin) {
                held.append(line)
            } else if let roomNick = stanza["to"].flatMap(JID.init)?.resource, let key = localKey(roomNick: roomNick), let nick = locals[key]?.nick,
                let body = stanza.child("body", namespace: stanza.namespace)?.text
            {
                held.append(HeldLine(nick: nick, body: body, originID: origin, isIRCMsgID: false, reply: stanza.child("reply", namespace: RoomLineParsing.reply)))
            }
        }
        if federation == .federated {
            actions.append(.note(.split(why: LinkElements.isSplitError(stanza) ? "the master split this node away" : "the master is unreachable (\(stanza.errorCondition ?? "error"))")))
            actions += refederate(resuming: true)
        }
        return actions
    }

    private mutating func apply(_ stanza: XMLElement, from: JID) -> [Action] {
        guard let nick = from.resource, let real = LinkElements.fmucFrom(stanza) else { return [] }
        let ours = isOurs(real)
        switch stanza.name {
        case "presence":
            if ours {
                if case .federating = federation, stanza["type"] == nil {
                    // The burst names whom the room shows for this node; after a restart or a
                    // split some may have left IRC meanwhile (see `burstEnded`).
                    burstOurs[Self.fold(nick)] = (nick, real)
                }
                // Our own user's presence coming back: the master's ack, unless the room
                // removed them (an XMPP moderator's kick or ban, a destroyed room): then the
                // user is no longer relayed until they PART and JOIN (PROTOCOL.md §3 E).
                if stanza["type"] == nil { return confirmRename(roomNick: nick) }
                return removedByRoom(stanza, nick: nick)
            }
            let key = Self.fold(nick)
            if stanza["type"] == "unavailable" {
                let wasAway = away.removeValue(forKey: key)
                let role = roles.removeValue(forKey: key)
                guard let remote = remotes.removeValue(forKey: key) else { return [] }
                unconfirmed.remove(key)
                let x = stanza.child("x", namespace: NS.mucUser)
                let codes = x?.children("status", namespace: NS.mucUser).compactMap { $0["code"] } ?? []
                if codes.contains("303"), let newNick = x?.child("item", namespace: NS.mucUser)?["nick"] {
                    // The available presence under the new nick that follows finds it renamed.
                    remotes[Self.fold(newNick)] = RemoteOccupant(nick: newNick, realJID: remote.realJID)
                    if let wasAway { away[Self.fold(newNick)] = wasAway }
                    if let role { roles[Self.fold(newNick)] = role }
                    return [.remoteNickChanged(remote, newNick: newNick)]
                }
                var reason = stanza.child("status", namespace: stanza.namespace)?.text
                if codes.contains("307") {
                    let item = x?.child("item", namespace: NS.mucUser)
                    let actor = item?.child("actor", namespace: NS.mucUser)?["nick"]
                    let why = item?.child("reason", namespace: NS.mucUser)?.text
                    reason = "Kicked" + (actor.map { " by \($0)" } ?? "") + (why.map { ": \($0)" } ?? "")
                }
                return [.remoteLeft(remote, reason: reason)]
            }
            if unconfirmed.remove(key) != nil, remotes[key]?.realJID == real { return presenceChange(stanza, key: key) }
            if let existing = remotes[key] {
                if existing.realJID == real { return presenceChange(stanza, key: key) }
                remotes[key] = RemoteOccupant(nick: nick, realJID: real)
                away.removeValue(forKey: key)
                roles.removeValue(forKey: key)
                return [.remoteLeft(existing, reason: nil), .remoteJoined(remotes[key]!)] + presenceChange(stanza, key: key)
            }
            let remote = RemoteOccupant(nick: nick, realJID: real)
            remotes[key] = remote
            return [.remoteJoined(remote)] + presenceChange(stanza, key: key)
        case "message":
            if ours {
                let origin = LinkElements.originID(of: stanza)
                let echoed = origin.flatMap { pendingEchoes.removeValue(forKey: $0) }
                if let body = stanza.child("body", namespace: stanza.namespace)?.text, let key = localKey(roomNick: nick), let local = locals[key] {
                    recent.remember(stanza, room: masterRoom, author: .local(ircNick: local.nick), body: body, ircMsgID: echoed?.isIRCMsgID == true ? origin : nil)
                }
                return echoed != nil ? [.note(.echoMatched)] : []
            }
            guard stanza["type"] == "groupchat" else { return [] }
            let occupant = remotes[Self.fold(nick)] ?? RemoteOccupant(nick: nick, realJID: real)
            if let subject = stanza.child("subject", namespace: stanza.namespace), stanza.child("body", namespace: stanza.namespace) == nil {
                return [.remoteSubject(occupant, subject: subject.text)]
            }
            return remoteLine(stanza, from: occupant)
        default:
            return []
        }
    }

    /// A remote occupant's groupchat line as IRC should see it: plain, or a reply, a
    /// correction or a reaction (PROTOCOL.md §5).
    private mutating func remoteLine(_ stanza: XMLElement, from occupant: RemoteOccupant) -> [Action] {
        if let reactions = stanza.child("reactions", namespace: RoomLineParsing.reactions), let id = reactions["id"] {
            // The body of a reaction is a fallback for clients without XEP-0444.
            let emoji = reactions.children("reaction", namespace: RoomLineParsing.reactions).map(\.text).filter { !$0.isEmpty }
            let added = recent.added(emoji, by: occupant.realJID, on: id)
            guard !added.isEmpty else { return [] }
            let line = recent.line(id)
            return [.remoteLine(occupant, .reaction(emoji: added, to: line?.author, snippet: line?.snippet))]
        }
        let raw = stanza.child("body", namespace: stanza.namespace)?.text
        guard let body = RoomLineParsing.withLink(raw, in: stanza), !body.isEmpty else { return [] }
        if stanza.child("replace", namespace: RoomLineParsing.correction) != nil {
            return [.remoteLine(occupant, .correction(text: body))]
        }
        let lineID = recent.remember(stanza, room: masterRoom, author: .remote(occupant), body: body)
        if let reply = stanza.child("reply", namespace: RoomLineParsing.reply) {
            let text = RoomLineParsing.removingFallback(body, for: RoomLineParsing.reply, in: stanza)
            if let mention = mention(reply: reply), !text.isEmpty {
                let answered = reply["id"].flatMap { recent.line($0)?.ircMsgID }
                return [.remoteLine(occupant, .reply(to: mention, text: text, ircMsgID: answered), lineID: lineID)]
            }
        }
        return [.remoteMessage(occupant, body: body, lineID: lineID)]
    }

    /// Whom a reply answers: the line it names, else the occupant its `to` names.
    private func mention(reply: XMLElement) -> Mention? {
        if let id = reply["id"], let line = recent.line(id) { return line.author }
        guard let nick = reply["to"].flatMap(JID.init)?.resource else { return nil }
        if let key = localKey(roomNick: nick), let local = locals[key] { return .local(ircNick: local.nick) }
        if let remote = remotes[Self.fold(nick)] { return .remote(remote) }
        return .roomNick(nick)
    }

    private mutating func removedByRoom(_ stanza: XMLElement, nick: String) -> [Action] {
        guard stanza["type"] == "unavailable", let x = stanza.child("x", namespace: NS.mucUser) else { return [] }
        guard let key = localKey(roomNick: nick), let local = locals[key], local.submitted, !local.refused else { return [] }
        let codes = Set(x.children("status", namespace: NS.mucUser).compactMap { $0["code"] })
        let item = x.child("item", namespace: NS.mucUser)
        let actor = item?.child("actor", namespace: NS.mucUser)?["nick"]
        let reason = item?.child("reason", namespace: NS.mucUser)?.text
        let what: String
        if codes.contains("307") || codes.contains("301") {
            locals[key]?.refused = true
            return [.localRemoved(nick: local.nick, banned: codes.contains("301"), actor: actor, reason: reason)]
        } else if codes.contains("321") || codes.contains("322") {
            what = "removed (members only)"
        } else if x.child("destroy", namespace: NS.mucUser) != nil {
            what = "removed (the room was destroyed)"
        } else {
            return []
        }
        locals[key]?.refused = true
        let text = "you were \(what) from the XMPP room" + (actor.map { " by \($0)" } ?? "") + (reason.map { ": \($0)" } ?? "")
        return [.localRefused(nick: local.nick, condition: what, text: text)]
    }

    /// What a remote occupant's available presence changed for IRC: role, away.
    private mutating func presenceChange(_ stanza: XMLElement, key: String) -> [Action] {
        var actions: [Action] = []
        if let remote = remotes[key], let role = stanza.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["role"], roles[key] != role {
            roles[key] = role
            actions.append(.remoteRole(remote, role: role))
        }
        return actions + awayChange(stanza, key: key)
    }

    /// An away action when the occupant's `<show>` changed what IRC should show (PROTOCOL §5).
    private mutating func awayChange(_ stanza: XMLElement, key: String) -> [Action] {
        guard let remote = remotes[key] else { return [] }
        let show = stanza.child("show", namespace: stanza.namespace)?.text ?? ""
        let status = stanza.child("status", namespace: stanza.namespace)?.text ?? ""
        if ["away", "xa", "dnd"].contains(show) {
            let message = status.isEmpty ? show : status
            guard away[key] != message else { return [] }
            away[key] = message
            return [.remoteAway(remote, message: message)]
        }
        guard away.removeValue(forKey: key) != nil else { return [] }
        return [.remoteAway(remote, message: nil)]
    }

    private func privateMessage(_ stanza: XMLElement, from: JID) -> [Action] {
        guard let nick = from.resource, let real = LinkElements.fmucFrom(stanza), !isOurs(real),
            let to = stanza["to"].flatMap(JID.init), let localNick = to.resource, let key = localKey(roomNick: localNick), let local = locals[key],
            let body = stanza.child("body", namespace: stanza.namespace)?.text
        else { return [] }
        let occupant = remotes[Self.fold(nick)] ?? RemoteOccupant(nick: nick, realJID: real)
        return [.privateMessage(from: occupant, toLocalNick: local.nick, body: body)]
    }

    /// An IRC user's PRIVMSG to a puppet: a private message to that occupant, through the master.
    public mutating func ircPrivateMessage(nick: String, toRoomNick: String, body: String) -> [Action] {
        guard let local = locals[Self.fold(nick)], local.submitted, !local.refused, federation == .federated else { return [] }
        return [.send(.stanza(.message, from: jid.with(resource: local.roomNick), to: masterRoom.with(resource: toRoomNick), type: "chat", children: [
            .text("body", namespace: NS.component, body), LinkElements.fmuc(from: local.realJID),
        ]))]
    }

    /// Whether `nick` is one of this room's IRC users and `roomNick` a remote occupant.
    public func shares(ircNick nick: String, withRemote roomNick: String) -> Bool {
        locals[Self.fold(nick)] != nil && remotes[Self.fold(roomNick)] != nil
    }

    private mutating func burstEnded(seq: UInt64) -> [Action] {
        guard case .federating = federation else { return [] }
        federation = .federated
        unconfirmed.formIntersection(remotes.keys)
        lastSeq = seq
        var actions: [Action] = [.note(.federated(seq: seq))]
        // Remote occupants the burst did not name have left while we were away.
        for key in unconfirmed.sorted() {
            roles.removeValue(forKey: key)
            if let remote = remotes.removeValue(forKey: key) { actions.append(.remoteLeft(remote, reason: nil)) }
        }
        unconfirmed.removeAll()
        // Users the room still shows for this node who are not in the channel any more (they
        // left while the bridge restarted, or while the link was split): they leave now, once.
        for shown in burstOurs.values.sorted(by: { $0.nick < $1.nick }) where localKey(roomNick: shown.nick) == nil {
            // Her nick changed while the burst was on its way: she is here, under another nick.
            if locals.values.contains(where: { $0.realJID == shown.real }) { continue }
            // Shown with the collision suffix before a restart (`dave|irc`): the same user, who
            // takes that room nick again rather than leaving and coming back.
            if let key = localOrder.first(where: { key in
                guard let local = locals[key], !local.submitted, !local.refused else { return false }
                return Self.isSuffixed(shown.nick, of: local.nick, suffix: collisionSuffix)
            }) {
                locals[key]?.roomNick = shown.nick
                locals[key]?.suffixed = true
                continue
            }
            actions.append(.send(.stanza(
                .presence, from: jid.with(resource: shown.nick), to: masterRoom.with(resource: shown.nick), type: "unavailable",
                children: [.text("status", namespace: NS.component, "Left the IRC channel"), LinkElements.fmuc(from: shown.real)])))
        }
        burstOurs.removeAll()
        for key in localOrder where locals[key]?.submitted == false && locals[key]?.refused == false {
            actions += submitJoin(key)
        }
        let lines = held
        held.removeAll()
        for line in lines {
            if let local = locals[Self.fold(line.nick)], local.submitted, !local.refused {
                actions.append(submitMessage(local, line))
            }
        }
        return actions
    }

    private mutating func error(_ stanza: XMLElement, from: JID) -> [Action] {
        let condition = stanza.errorCondition ?? "undefined-condition"
        let userFacing = ["conflict", "forbidden", "not-allowed", "registration-required", "not-authorized", "jid-malformed"]
        let text = stanza.child("error", namespace: stanza.namespace)?.child("text", namespace: NS.stanzas)?.text
        if stanza.name == "message" {
            // One refused line (a rate limit, no voice): its sender hears why; no echo comes.
            guard let roomNick = stanza["to"].flatMap(JID.init)?.resource, let key = localKey(roomNick: roomNick), let local = locals[key] else { return [] }
            let line = (LinkElements.originID(of: stanza) ?? stanza["id"]).flatMap { pendingEchoes.removeValue(forKey: $0) }
            let body = stanza.child("body", namespace: stanza.namespace)?.text ?? line?.body ?? ""
            return [.lineRefused(nick: local.nick, condition: condition, text: text, body: body)]
        }
        guard stanza.name == "presence" else { return [] }
        let roomNick = stanza["to"].flatMap(JID.init)?.resource ?? from.resource
        if userFacing.contains(condition), let roomNick, let key = localKey(roomNick: roomNick), var local = locals[key] {
            var federatingThisUser = false
            if case .federating(let federatingKey) = federation, federatingKey == key { federatingThisUser = true }
            // Her join was refused outright (never in the room), or a later change was refused.
            let wasInRoom = local.submitted && !federatingThisUser
            if condition == "conflict", !local.suffixed {
                // Flow I: the nick is taken in the room (an XMPP user, another network's IRC
                // user): once more with the suffix, before giving up.
                suffix(&local, key: key)
                // Federating again picks its user afresh; the burst's end submits the others.
                local.submitted = !federatingThisUser
                locals[key] = local
                if federatingThisUser {
                    federation = .idle
                    return federate()
                }
                // A join is a fresh presence; a refused nick change is sent again as one.
                return [.send(wasInRoom ? updatePresence(local) : joinPresence(local, link: false))]
            }
            local.refused = true
            local.submitted = false
            locals[key] = local
            var actions: [Action] = [.localRefused(nick: local.nick, condition: condition, text: text)]
            if wasInRoom {
                // She may be in the room under an earlier nick (a refused nick change): take her
                // out, so no ghost keeps the nick. The master finds her by real JID.
                actions.append(.send(.stanza(.presence, from: jid.with(resource: local.roomNick), to: masterRoom.with(resource: local.roomNick), type: "unavailable", children: [LinkElements.fmuc(from: local.realJID)])))
            }
            if federatingThisUser {
                federation = .idle
                actions += federate()
            }
            return actions
        }
        if case .federating = federation {
            federation = .idle
            return [.federationFailed(condition: condition)]
        }
        return []
    }

    // MARK: - Building what goes to the master

    private mutating func federate() -> [Action] {
        guard let key = localOrder.first(where: { locals[$0]?.refused == false }), let local = locals[key] else {
            return []
        }
        federation = .federating(key: key)
        locals[key]?.submitted = true
        unconfirmed = Set(remotes.keys)
        burstOurs.removeAll()
        return [.send(joinPresence(local, link: true))]
    }

    private mutating func submitJoin(_ key: String) -> [Action] {
        guard var local = locals[key], !local.refused else { return [] }
        local.submitted = true
        locals[key] = local
        return [.send(joinPresence(local, link: false))]
    }

    private func joinPresence(_ local: Local, link: Bool) -> XMLElement {
        var x = XMLElement("x", namespace: NS.muc)
        // The IRC side has its own past: no history (flow A).
        x.append(XMLElement("history", namespace: NS.muc, attributes: ["maxstanzas": "0"]))
        var children = awayChildren(local) + [x, Self.roleElement(local.role), LinkElements.fmuc(from: local.realJID)]
        if link { children.append(LinkElements.link(epoch: resumeFrom?.epoch, lastSeq: resumeFrom?.seq)) }
        return .stanza(.presence, from: jid.with(resource: local.roomNick), to: masterRoom.with(resource: local.roomNick), children: children)
    }

    private mutating func submitMessage(_ local: Local, _ line: HeldLine) -> Action {
        if pendingEchoes.count >= Self.maximumPendingEchoes { pendingEchoes.removeAll() }
        pendingEchoes[line.originID] = line
        var children = [XMLElement.text("body", namespace: NS.component, line.body), LinkElements.originID(line.originID)]
        if let reply = line.reply { children.append(reply) }
        children.append(LinkElements.fmuc(from: local.realJID))
        return .send(.stanza(.message, from: jid.with(resource: local.roomNick), to: masterRoom, type: "groupchat", id: line.originID, children: children))
    }
}
