import Foundation
import XMPPCore

/// The master's copy of one room: the authority on roster, nicks, subject and order.
///
/// Implements XEP-0045 towards stock clients (§7.2 join, §7.4 groupchat, §7.14 exit) and the
/// FMUC joined-node side in primary-replica mode towards shadows (PROTOCOL.md §3 flows A-C, E).
/// A pure state machine: `receive` takes one stanza addressed to the room and returns the
/// stanzas to send, in order. No I/O; the time comes in with each stanza.
public struct MasterRoom: Sendable {
    public let jid: JID
    /// Stable room id, minted at creation (PROTOCOL.md §2).
    public let rid: String
    /// Changes whenever the master loses room state (PROTOCOL.md §3 H).
    public let epoch: String
    public internal(set) var subject: String = "" { didSet { stateVersion &+= 1 } }
    public internal(set) var subjectNick: String? { didSet { stateVersion &+= 1 } }
    /// The last room-wide sequence number handed to shadows.
    public internal(set) var seq: UInt64 = 0

    /// Occupants by folded nick.
    var occupants: [String: Occupant] = [:]
    /// Join order, for presence bursts.
    var joinOrder: [String] = []
    /// The local occupants' keys in join order: whom the room itself sends to.
    var localKeys: [String] = []
    /// Occupant keys by where the session lives and its real JID, so a stanza finds its
    /// sender without scanning the room (10,000 occupants: Benchmarks/).
    var keyByRealJID: [OccupantNode: [JID: String]] = [:]
    /// Federated shadow nodes (shadow room bare JIDs).
    public internal(set) var shadows: Set<JID> = []
    /// Liveness of each federated node (PROTOCOL.md §3 G).
    var links: [JID: LinkLiveness] = [:]
    /// Nodes split away: what they submit is refused until they federate again.
    public internal(set) var splitNodes: Set<JID> = []
    /// How long a split node's occupants stay in the room waiting for it to federate again
    /// (`master.split_grace`): a bridge restart or a short outage shows nobody leave.
    /// 0 removes them at the split.
    public var splitGrace: TimeInterval = 30
    /// Occupants kept through a split, by node: when it split and the keys it has not
    /// brought back yet.
    var splitHolds: [JID: SplitHold] = [:]
    /// The last room-wide stanzas, for `resync` (flow D).
    var replay: [ReplayEntry] = []
    /// Until then `replay` is kept even with no node federated: a room restored after a
    /// restart, whose nodes will federate again and ask from seq 1 of this epoch.
    public var keepsReplayUntil = Date.distantPast
    /// How much `replay` keeps: stanzas and seconds (`master.replay_stanzas`, `replay_seconds`).
    public var replayLimit: (stanzas: Int, seconds: TimeInterval) = (500, 600)
    /// How fast one XMPP client may send messages and presence here (`master.occupant_rate`,
    /// `occupant_burst`), by bare JID; nil: no limit.
    public var clientLimit: RateLimit? { didSet { clientBuckets = clientLimit.map(RateBuckets.init) } }
    /// How fast one shadow node may submit messages for all its users (`master.shadow_rate`,
    /// `shadow_burst`); nil: no limit. Its presence is never limited: refusing a join or a
    /// leave would leave the node's view and the room's apart.
    public var shadowLimit: RateLimit? { didSet { shadowBuckets = shadowLimit.map(RateBuckets.init) } }
    var clientBuckets: RateBuckets?
    var shadowBuckets: RateBuckets?
    /// The room's configuration (XEP-0045 §10.2, muc#owner).
    public internal(set) var config: RoomConfig { didSet { stateVersion &+= 1 } }
    /// Created by a client and not configured yet: only its owner may enter (XEP-0045 §10.1.2).
    public internal(set) var locked = false
    /// Affiliations by bare JID: owner, admin, member, outcast (none is absent).
    public internal(set) var affiliations: [JID: String] = [:] { didSet { stateVersion &+= 1 } }
    /// Changes whenever what `snapshot` holds may have changed, so the service compares a
    /// number per stanza rather than the room's whole stored state.
    public private(set) var stateVersion = 0
    /// The last groupchat messages, for history on join (XEP-0045 §7.2.15).
    var history: [HistoryEntry] = []
    public static let historyCapacity = 50
    /// The default number of history messages a joining client gets.
    public static let defaultHistory = 20
    /// The key of XEP-0421 occupant ids: a room secret, so ids differ between rooms.
    let occupantIDKey: [UInt8]
    /// The service admins (`[admin] jids`): owners of every room.
    public var serviceAdmins: Set<JID> = []
    /// The service keeps archives (`master.archive`); when false no room archives, whatever its config.
    public var archiveAllowed = true
    /// Messages go to the archive: the service allows it and the room's owner wants it.
    public var archives: Bool { archiveAllowed && config.archiving }
    /// The time of the stanza being handled.
    var now = Date(timeIntervalSince1970: 0)
    /// Destroyed by its owner: the service forgets it.
    public internal(set) var isDestroyed = false

    struct HistoryEntry: Sendable {
        var message: XMLElement
        var date: Date
        /// Its size as sent, for `maxchars`.
        var characters: Int

        init(message: XMLElement, date: Date) {
            self.message = message
            self.date = date
            self.characters = message.serialized(parentNamespace: NS.component).count
        }
    }

    /// Observations for logs and metrics; the room does no logging itself.
    public enum Note: Sendable, Hashable {
        case federated(shadow: JID)
        case nodeLeft(shadow: JID)
        case linkStanza(shadow: JID, kind: StanzaKind, seq: UInt64)
        case refused(from: JID, condition: String)
        /// A node asked for missed stanzas: how many were replayed, or nil for "full".
        case resync(shadow: JID, replayed: Int?)
        /// A node was split away (unanswered pings, its server's error).
        case split(shadow: JID, why: String)
    }

    public struct Output: Sendable {
        public var stanzas: [XMLElement] = []
        public var notes: [Note] = []
        /// Groupchat messages to keep in the room archive (XEP-0313), in room order.
        public var archived: [ArchivedMessage] = []
    }

    /// One groupchat message as the room reflected it, without a `to`.
    public struct ArchivedMessage: Sendable, Hashable {
        /// The room's XEP-0359 stanza id: the archive id clients page with.
        public var id: String
        public var date: Date
        public var nick: String
        public var message: XMLElement

        public init(id: String, date: Date, nick: String, message: XMLElement) {
            self.id = id
            self.date = date
            self.nick = nick
            self.message = message
        }
    }

    /// What of a room outlives the process (everything but occupants, shadows and the link's
    /// sequence, which a restart's new epoch resets: PROTOCOL.md §3 H).
    public struct Snapshot: Sendable, Hashable {
        public var rid: String
        public var config: RoomConfig
        public var affiliations: [JID: String]
        public var subject: String
        public var subjectNick: String?
        public var occupantIDKey: [UInt8]

        public init(rid: String, config: RoomConfig, affiliations: [JID: String], subject: String, subjectNick: String?, occupantIDKey: [UInt8]) {
            self.rid = rid
            self.config = config
            self.affiliations = affiliations
            self.subject = subject
            self.subjectNick = subjectNick
            self.occupantIDKey = occupantIDKey
        }
    }

    /// A room. `owner` (a client's bare JID) creates it locked, for that client to configure
    /// (XEP-0045 §10.1); without one it is open at once with `config`.
    public init(jid: JID, rid: String, epoch: String, config: RoomConfig = RoomConfig(), owner: JID? = nil, occupantIDKey: [UInt8]? = nil) {
        self.jid = jid.bare
        self.rid = rid
        self.epoch = epoch
        self.config = config
        self.occupantIDKey = occupantIDKey ?? RandomID.bytes(32)
        if let owner {
            affiliations[owner.bare] = "owner"
            locked = true
        }
    }

    /// A room brought back from its snapshot, with the archive's last messages as history.
    public init(jid: JID, restoring snapshot: Snapshot, epoch: String, history: [ArchivedMessage] = []) {
        self.init(jid: jid, rid: snapshot.rid, epoch: epoch, config: snapshot.config, occupantIDKey: snapshot.occupantIDKey)
        affiliations = snapshot.affiliations
        subject = snapshot.subject
        subjectNick = snapshot.subjectNick
        self.history = history.suffix(Self.historyCapacity).map {
            HistoryEntry(message: $0.message, date: $0.date)
        }
    }

    public var snapshot: Snapshot {
        Snapshot(rid: rid, config: config, affiliations: affiliations, subject: subject, subjectNick: subjectNick, occupantIDKey: occupantIDKey)
    }

    /// Kept across restarts: persistent and configured (a locked room is its creator's draft).
    public var isStored: Bool { config.persistent && !locked && !isDestroyed }

    public var occupantList: [Occupant] { joinOrder.compactMap { occupants[$0] } }
    /// The occupants on this master (stock clients), in join order.
    var localOccupants: [Occupant] { localKeys.compactMap { occupants[$0] } }

    // MARK: - The occupant table: every change goes through these, which keep the indexes.

    mutating func addOccupant(_ occupant: Occupant, key: String) {
        var occupant = occupant
        occupant.occupantID = occupantID(of: occupant.realJID)
        occupants[key] = occupant
        joinOrder.append(key)
        if occupant.node == .local { localKeys.append(key) }
        for session in occupant.sessions { keyByRealJID[occupant.node, default: [:]][session] = key }
    }

    mutating func removeOccupant(key: String) -> Occupant? {
        guard let occupant = occupants.removeValue(forKey: key) else { return nil }
        joinOrder.removeAll { $0 == key }
        if occupant.node == .local { localKeys.removeAll { $0 == key } }
        for session in occupant.sessions { keyByRealJID[occupant.node]?[session] = nil }
        if keyByRealJID[occupant.node]?.isEmpty == true { keyByRealJID[occupant.node] = nil }
        return occupant
    }

    /// A nick change moved `occupant` to `newKey`: it keeps its place in the join order.
    mutating func rekeyOccupant(from key: String, to newKey: String, _ occupant: Occupant) {
        if let index = joinOrder.firstIndex(of: key) { joinOrder[index] = newKey }
        if let index = localKeys.firstIndex(of: key) { localKeys[index] = newKey }
        for session in occupant.sessions { keyByRealJID[occupant.node, default: [:]][session] = newKey }
    }

    /// A shadow names its user anew (new ids after a restart): same occupant, new real JID.
    mutating func changeRealJID(key: String, to realJID: JID) {
        guard let occupant = occupants[key], occupant.realJID != realJID else { return }
        for session in occupant.sessions { keyByRealJID[occupant.node]?[session] = nil }
        let id = occupantID(of: realJID)
        occupants[key]?.realJID = realJID
        occupants[key]?.occupantID = id
        keyByRealJID[occupant.node, default: [:]][realJID] = key
    }

    mutating func removeAllOccupants() {
        occupants.removeAll()
        joinOrder.removeAll()
        localKeys.removeAll()
        keyByRealJID.removeAll()
    }

    /// Whether any occupant is still behind `node`.
    func hasOccupants(on node: OccupantNode) -> Bool { keyByRealJID[node] != nil }
    public var isEmpty: Bool { occupants.isEmpty }

    /// The room's nick fold (PROTOCOL.md §3): resourceprep (the occupant JID's resource is
    /// already prepared), then case folding with rfc1459's `[]\\~` = `{}|^`, the strictest IRC
    /// casemapping, so that `Alice` on XMPP and `alice` on IRC cannot both be in the room.
    public static func fold(_ nick: String) -> String {
        var folded = nick.lowercased()
        if folded.utf8.contains(where: { $0 == 0x5B || $0 == 0x5C || $0 == 0x5D || $0 == 0x7E }) {
            folded = String(folded.map { c -> Character in
                switch c {
                case "[": "{"
                case "]": "}"
                case "\\": "|"
                case "~": "^"
                default: c
                }
            })
        }
        return folded
    }

    // MARK: - Input

    /// Handles a stanza addressed to the room or to `room/nick`.
    /// `fromShadowDomain` is true when the sender's domain is an allowed shadow.
    public mutating func receive(_ stanza: XMLElement, fromShadowDomain: Bool, at now: Date = Date()) -> Output {
        var out = Output()
        self.now = now
        guard let from = stanza["from"].flatMap(JID.init), let to = stanza["to"].flatMap(JID.init) else {
            return out
        }
        // A link element from anyone but an allowed shadow is stripped: it never steers the
        // room and never reaches a client.
        var stanza = stanza
        let real: JID?
        if fromShadowDomain {
            real = LinkElements.fmucFrom(stanza)
            // A shadow may only assert real JIDs inside its own domain.
            if let real, real.domain != from.domain {
                out.stanzas.append(stanza.errorReply(type: "cancel", condition: "forbidden", text: "real JID outside the shadow's domain"))
                out.notes.append(.refused(from: from, condition: "forbidden"))
                return out
            }
        } else {
            real = nil
            if stanza.name == "presence", stanza["type"] == nil, stanza.child("link", namespace: NS.link) != nil {
                // A node from a domain not in allowed_shadows asks to federate: refused whole,
                // bare to bare (flow A), and nobody joins.
                out.stanzas.append(.stanza(.presence, from: jid, to: from.bare, type: "unavailable", children: [LinkElements.reject("\(from.domain) may not federate with this room")]))
                out.notes.append(.refused(from: from, condition: "federation not allowed"))
                return out
            }
        }
        if fromShadowDomain {
            let node = from.bare
            if splitNodes.contains(node) {
                // Flow G: refused until it federates again, which its <link/> says it does.
                // It stays split (and its replay kept) until the federation succeeds.
                guard stanza.name == "presence", stanza["type"] == nil, stanza.child("link", namespace: NS.link) != nil else {
                    refuseFromSplitNode(stanza, out: &out)
                    return out
                }
            }
            heard(from: node)
            if stanza["type"] == "error", shadows.contains(node), LinkElements.meansUnreachable(stanza) {
                split(node, why: "its server answered \(stanza.errorCondition ?? "an error")", out: &out)
                return out
            }
            if stanza.name == "iq", stanza["type"] == "set", let request = stanza.child("resync", namespace: NS.link) {
                resync(stanza, request: request, from: from, out: &out)
                return out
            }
        }
        if isOverLimit(stanza, from: from, fromShadowDomain: fromShadowDomain) {
            // Prosody's mod_muc_limits answers the same way: the sender may try again later.
            out.stanzas.append(stanza.errorReply(type: "wait", condition: "policy-violation", text: "you are sending too fast; wait a moment and send it again"))
            out.notes.append(.refused(from: from, condition: "policy-violation"))
            return out
        }
        // How a shadow says an IRC user was removed (kick), read before link elements go.
        let removal = fromShadowDomain ? stanza.child("removed", namespace: NS.link).map(Removal.init) : nil
        // The role a shadow asserts for its own IRC user, from channel modes (PROTOCOL.md §4:
        // roles only, never affiliations). Clients cannot assert a role.
        // <link/> from a node already federated: it lost its view of the room (a restart, a
        // reconnect) and asks for a full burst (flow D's "full").
        let resync = fromShadowDomain && stanza.child("link", namespace: NS.link) != nil
        let assertedRole = fromShadowDomain
            ? stanza.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["role"].flatMap { ["moderator", "participant", "visitor"].contains($0) ? $0 : nil }
            : nil
        stanza.removeElements(where: LinkElements.isLinkElement)
        // Occupant ids are the room's to give (XEP-0421 §4): a claimed one is removed.
        stanza.removeElements { $0.name == "occupant-id" && $0.namespace == NS.occupantID }
        if stanza["type"] == "error" {
            if !fromShadowDomain { bounce(stanza, from: from, out: &out) }
            return out
        }

        switch stanza.name {
        case "presence":
            if let real {
                let node = from.bare
                confirmHeld(node: node, real: real, nick: to.resource)
                shadowPresence(stanza, from: from, to: to, real: real, removal: removal, role: assertedRole, out: &out)
                if resync, stanza["type"] == nil, !out.notes.contains(.federated(shadow: node)) {
                    if shadows.contains(node) {
                        sendFederationBurst(to: node, out: &out)
                    } else if occupantKey(realJID: real, node: .shadow(node)) != nil {
                        // A split node back within the grace, through an occupant it kept:
                        // federated again, and nobody in the room saw anything.
                        federate(node, out: &out)
                    }
                }
            } else if fromShadowDomain {
                out.stanzas.append(stanza.errorReply(type: "modify", condition: "bad-request", text: "fmuc from missing"))
            } else {
                clientPresence(stanza, from: from, to: to, out: &out)
            }
        case "message":
            message(stanza, from: from, to: to, real: real, fromShadowDomain: fromShadowDomain, out: &out)
        case "iq":
            iq(stanza, from: from, to: to, fromShadowDomain: fromShadowDomain, out: &out)
        default:
            break
        }
        return out
    }

    /// Whether this stanza is over its sender's rate: a client's messages with a body or
    /// subject and its available presence, by bare JID; a shadow's messages with a body, by
    /// node. Errors, leaves, chat states and a shadow's topic changes (refusing one would
    /// leave IRC and the room with different subjects) always pass.
    private mutating func isOverLimit(_ stanza: XMLElement, from: JID, fromShadowDomain: Bool) -> Bool {
        guard stanza["type"] != "error" else { return false }
        let hasBody = stanza.child("body", namespace: stanza.namespace) != nil
        if fromShadowDomain {
            return stanza.name == "message" && hasBody && shadowBuckets?.take(from.bare, now: now) == false
        }
        let limited = stanza.name == "message"
            ? hasBody || stanza.child("subject", namespace: stanza.namespace) != nil
            : stanza.name == "presence" && stanza["type"] == nil
        return limited && clientBuckets?.take(from.bare, now: now) == false
    }

    /// XEP-0045 §9 (status 332): the service is going down. Every local occupant gets its own
    /// unavailable presence with 332, so clients know to rejoin later; the room is emptied.
    public mutating func shutdown(reason: String) -> [XMLElement] {
        var out: [XMLElement] = []
        for occupant in localOccupants {
            for session in occupant.sessions {
                var p = presence(of: occupant, to: session, selfPresence: true, extra: [332])
                p["type"] = "unavailable"
                p.removeElements { $0.name == "status" && $0.namespace == NS.component }
                p.append(.text("status", namespace: NS.component, reason))
                out.append(p)
            }
        }
        removeAllOccupants()
        shadows.removeAll()
        links.removeAll()
        splitNodes.removeAll()
        splitHolds.removeAll()
        return out
    }

    // MARK: - Presence

    private mutating func clientPresence(_ stanza: XMLElement, from: JID, to: JID, out: inout Output) {
        occupantPresence(stanza, nick: to.resource, realJID: from, node: .local, removal: nil, role: nil, out: &out)
    }

    /// XEP-0045 §7.2.x: an occupant whose client bounces the room's stanzas (gone, offline,
    /// its server unreachable) is removed with 333 so the room stops talking to nobody.
    private mutating func bounce(_ stanza: XMLElement, from: JID, out: inout Output) {
        let gone = ["gone", "item-not-found", "recipient-unavailable", "redirect", "remote-server-not-found", "remote-server-timeout", "service-unavailable"]
        guard let condition = stanza.errorCondition, gone.contains(condition), let key = occupantKey(realJID: from, node: .local) else { return }
        if occupants[key]!.otherSessions.count > 0 {
            // One client of several gone: the occupant stays with the others.
            dropSession(from, key: key, out: &out, tell: false)
            out.notes.append(.refused(from: from, condition: "bounced: \(condition)"))
            return
        }
        var unavailable = XMLElement.stanza(.presence, from: from, to: jid.with(resource: occupants[key]!.nick), type: "unavailable")
        unavailable.append(.text("status", namespace: NS.component, "Disconnected: \(condition)"))
        leave(key: key, stanza: unavailable, codes: [333], out: &out)
        out.notes.append(.refused(from: from, condition: "bounced: \(condition)"))
    }

    private mutating func shadowPresence(_ stanza: XMLElement, from: JID, to: JID, real: JID, removal: Removal?, role: String?, out: inout Output) {
        guard from.resource != nil else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "jid-malformed", text: "a nick is required"))
            return
        }
        occupantPresence(stanza, nick: to.resource, realJID: real, node: .shadow(from.bare), removal: removal, role: role, out: &out)
    }

    /// An occupant removed by someone else: an IRC user as the shadow reports it (PROTOCOL.md
    /// §3 E, kind "kick"), or by a moderator here (kind = the status code).
    struct Removal {
        var kind: String
        var by: String?
        var reason: String?

        init(_ element: XMLElement) {
            kind = element["kind"] ?? "kick"
            by = element["by"]
            reason = element["reason"]
        }

        init(code: Int, by: String?, reason: String?) {
            kind = String(code)
            self.by = by
            self.reason = reason
        }
    }

    /// One presence from an occupant's session, local or behind a shadow: join, update or leave.
    private mutating func occupantPresence(
        _ stanza: XMLElement, nick: String?, realJID: JID, node: OccupantNode, removal: Removal?, role: String?, out: inout Output
    ) {
        let current = occupantKey(realJID: realJID, node: node)
        if stanza["type"] == "unavailable" {
            if let current, node == .local, occupants[current]!.otherSessions.count > 0 {
                // One client of several leaves: only it is told; the occupant stays.
                dropSession(realJID, key: current, out: &out, tell: true)
            } else if let current {
                leave(key: current, stanza: stanza, removal: removal, out: &out)
            }
            return
        }
        if stanza["type"] != nil { return }  // subscription traffic has no place in a room
        guard let nick else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "jid-malformed", text: "a nick is required"))
            return
        }
        if let current, current == Self.fold(nick), node == .local, stanza.child("x", namespace: NS.muc) != nil {
            // A joined client joining again (it lost its state): it gets the whole join again,
            // and the others see only a presence change, if any (XEP-0045 §7.2.1).
            rejoin(key: current, session: realJID, stanza: stanza, out: &out)
            return
        }
        if current == nil, node == .local, stanza.child("x", namespace: NS.muc) != nil, let holder = occupants[Self.fold(nick)],
            holder.node == .local, holder.realJID.bare == realJID.bare
        {
            // Another client of the same account takes the same nick: one occupant, several
            // sessions (XEP-0045 §7.2, multi-session nick). Its join is checked like any other.
            if let (type, condition, text) = joinRefusal(stanza, affiliation: affiliation(of: realJID), adding: false) {
                refuse(stanza, type: type, condition: condition, text: text, noting: realJID, out: &out)
                return
            }
            addSession(realJID, key: Self.fold(nick), stanza: stanza, out: &out)
            return
        }
        if let current, current == Self.fold(nick) {
            let before = occupants[current]?.role
            if let role { occupants[current]?.role = role }
            update(key: current, stanza: stanza, roleBefore: before, out: &out)
            return
        }
        if current == nil, case .shadow = node, let holder = occupants[Self.fold(nick)], holder.node == node, holder.realJID != realJID {
            // The node names its own user anew (its ids changed in a restart): same nick, same
            // node, so the same IRC user. Take over the occupant; clients see no change.
            let before = occupants[Self.fold(nick)]?.role
            changeRealJID(key: Self.fold(nick), to: realJID)
            if let role { occupants[Self.fold(nick)]?.role = role }
            update(key: Self.fold(nick), stanza: stanza, roleBefore: before, out: &out)
            return
        }
        guard occupants[Self.fold(nick)] == nil else {
            refuseConflict(stanza, nick: nick, collision: node != .local, out: &out)
            return
        }
        if let current {
            guard occupants[current]!.otherSessions.isEmpty else {
                // The nick is shared by several clients: one of them cannot take it elsewhere.
                refuse(stanza, type: "cancel", condition: "not-acceptable", text: "this nick is used by several of your clients; leave from the others first", out: &out)
                return
            }
            changeNick(key: current, to: nick, stanza: stanza, out: &out)
            return
        }
        let affiliation = node == .local ? self.affiliation(of: realJID) : affiliations[realJID.bare] ?? "none"
        if let (type, condition, text) = joinRefusal(stanza, affiliation: affiliation) {
            refuse(stanza, type: type, condition: condition, text: text, noting: realJID, out: &out)
            return
        }
        var occupant = Occupant(nick: nick, realJID: realJID, node: node, role: role ?? defaultRole(for: affiliation), affiliation: affiliation)
        if role != nil, ["owner", "admin"].contains(affiliation) { occupant.role = "moderator" }
        let created = locked && affiliation == "owner" && occupants.isEmpty
        join(occupant, stanza: stanza, created: created, out: &out)
        if case .shadow(let shadow) = node, !shadows.contains(shadow) {
            // Flow A: the first presence from a node federates it, whether or not it carries
            // <link/> (a plain FMUC peer federates the same way). The node learns of its own
            // user from the burst, which is also her ack, so it joins the fanout only now.
            federate(shadow, out: &out)
        }
    }

    /// The node joins the fanout and gets the burst (flow A).
    private mutating func federate(_ shadow: JID, out: inout Output) {
        shadows.insert(shadow)
        splitNodes.remove(shadow)
        links[shadow] = LinkLiveness(lastHeard: now)
        out.notes.append(.federated(shadow: shadow))
        sendFederationBurst(to: shadow, out: &out)
    }

    /// Why a join is refused, in the order XEP-0045 §7.2 checks: banned, members-only, locked,
    /// password, full.
    private func joinRefusal(_ stanza: XMLElement, affiliation: String, adding: Bool = true) -> (type: String, condition: String, text: String)? {
        let privileged = ["owner", "admin"].contains(affiliation)
        if affiliation == "outcast" { return ("auth", "forbidden", "you are banned from this room") }
        if config.membersOnly && affiliation == "none" { return ("auth", "registration-required", "this room is for members only") }
        if locked && affiliation != "owner" { return ("cancel", "item-not-found", "this room is not configured yet") }
        if let password = config.password, !privileged {
            let given = stanza.child("x", namespace: NS.muc)?.child("password", namespace: NS.muc)?.text
            if given != password { return ("auth", "not-authorized", "a password is required to enter this room") }
        }
        if adding, let maximum = config.maxUsers, occupants.count >= maximum, !privileged {
            return ("wait", "service-unavailable", "this room is full")
        }
        return nil
    }

    private mutating func join(_ occupant: Occupant, stanza: XMLElement, created: Bool = false, out: inout Output) {
        let key = Self.fold(occupant.nick)
        var occupant = occupant
        occupant.presencePayload = Self.payload(of: stanza)
        // A local client first receives everyone already present (XEP-0045 §7.2.3).
        // Moderators, and everyone in a non-anonymous room, see real JIDs from the first presence.
        if occupant.node == .local {
            out.stanzas += othersPresence(for: occupant, to: occupant.realJID)
        }
        addOccupant(occupant, key: key)
        broadcastPresence(of: occupant, unavailable: false, extra: [], selfExtra: joinStatusCodes + (created ? [201] : []), out: &out)
        if occupant.node == .local {
            out.stanzas += historyAndSubject(to: occupant.realJID, join: stanza)
        }
    }

    /// The codes of a joining client's self-presence that describe the room (XEP-0045 §7.2.2):
    /// 100 non-anonymous, 170 logged.
    private var joinStatusCodes: [Int] {
        (config.whois == "anyone" ? [100] : []) + (config.logging ? [170] : [])
    }

    /// Everyone but `occupant`, as `occupant` sees them, for one of its clients joining
    /// (XEP-0045 §7.2.3; moderators, and everyone in a non-anonymous room, see real JIDs).
    private func othersPresence(for occupant: Occupant, to session: JID) -> [XMLElement] {
        occupantList.filter { $0.realJID != occupant.realJID }.map {
            presence(of: $0, to: session, selfPresence: false, withJID: seesJIDs(occupant))
        }
    }

    /// What closes a join: the history the client asked for, then the subject (§7.2.15-16).
    private func historyAndSubject(to session: JID, join: XMLElement) -> [XMLElement] {
        historyMessages(for: session, join: join) + [subjectMessage(to: session)]
    }

    /// XEP-0045 §7.2.15: the last messages, oldest first, each with `<delay from=room>`,
    /// within the limits the client's join asked for (maxchars 0 means none).
    private func historyMessages(for to: JID, join: XMLElement) -> [XMLElement] {
        let request = join.child("x", namespace: NS.muc)?.child("history", namespace: NS.muc)
        var maximum = Self.defaultHistory
        if let n = request?["maxstanzas"].flatMap(Int.init) { maximum = max(0, n) }
        var entries = history.suffix(maximum)
        if let seconds = request?["seconds"].flatMap(Double.init) {
            entries = entries.filter { now.timeIntervalSince($0.date) <= seconds }
        }
        if let since = request?["since"].flatMap(XMPPDateTime.parse) {
            entries = entries.filter { $0.date > since }
        }
        var messages: [XMLElement] = []
        var characters = 0
        let maxChars = request?["maxchars"].flatMap(Int.init)
        for entry in entries.reversed() {
            if let maxChars {
                characters += entry.characters
                if characters > maxChars { break }
            }
            var copy = entry.message
            copy["to"] = to.description
            copy.append(XMLElement("delay", namespace: NS.delay, attributes: ["from": jid.description, "stamp": XMPPDateTime.format(entry.date)]))
            messages.append(copy)
        }
        return messages.reversed()
    }

    private mutating func rejoin(key: String, session: JID, stanza: XMLElement, out: inout Output) {
        guard let occupant = occupants[key] else { return }
        out.stanzas += othersPresence(for: occupant, to: session)
        if Self.payload(of: stanza) != occupant.presencePayload {
            update(key: key, stanza: stanza, out: &out)
        } else {
            out.stanzas.append(presence(of: occupant, to: session, selfPresence: true))
        }
        out.stanzas += historyAndSubject(to: session, join: stanza)
    }

    /// A second client of the occupant's account joins under its nick: it gets the whole join
    /// (everyone, itself with 110, history, subject); the others see nothing new.
    private mutating func addSession(_ session: JID, key: String, stanza: XMLElement, out: inout Output) {
        guard var occupant = occupants[key] else { return }
        occupant.otherSessions.append(session)
        occupants[key] = occupant
        keyByRealJID[.local, default: [:]][session] = key
        out.stanzas += othersPresence(for: occupant, to: session)
        out.stanzas.append(presence(of: occupant, to: session, selfPresence: true, extra: joinStatusCodes))
        out.stanzas += historyAndSubject(to: session, join: stanza)
    }

    /// One session of a multi-session occupant goes; the occupant stays with the others. The
    /// session leaving by itself gets its own unavailable self-presence (`tell`).
    private mutating func dropSession(_ session: JID, key: String, out: inout Output, tell: Bool) {
        guard var occupant = occupants[key] else { return }
        if tell {
            var p = presence(of: occupant, to: session, selfPresence: true)
            p["type"] = "unavailable"
            out.stanzas.append(p)
        }
        keyByRealJID[.local]?[session] = nil
        if occupant.realJID == session {
            occupant.realJID = occupant.otherSessions.removeFirst()
        } else {
            occupant.otherSessions.removeAll { $0 == session }
        }
        occupants[key] = occupant
    }

    private mutating func update(key: String, stanza: XMLElement, roleBefore: String? = nil, out: inout Output) {
        guard var occupant = occupants[key] else { return }
        let payload = Self.payload(of: stanza)
        if case .shadow = occupant.node, payload == occupant.presencePayload, roleBefore == nil || roleBefore == occupant.role {
            // A shadow submitting its user again as it was (a resync, a re-federation after a
            // reconnect): nothing changed, so nobody is told anything.
            return
        }
        occupant.presencePayload = payload
        occupants[key] = occupant
        broadcastPresence(of: occupant, unavailable: false, extra: [], out: &out)
    }

    mutating func leave(key: String, stanza: XMLElement, removal: Removal? = nil, codes: [Int] = [], out: inout Output) {
        guard var occupant = removeOccupant(key: key) else { return }
        occupant.presencePayload = Self.payload(of: stanza).filter { $0.name == "status" }
        if let removal {
            // Removed by someone else, with the actor and the reason on the item: a shadow's
            // "kick" or a moderator's kick is 307 (XEP-0045 §8.2); the room's own removals give
            // their code as the kind (ban 301, affiliation change 321...).
            // The link's kinds (PROTOCOL.md §3 E): an IRC kick is 307, a ban 301, a netsplit 333
            // (the status says which servers); a quit is a plain leave with its reason.
            let code: Int? = switch removal.kind {
            case "kick": 307
            case "ban": 301
            case "netsplit": 333
            case "quit": nil
            default: Int(removal.kind) ?? 307
            }
            if let code {
                broadcastPresence(of: occupant, unavailable: true, extra: [code] + codes, actor: removal.by, reason: removal.reason, out: &out)
            } else {
                broadcastPresence(of: occupant, unavailable: true, extra: codes, out: &out)
            }
        } else {
            broadcastPresence(of: occupant, unavailable: true, extra: codes, out: &out)
        }
        if case .shadow(let shadow) = occupant.node, !hasOccupants(on: occupant.node), shadows.remove(shadow) != nil {
            links[shadow] = nil
            out.stanzas.append(
                XMLElement.stanza(.presence, from: jid, to: shadow, type: "unavailable", children: [LinkElements.left()]))
            out.notes.append(.nodeLeft(shadow: shadow))
        }
    }

    /// XEP-0045 §7.6: everyone sees the old nick leave with 303 and the new nick, then the
    /// occupant under its new nick. Shadows get both, numbered, and show one NICK on IRC.
    private mutating func changeNick(key: String, to newNick: String, stanza: XMLElement, out: inout Output) {
        // Out of the table while its old nick's leave (303) goes out, as in `leave`.
        guard var occupant = occupants.removeValue(forKey: key) else { return }
        broadcastPresence(of: occupant, unavailable: true, extra: [303], newNick: newNick, out: &out)
        let newKey = Self.fold(newNick)
        occupant.nick = newNick
        occupant.presencePayload = Self.payload(of: stanza)
        occupants[newKey] = occupant
        rekeyOccupant(from: key, to: newKey, occupant)
        broadcastPresence(of: occupant, unavailable: false, extra: [], out: &out)
    }

    /// `collision`: the refused user is behind a shadow, which is told which nick collided
    /// (`<collision nick/>` in the error, flow A) so it can retry with a suffix (flow I).
    private func refuseConflict(_ stanza: XMLElement, nick: String, collision: Bool = false, out: inout Output) {
        let holding = occupants[Self.fold(nick)]
        let holder = holding?.nick ?? nick
        // Say who has it: IRC and XMPP nicks fold alike here (`Alice` is `alice`, `[x]` is `{x}`).
        var why = "the nick \(nick) is already in use in this room"
        if holder != nick { why += " (as \(holder))" }
        if case .shadow = holding?.node { why += " by an IRC user" }
        refuse(
            stanza, type: "cancel", condition: "conflict", text: why,
            application: collision ? XMLElement("collision", namespace: NS.link, attributes: ["nick": holder]) : nil,
            noting: stanza["from"].flatMap(JID.init) ?? jid, out: &out)
    }

    /// An error reply to a presence or message the room will not take, without the MUC
    /// elements the sender put in it, and a `refused` note naming `noting` when given.
    func refuse(
        _ stanza: XMLElement, type: String, condition: String, text: String, application: XMLElement? = nil, noting: JID? = nil, out: inout Output
    ) {
        var reply = stanza.errorReply(type: type, condition: condition, text: text, application: application)
        reply.removeElements { $0.namespace == NS.muc }
        out.stanzas.append(reply)
        if let noting { out.notes.append(.refused(from: noting, condition: condition)) }
    }

    /// Sends an occupant's presence to every local client (with 110 to the occupant itself)
    /// and once to every shadow node, numbered.
    mutating func broadcastPresence(
        of occupant: Occupant, unavailable: Bool, extra: [Int], selfExtra: [Int] = [], actor: String? = nil, reason: String? = nil,
        newNick: String? = nil, out: inout Output
    ) {
        func make(to: JID, selfPresence: Bool, seesJIDs: Bool) -> XMLElement {
            var p = presence(
                of: occupant, to: to, selfPresence: selfPresence, extra: extra + (selfPresence ? selfExtra : []), actor: actor, reason: reason,
                newNick: newNick, withJID: seesJIDs)
            if unavailable { p["type"] = "unavailable" }
            return p
        }
        for other in localOccupants {
            let isSelf = other.realJID == occupant.realJID, sees = seesJIDs(other)
            out.stanzas.append(make(to: other.realJID, selfPresence: isSelf, seesJIDs: sees))
            for session in other.otherSessions { out.stanzas.append(make(to: session, selfPresence: isSelf, seesJIDs: sees)) }
        }
        if occupant.node == .local && occupantKey(realJID: occupant.realJID, node: .local).flatMap({ occupants[$0] }) == nil {
            // The leaving (or renaming) client is not in the list now: it still gets its own.
            for session in occupant.sessions { out.stanzas.append(make(to: session, selfPresence: true, seesJIDs: true)) }
        }
        fanOutToShadows(make(to: jid, selfPresence: false, seesJIDs: false), real: occupant.realJID, out: &out)
    }

    /// Non-anonymous rooms show real JIDs to everyone, semi-anonymous ones to moderators only.
    func seesJIDs(_ occupant: Occupant) -> Bool { config.whois == "anyone" || occupant.role == "moderator" }

    func presence(
        of occupant: Occupant, to: JID, selfPresence: Bool, extra: [Int] = [], actor: String? = nil, reason: String? = nil,
        newNick: String? = nil, withJID: Bool = false
    ) -> XMLElement {
        var p = XMLElement.stanza(.presence, from: jid.with(resource: occupant.nick), to: to)
        for element in occupant.presencePayload { p.append(element) }
        var x = XMLElement("x", namespace: NS.mucUser)
        var item = XMLElement("item", namespace: NS.mucUser, attributes: ["affiliation": occupant.affiliation, "role": occupant.role])
        // Each client is shown its own full JID in its self-presence.
        if selfPresence && occupant.sessions.contains(to) { item["jid"] = to.description } else if withJID || selfPresence { item["jid"] = occupant.realJID.description }
        if let newNick { item["nick"] = newNick }
        if let actor { item.append(XMLElement("actor", namespace: NS.mucUser, attributes: ["nick": actor])) }
        if let reason, !reason.isEmpty { item.append(.text("reason", namespace: NS.mucUser, reason)) }
        x.append(item)
        for code in extra { x.append(XMLElement("status", namespace: NS.mucUser, attributes: ["code": String(code)])) }
        if selfPresence { x.append(XMLElement("status", namespace: NS.mucUser, attributes: ["code": "110"])) }
        p.append(x)
        p.append(occupantIDElement(occupant))
        return p
    }

    /// XEP-0421: a stable, opaque id per real bare JID: HMAC-SHA256 with the room's secret.
    func occupantID(of real: JID) -> String {
        let mac = HMAC.sha256(key: occupantIDKey, data: Array(real.bare.description.utf8))
        return Hex.encode(Array(mac.prefix(16)))
    }

    func occupantIDElement(_ occupant: Occupant) -> XMLElement {
        let id = occupant.occupantID.isEmpty ? occupantID(of: occupant.realJID) : occupant.occupantID
        return XMLElement("occupant-id", namespace: NS.occupantID, attributes: ["id": id])
    }

    /// One copy to each federated node, addressed to its bare JID, with the real JID and the
    /// next room sequence number (flow C, D).
    mutating func fanOutToShadows(_ stanza: XMLElement, real: JID, out: inout Output) {
        // Every room-wide stanza is numbered, shadows or not, so a later node's `sync` tells
        // it where the room stands.
        seq += 1
        guard !shadows.isEmpty || !splitNodes.isEmpty || now < keepsReplayUntil else {
            // Nobody to number it for, nor to replay it to: no copy on a local room's hot path.
            replay.removeAll()
            return
        }
        var numbered = stanza
        numbered["to"] = nil
        numbered.append(LinkElements.fmuc(from: real))
        numbered.append(LinkElements.seq(seq, epoch: epoch))
        remember(numbered, seq: seq)
        for shadow in shadows.sorted() {
            var copy = numbered
            copy["to"] = shadow.description
            out.stanzas.append(copy)
            out.notes.append(.linkStanza(shadow: shadow, kind: StanzaKind(rawValue: copy.name) ?? .message, seq: seq))
        }
    }

    /// Flow A: every occupant's presence to the node's bare JID, then the subject with
    /// `<sync/>`, which always closes the burst.
    private mutating func sendFederationBurst(to shadow: JID, out: inout Output) {
        for occupant in occupantList {
            var p = presence(of: occupant, to: shadow, selfPresence: false)
            p.append(LinkElements.fmuc(from: occupant.realJID))
            out.stanzas.append(p)
            out.notes.append(.linkStanza(shadow: shadow, kind: .presence, seq: seq))
        }
        var subject = subjectMessage(to: shadow)
        subject.append(LinkElements.sync(epoch: epoch, rid: rid, seq: seq))
        out.stanzas.append(subject)
        out.notes.append(.linkStanza(shadow: shadow, kind: .message, seq: seq))
    }

    func subjectMessage(to: JID) -> XMLElement {
        let from = subjectNick.map { jid.with(resource: $0) } ?? jid
        return XMLElement.stanza(
            .message, from: from, to: to, type: "groupchat", children: [.text("subject", namespace: NS.component, subject)])
    }

    // MARK: - Messages

    /// The occupant a message comes from: a local client by its full JID, a shadow's user by
    /// the nick it speaks under and the real JID it asserts.
    private func sender(from: JID, real: JID?, fromShadowDomain: Bool) -> Occupant? {
        if let real {
            return from.resource.flatMap { occupants[Self.fold($0)] }.flatMap { $0.realJID == real && $0.node == .shadow(from.bare) ? $0 : nil }
        }
        if fromShadowDomain { return nil }
        return occupantKey(realJID: from, node: .local).flatMap { occupants[$0] }
    }

    private mutating func message(_ stanza: XMLElement, from: JID, to: JID, real: JID?, fromShadowDomain: Bool, out: inout Output) {
        guard let sender = sender(from: from, real: real, fromShadowDomain: fromShadowDomain) else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "not-acceptable", text: "only occupants may speak in this room"))
            out.notes.append(.refused(from: from, condition: "not-acceptable"))
            return
        }
        guard stanza["type"] == "groupchat" else {
            privateMessage(stanza, from: sender, to: to, out: &out)
            return
        }
        guard to.resource == nil else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "bad-request", text: "groupchat goes to the room's bare JID"))
            return
        }
        let isSubject = stanza.child("subject", namespace: stanza.namespace) != nil && stanza.child("body", namespace: stanza.namespace) == nil
        if sender.role == "visitor" {
            // XEP-0045 §7.4: visitors in a moderated room have no voice.
            out.stanzas.append(stanza.errorReply(type: "auth", condition: "forbidden", text: "you have no voice in this room"))
            out.notes.append(.refused(from: from, condition: "forbidden"))
            return
        }
        if isSubject && !config.changeSubject && sender.role != "moderator" {
            // XEP-0045 §8.1: only moderators change the subject unless the room allows everyone.
            out.stanzas.append(stanza.errorReply(type: "auth", condition: "forbidden", text: "only moderators may change the subject here"))
            out.notes.append(.refused(from: from, condition: "forbidden"))
            return
        }
        var reflected = stanza
        reflected["from"] = jid.with(resource: sender.nick).description
        // A client's stanza-id claiming to be the room's is removed (XEP-0359 §4).
        reflected.removeElements { $0.name == "stanza-id" && $0.namespace == NS.sid && $0["by"].flatMap(JID.init) == jid }
        reflected.append(occupantIDElement(sender))
        if isSubject, let subjectElement = stanza.child("subject", namespace: stanza.namespace) {
            subject = subjectElement.text
            subjectNick = sender.nick
        } else {
            let stanzaID = RandomID.make(bytes: 12)
            reflected.append(XMLElement("stanza-id", namespace: NS.sid, attributes: ["id": stanzaID, "by": jid.description]))
            if stanza.child("body", namespace: stanza.namespace) != nil {
                var stored = reflected
                stored["to"] = nil
                history.append(HistoryEntry(message: stored, date: now))
                if history.count > Self.historyCapacity { history.removeFirst(history.count - Self.historyCapacity) }
                if archives {
                    out.archived.append(ArchivedMessage(id: stanzaID, date: now, nick: sender.nick, message: stored))
                }
            }
        }
        // Every client of every local occupant; a second client of a nick is rare, so the loop
        // does not build a session list per occupant.
        for occupant in localOccupants {
            var copy = reflected
            copy["to"] = occupant.realJID.description
            out.stanzas.append(copy)
            for session in occupant.otherSessions {
                copy["to"] = session.description
                out.stanzas.append(copy)
            }
        }
        fanOutToShadows(reflected, real: sender.realJID, out: &out)
    }

    /// XEP-0045 §7.5 and flow F: a private message goes to the node that holds the recipient,
    /// from the sender's occupant JID, marked with an empty muc#user `<x/>`.
    private func privateMessage(_ stanza: XMLElement, from sender: Occupant, to: JID, out: inout Output) {
        guard let nick = to.resource, let recipient = occupants[Self.fold(nick)] else {
            out.stanzas.append(stanza.errorReply(type: "cancel", condition: "item-not-found", text: "no such occupant"))
            return
        }
        let allowed = switch config.allowPM {
        case "none": false
        case "moderators": sender.role == "moderator"
        case "participants": sender.role != "visitor"
        default: true
        }
        guard allowed else {
            out.stanzas.append(stanza.errorReply(type: "cancel", condition: "not-allowed", text: "private messages are not allowed in this room"))
            return
        }
        var copy = stanza
        copy.append(occupantIDElement(sender))
        copy["from"] = jid.with(resource: sender.nick).description
        copy.removeElements { $0.name == "x" && $0.namespace == NS.mucUser }
        copy.append(XMLElement("x", namespace: NS.mucUser))
        switch recipient.node {
        case .local:
            // To every client of the recipient's nick.
            for session in recipient.sessions {
                copy["to"] = session.description
                out.stanzas.append(copy)
            }
        case .shadow(let shadow) where !shadows.contains(shadow):
            // Kept through its node's split (`splitGrace`): nothing can reach them now.
            out.stanzas.append(stanza.errorReply(type: "wait", condition: "recipient-unavailable", text: "\(recipient.nick) is behind a bridge that is out of reach; try again soon"))
        case .shadow(let shadow):
            copy["to"] = shadow.with(resource: recipient.nick).description
            copy.append(LinkElements.fmuc(from: sender.realJID))
            out.stanzas.append(copy)
        }
    }

    // MARK: - IQ

    private mutating func iq(_ stanza: XMLElement, from: JID, to: JID, fromShadowDomain: Bool, out: inout Output) {
        guard stanza["type"] == "get" || stanza["type"] == "set" else { return }
        let payload = stanza.elements.first
        if to.resource == nil, !fromShadowDomain, let payload, payload.name == "query" {
            if payload.namespace == NS.mucAdmin {
                adminQuery(stanza, payload: payload, from: from, out: &out)
                return
            }
            if payload.namespace == NS.mucOwner {
                ownerQuery(stanza, payload: payload, from: from, out: &out)
                return
            }
        }
        if to.resource == nil, fromShadowDomain, LinkElements.isPing(stanza) {
            // Flow G: a node's keepalive to the room it federates with.
            out.stanzas.append(shadows.contains(from.bare) ? stanza.iqResult() : stanza.errorReply(type: "cancel", condition: "not-acceptable", text: "not federated with this room"))
            return
        }
        if to.resource != nil, payload?.name == "ping", payload?.namespace == NS.ping {
            // XEP-0410: the room answers a self-ping from a joined occupant.
            let joined = occupantKey(realJID: from, node: .local) == Self.fold(to.resource!)
            out.stanzas.append(joined ? stanza.iqResult() : stanza.errorReply(type: "cancel", condition: "not-acceptable"))
            return
        }
        if to.resource == nil, stanza["type"] == "get", payload?.name == "query", payload?.namespace == NS.discoInfo, payload?["node"] == nil {
            out.stanzas.append(stanza.iqResult(discoInfo))
            return
        }
        out.stanzas.append(stanza.errorReply(type: "cancel", condition: "service-unavailable"))
    }

    // MARK: - Helpers

    func occupantKey(realJID: JID, node: OccupantNode) -> String? {
        keyByRealJID[node]?[realJID]
    }

    /// What of a presence the room repeats to others: everything but MUC and link elements.
    private static func payload(of stanza: XMLElement) -> [XMLElement] {
        stanza.elements.filter {
            $0.namespace != NS.muc && $0.namespace != NS.mucUser && !LinkElements.isLinkElement($0) && $0.name != "error"
        }
    }
}
