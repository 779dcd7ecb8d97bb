import XMPPCore

/// The master's copy of one room: the authority on roster, nicks, subject and order.
///
/// Implements XEP-0045 towards stock clients (§7.2 join, §7.4 groupchat, §7.14 exit) and the
/// FMUC joined-node side in primary-replica mode towards shadows (PROTOCOL.md §3 flows A-C, E).
/// A pure state machine: `receive` takes one stanza addressed to the room and returns the
/// stanzas to send, in order. No I/O, no clocks.
public struct MasterRoom: Sendable {
    public let jid: JID
    /// Stable room id, minted at creation (PROTOCOL.md §2).
    public let rid: String
    /// Changes whenever the master loses room state (PROTOCOL.md §3 H).
    public let epoch: String
    public private(set) var subject: String = ""
    public private(set) var subjectNick: String?
    /// The last room-wide sequence number handed to shadows.
    public private(set) var seq: UInt64 = 0

    /// Occupants by folded nick.
    private var occupants: [String: Occupant] = [:]
    /// Join order, for presence bursts.
    private var joinOrder: [String] = []
    /// Federated shadow nodes (shadow room bare JIDs).
    public private(set) var shadows: Set<JID> = []

    /// Observations for logs and metrics; the room does no logging itself.
    public enum Note: Sendable, Hashable {
        case federated(shadow: JID)
        case nodeLeft(shadow: JID)
        case linkStanza(shadow: JID, kind: StanzaKind, seq: UInt64)
        case refused(from: JID, condition: String)
    }

    public struct Output: Sendable {
        public var stanzas: [XMLElement] = []
        public var notes: [Note] = []
    }

    public init(jid: JID, rid: String, epoch: String) {
        self.jid = jid.bare
        self.rid = rid
        self.epoch = epoch
    }

    public var occupantList: [Occupant] { joinOrder.compactMap { occupants[$0] } }
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
    public mutating func receive(_ stanza: XMLElement, fromShadowDomain: Bool) -> Output {
        var out = Output()
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
        if stanza["type"] == "error" { return out }

        switch stanza.name {
        case "presence":
            if let real {
                shadowPresence(stanza, from: from, to: to, real: real, removal: removal, role: assertedRole, out: &out)
                if resync, stanza["type"] == nil, shadows.contains(from.bare), !out.notes.contains(.federated(shadow: from.bare)) {
                    sendFederationBurst(to: from.bare, out: &out)
                }
            } else if fromShadowDomain {
                out.stanzas.append(stanza.errorReply(type: "modify", condition: "bad-request", text: "fmuc from missing"))
            } else {
                clientPresence(stanza, from: from, to: to, out: &out)
            }
        case "message":
            message(stanza, from: from, to: to, real: real, fromShadowDomain: fromShadowDomain, out: &out)
        case "iq":
            iq(stanza, from: from, to: to, out: &out)
        default:
            break
        }
        return out
    }

    /// XEP-0045 §9 (status 332): the service is going down. Every local occupant gets its own
    /// unavailable presence with 332, so clients know to rejoin later; the room is emptied.
    public mutating func shutdown(reason: String) -> [XMLElement] {
        var out: [XMLElement] = []
        for occupant in occupantList where occupant.node == .local {
            var p = presence(of: occupant, to: occupant.realJID, selfPresence: true, extra: [332])
            p["type"] = "unavailable"
            p.removeElements { $0.name == "status" && $0.namespace == NS.component }
            p.append(.text("status", namespace: NS.component, reason))
            out.append(p)
        }
        occupants.removeAll()
        joinOrder.removeAll()
        shadows.removeAll()
        return out
    }

    // MARK: - Presence

    private mutating func clientPresence(_ stanza: XMLElement, from: JID, to: JID, out: inout Output) {
        occupantPresence(stanza, nick: to.resource, realJID: from, node: .local, removal: nil, role: nil, out: &out)
    }

    private mutating func shadowPresence(_ stanza: XMLElement, from: JID, to: JID, real: JID, removal: Removal?, role: String?, out: inout Output) {
        guard from.resource != nil else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "jid-malformed", text: "a nick is required"))
            return
        }
        occupantPresence(stanza, nick: to.resource, realJID: real, node: .shadow(from.bare), removal: removal, role: role, out: &out)
    }

    /// An IRC user removed by someone else, as the shadow reports it (PROTOCOL.md §3 E).
    struct Removal {
        var kind: String
        var by: String?
        var reason: String?

        init(_ element: XMLElement) {
            kind = element["kind"] ?? "kick"
            by = element["by"]
            reason = element["reason"]
        }
    }

    /// One presence from an occupant's session, local or behind a shadow: join, update or leave.
    private mutating func occupantPresence(
        _ stanza: XMLElement, nick: String?, realJID: JID, node: OccupantNode, removal: Removal?, role: String?, out: inout Output
    ) {
        let current = occupantKey(realJID: realJID, node: node)
        if stanza["type"] == "unavailable" {
            if let current { leave(key: current, stanza: stanza, removal: removal, out: &out) }
            return
        }
        if stanza["type"] != nil { return }  // subscription traffic has no place in a room
        guard let nick else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "jid-malformed", text: "a nick is required"))
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
            occupants[Self.fold(nick)]?.realJID = realJID
            if let role { occupants[Self.fold(nick)]?.role = role }
            update(key: Self.fold(nick), stanza: stanza, roleBefore: before, out: &out)
            return
        }
        guard occupants[Self.fold(nick)] == nil else {
            refuseConflict(stanza, nick: nick, out: &out)
            return
        }
        if let current {
            changeNick(key: current, to: nick, stanza: stanza, out: &out)
            return
        }
        join(Occupant(nick: nick, realJID: realJID, node: node, role: role ?? "participant"), stanza: stanza, out: &out)
        if case .shadow(let shadow) = node, !shadows.contains(shadow) {
            // Flow A: the first presence from a node federates it, whether or not it carries
            // <link/> (a plain FMUC peer federates the same way). The node learns of its own
            // user from the burst, which is also her ack, so it joins the fanout only now.
            shadows.insert(shadow)
            out.notes.append(.federated(shadow: shadow))
            sendFederationBurst(to: shadow, out: &out)
        }
    }

    private mutating func join(_ occupant: Occupant, stanza: XMLElement, out: inout Output) {
        let key = Self.fold(occupant.nick)
        var occupant = occupant
        occupant.presencePayload = Self.payload(of: stanza)
        // A local client first receives everyone already present (XEP-0045 §7.2.3).
        if occupant.node == .local {
            for existing in occupantList {
                out.stanzas.append(presence(of: existing, to: occupant.realJID, selfPresence: false))
            }
        }
        occupants[key] = occupant
        joinOrder.append(key)
        broadcastPresence(of: occupant, unavailable: false, extra: [], out: &out)
        if occupant.node == .local {
            out.stanzas.append(subjectMessage(to: occupant.realJID))
        }
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

    private mutating func leave(key: String, stanza: XMLElement, removal: Removal? = nil, out: inout Output) {
        guard var occupant = occupants.removeValue(forKey: key) else { return }
        joinOrder.removeAll { $0 == key }
        occupant.presencePayload = Self.payload(of: stanza).filter { $0.name == "status" }
        if let removal, removal.kind == "kick" {
            // XEP-0045 §8.2: 307, with the actor and the reason on the item.
            broadcastPresence(of: occupant, unavailable: true, extra: [307], actor: removal.by, reason: removal.reason, out: &out)
        } else {
            broadcastPresence(of: occupant, unavailable: true, extra: [], out: &out)
        }
        if case .shadow(let shadow) = occupant.node,
            !occupants.values.contains(where: { $0.node == occupant.node })
        {
            shadows.remove(shadow)
            out.stanzas.append(
                XMLElement.stanza(.presence, from: jid, to: shadow, type: "unavailable", children: [LinkElements.left()]))
            out.notes.append(.nodeLeft(shadow: shadow))
        }
    }

    /// XEP-0045 §7.6: everyone sees the old nick leave with 303 and the new nick, then the
    /// occupant under its new nick. Shadows get both, numbered, and show one NICK on IRC.
    private mutating func changeNick(key: String, to newNick: String, stanza: XMLElement, out: inout Output) {
        guard var occupant = occupants.removeValue(forKey: key), let index = joinOrder.firstIndex(of: key) else { return }
        broadcastPresence(of: occupant, unavailable: true, extra: [303], newNick: newNick, out: &out)
        let newKey = Self.fold(newNick)
        occupant.nick = newNick
        occupant.presencePayload = Self.payload(of: stanza)
        occupants[newKey] = occupant
        joinOrder[index] = newKey
        broadcastPresence(of: occupant, unavailable: false, extra: [], out: &out)
    }

    private func refuseConflict(_ stanza: XMLElement, nick: String, out: inout Output) {
        var reply = stanza.errorReply(
            type: "cancel", condition: "conflict", text: "the nick \(nick) is already in use in this room")
        reply.removeElements { $0.namespace == NS.muc }
        out.stanzas.append(reply)
        out.notes.append(.refused(from: stanza["from"].flatMap(JID.init) ?? jid, condition: "conflict"))
    }

    /// Sends an occupant's presence to every local client (with 110 to the occupant itself)
    /// and once to every shadow node, numbered.
    private mutating func broadcastPresence(
        of occupant: Occupant, unavailable: Bool, extra: [Int], actor: String? = nil, reason: String? = nil, newNick: String? = nil,
        out: inout Output
    ) {
        func make(to: JID, selfPresence: Bool) -> XMLElement {
            var p = presence(of: occupant, to: to, selfPresence: selfPresence, extra: extra, actor: actor, reason: reason, newNick: newNick)
            if unavailable { p["type"] = "unavailable" }
            return p
        }
        for other in occupantList where other.node == .local {
            out.stanzas.append(make(to: other.realJID, selfPresence: other.realJID == occupant.realJID))
        }
        if !occupants.values.contains(where: { $0.realJID == occupant.realJID && $0.node == occupant.node }) && occupant.node == .local {
            // The leaving (or renaming) client is not in the list now: it still gets its own.
            out.stanzas.append(make(to: occupant.realJID, selfPresence: true))
        }
        fanOutToShadows(make(to: jid, selfPresence: false), real: occupant.realJID, out: &out)
    }

    private func presence(
        of occupant: Occupant, to: JID, selfPresence: Bool, extra: [Int] = [], actor: String? = nil, reason: String? = nil,
        newNick: String? = nil
    ) -> XMLElement {
        var p = XMLElement.stanza(.presence, from: jid.with(resource: occupant.nick), to: to)
        for element in occupant.presencePayload { p.append(element) }
        var x = XMLElement("x", namespace: NS.mucUser)
        var item = XMLElement("item", namespace: NS.mucUser, attributes: ["affiliation": occupant.affiliation, "role": occupant.role])
        if let newNick { item["nick"] = newNick }
        if let actor { item.append(XMLElement("actor", namespace: NS.mucUser, attributes: ["nick": actor])) }
        if let reason, !reason.isEmpty { item.append(.text("reason", namespace: NS.mucUser, reason)) }
        x.append(item)
        for code in extra { x.append(XMLElement("status", namespace: NS.mucUser, attributes: ["code": String(code)])) }
        if selfPresence { x.append(XMLElement("status", namespace: NS.mucUser, attributes: ["code": "110"])) }
        p.append(x)
        return p
    }

    /// One copy to each federated node, addressed to its bare JID, with the real JID and the
    /// next room sequence number (flow C, D).
    private mutating func fanOutToShadows(_ stanza: XMLElement, real: JID, out: inout Output) {
        // Every room-wide stanza is numbered, shadows or not, so a later node's `sync` tells
        // it where the room stands.
        seq += 1
        for shadow in shadows.sorted() {
            var copy = stanza
            copy["to"] = shadow.description
            copy.append(LinkElements.fmuc(from: real))
            copy.append(LinkElements.seq(seq, epoch: epoch))
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

    private func subjectMessage(to: JID) -> XMLElement {
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
        var reflected = stanza
        reflected["from"] = jid.with(resource: sender.nick).description
        // A client's stanza-id claiming to be the room's is removed (XEP-0359 §4).
        reflected.removeElements { $0.name == "stanza-id" && $0.namespace == NS.sid && $0["by"].flatMap(JID.init) == jid }
        if let subjectElement = stanza.child("subject", namespace: stanza.namespace), stanza.child("body", namespace: stanza.namespace) == nil {
            subject = subjectElement.text
            subjectNick = sender.nick
        } else {
            reflected.append(XMLElement("stanza-id", namespace: NS.sid, attributes: ["id": RandomID.make(bytes: 12), "by": jid.description]))
        }
        for occupant in occupantList where occupant.node == .local {
            var copy = reflected
            copy["to"] = occupant.realJID.description
            out.stanzas.append(copy)
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
        var copy = stanza
        copy["from"] = jid.with(resource: sender.nick).description
        copy.removeElements { $0.name == "x" && $0.namespace == NS.mucUser }
        copy.append(XMLElement("x", namespace: NS.mucUser))
        switch recipient.node {
        case .local:
            copy["to"] = recipient.realJID.description
        case .shadow(let shadow):
            copy["to"] = shadow.with(resource: recipient.nick).description
            copy.append(LinkElements.fmuc(from: sender.realJID))
        }
        out.stanzas.append(copy)
    }

    // MARK: - IQ

    private func iq(_ stanza: XMLElement, from: JID, to: JID, out: inout Output) {
        guard stanza["type"] == "get" || stanza["type"] == "set" else { return }
        let payload = stanza.elements.first
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

    /// The room's disco#info (XEP-0045 §6.4): identity, the features that describe it, and a
    /// `muc#roominfo` form whose `x-shadowbridge-bridged` lists the shadow rooms (IRC channels)
    /// federated into it, so clients can mark the room bridged (PROTOCOL.md §3, room list).
    public var discoInfo: XMLElement {
        var query = XMLElement("query", namespace: NS.discoInfo)
        query.append(XMLElement("identity", namespace: NS.discoInfo, attributes: ["category": "conference", "type": "text", "name": jid.local ?? ""]))
        let features = [
            NS.muc, "muc_public", "muc_open", "muc_unmoderated", "muc_semianonymous", "muc_temporary", "muc_unsecured",
            "muc#stable_id", "http://jabber.org/protocol/muc#self-ping-optimization", NS.sid,
        ]
        for feature in features {
            query.append(XMLElement("feature", namespace: NS.discoInfo, attributes: ["var": feature]))
        }
        let form = DataForm(type: "result", formType: NS.roomInfo, fields: [
            .init("muc#roominfo_subject", label: "Subject", values: [subject]),
            .init("muc#roominfo_occupants", label: "Number of occupants", values: [String(occupants.count)]),
            .init("x-shadowbridge-bridged", type: "list-multi", label: "Bridged IRC channels", values: shadows.map(\.description).sorted()),
        ])
        query.append(form.element)
        return query
    }

    // MARK: - Helpers

    private func occupantKey(realJID: JID, node: OccupantNode) -> String? {
        occupants.first { $0.value.realJID == realJID && $0.value.node == node }?.key
    }

    /// What of a presence the room repeats to others: everything but MUC and link elements.
    private static func payload(of stanza: XMLElement) -> [XMLElement] {
        stanza.elements.filter {
            $0.namespace != NS.muc && $0.namespace != NS.mucUser && !LinkElements.isLinkElement($0) && $0.name != "error"
        }
    }
}
