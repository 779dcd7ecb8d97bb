import Foundation
import XMPPCore

/// A room's configuration: the `muc#roomconfig` form's fields (XEP-0045 §10.2).
public struct RoomConfig: Sendable, Hashable, Codable {
    public var name = ""
    public var description = ""
    public var persistent = true
    public var isPublic = true
    public var membersOnly = false
    public var moderated = false
    /// "moderators" (semi-anonymous) or "anyone" (non-anonymous).
    public var whois = "moderators"
    public var changeSubject = true
    /// "anyone", "participants", "moderators" or "none".
    public var allowPM = "anyone"
    public var password: String?
    public var maxUsers: Int?
    public var logging = false
    /// Messages are kept in the room archive, readable with MAM (XEP-0313).
    public var archiving = true

    public init() {}

    /// Decodes what an earlier version stored: a key it did not know keeps its default.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init()
        name = try c.decodeIfPresent(String.self, forKey: .name) ?? name
        description = try c.decodeIfPresent(String.self, forKey: .description) ?? description
        persistent = try c.decodeIfPresent(Bool.self, forKey: .persistent) ?? persistent
        isPublic = try c.decodeIfPresent(Bool.self, forKey: .isPublic) ?? isPublic
        membersOnly = try c.decodeIfPresent(Bool.self, forKey: .membersOnly) ?? membersOnly
        moderated = try c.decodeIfPresent(Bool.self, forKey: .moderated) ?? moderated
        whois = try c.decodeIfPresent(String.self, forKey: .whois) ?? whois
        changeSubject = try c.decodeIfPresent(Bool.self, forKey: .changeSubject) ?? changeSubject
        allowPM = try c.decodeIfPresent(String.self, forKey: .allowPM) ?? allowPM
        password = try c.decodeIfPresent(String.self, forKey: .password)
        maxUsers = try c.decodeIfPresent(Int.self, forKey: .maxUsers)
        logging = try c.decodeIfPresent(Bool.self, forKey: .logging) ?? logging
        archiving = try c.decodeIfPresent(Bool.self, forKey: .archiving) ?? archiving
    }

    /// A room a client creates: temporary until its owner says otherwise.
    public static var created: RoomConfig {
        var config = RoomConfig()
        config.persistent = false
        return config
    }
}

extension MasterRoom {
    /// Affiliations in rank order: an actor may act on those below them (XEP-0045 §5.2).
    static func rank(_ affiliation: String) -> Int {
        switch affiliation {
        case "owner": 4
        case "admin": 3
        case "member": 2
        case "none": 1
        default: 0  // outcast
        }
    }

    private func actor(_ from: JID) -> Occupant? {
        occupantKey(realJID: from, node: .local).flatMap { occupants[$0] }
    }

    /// The service's admins own every room (as in Prosody); everyone else has what was granted.
    func affiliation(of jid: JID) -> String {
        serviceAdmins.contains(jid.bare) ? "owner" : affiliations[jid.bare] ?? "none"
    }

    /// The role an affiliation enters with: admins and owners moderate; in a moderated room
    /// those without an affiliation are visitors.
    func defaultRole(for affiliation: String) -> String {
        if ["owner", "admin"].contains(affiliation) { return "moderator" }
        return config.moderated && affiliation == "none" ? "visitor" : "participant"
    }

    // MARK: - muc#admin: roles and affiliations (XEP-0045 §8, §9)

    mutating func adminQuery(_ stanza: XMLElement, payload: XMLElement, from: JID, out: inout Output) {
        let items = payload.children("item", namespace: NS.mucAdmin)
        let actorAffiliation = affiliation(of: from)
        let actorOccupant = actor(from)
        if stanza["type"] == "get" {
            guard let item = items.first else {
                out.stanzas.append(stanza.errorReply(type: "modify", condition: "bad-request"))
                return
            }
            var result = XMLElement("query", namespace: NS.mucAdmin)
            if let role = item["role"] {
                guard actorOccupant?.role == "moderator" else {
                    out.stanzas.append(stanza.errorReply(type: "auth", condition: "forbidden", text: "only moderators may list roles"))
                    return
                }
                for occupant in occupantList where occupant.role == role {
                    result.append(XMLElement("item", namespace: NS.mucAdmin, attributes: [
                        "affiliation": occupant.affiliation, "role": occupant.role, "nick": occupant.nick, "jid": occupant.realJID.description,
                    ]))
                }
            } else if let wanted = item["affiliation"] {
                guard Self.rank(actorAffiliation) >= 3 else {
                    out.stanzas.append(stanza.errorReply(type: "auth", condition: "forbidden", text: "only admins and owners may list affiliations"))
                    return
                }
                for (jid, affiliation) in affiliations.sorted(by: { $0.key.description < $1.key.description }) where affiliation == wanted {
                    result.append(XMLElement("item", namespace: NS.mucAdmin, attributes: ["affiliation": affiliation, "jid": jid.description]))
                }
            } else {
                out.stanzas.append(stanza.errorReply(type: "modify", condition: "bad-request"))
                return
            }
            out.stanzas.append(stanza.iqResult(result))
            return
        }
        guard !items.isEmpty else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "bad-request"))
            return
        }
        // Check every item first: a batch either applies whole or not at all.
        for item in items {
            if let error = checkAdminItem(item, actorAffiliation: actorAffiliation, actor: actorOccupant) {
                out.stanzas.append(stanza.errorReply(type: error.type, condition: error.condition, text: error.text))
                out.notes.append(.refused(from: from, condition: error.condition))
                return
            }
        }
        for item in items {
            applyAdminItem(item, actorNick: actorOccupant?.nick, out: &out)
        }
        out.stanzas.append(stanza.iqResult())
    }

    private func checkAdminItem(_ item: XMLElement, actorAffiliation: String, actor: Occupant?) -> (type: String, condition: String, text: String)? {
        let actorRank = Self.rank(actorAffiliation)
        if let role = item["role"] {
            guard ["none", "visitor", "participant", "moderator"].contains(role) else { return ("modify", "bad-request", "no such role") }
            guard let nick = item["nick"], let target = occupants[Self.fold(nick)] else { return ("cancel", "item-not-found", "no such occupant") }
            guard actor?.role == "moderator" else { return ("auth", "forbidden", "only moderators may change roles") }
            let targetRank = Self.rank(target.affiliation)
            if role == "moderator" || target.role == "moderator" {
                // Granting or revoking moderator is for admins and owners (§9.6, §9.7).
                guard actorRank >= 3 else { return ("auth", "forbidden", "only admins and owners may grant or revoke moderator") }
            }
            if targetRank >= 3 && role != "moderator" {
                return ("cancel", "not-allowed", "\(target.nick) is an \(target.affiliation) of this room")
            }
            return nil
        }
        if let affiliation = item["affiliation"] {
            guard ["owner", "admin", "member", "none", "outcast"].contains(affiliation) else { return ("modify", "bad-request", "no such affiliation") }
            guard let raw = item["jid"], let target = JID(raw)?.bare else { return ("modify", "bad-request", "affiliations are by JID") }
            guard actorRank >= 3 else { return ("auth", "forbidden", "only admins and owners may change affiliations") }
            let current = self.affiliation(of: target)
            if actorRank == 3 && (Self.rank(current) >= 3 || Self.rank(affiliation) >= 3) {
                return ("auth", "forbidden", "only owners may change admins and owners")
            }
            if current == "owner" && affiliation != "owner" && affiliations.values.filter({ $0 == "owner" }).count == 1 {
                return ("cancel", "conflict", "a room keeps at least one owner")
            }
            return nil
        }
        return ("modify", "bad-request", "an item needs a role or an affiliation")
    }

    private mutating func applyAdminItem(_ item: XMLElement, actorNick: String?, out: inout Output) {
        let reason = item.child("reason", namespace: NS.mucAdmin)?.text
        if let role = item["role"], let nick = item["nick"], let target = occupants[Self.fold(nick)] {
            if role == "none" {
                leaveRemoved(key: Self.fold(nick), code: 307, actor: actorNick, reason: reason, out: &out)
            } else if role != target.role {
                occupants[Self.fold(nick)]?.role = role
                broadcastPresence(of: occupants[Self.fold(nick)]!, unavailable: false, extra: [], actor: actorNick, reason: reason, out: &out)
            }
            return
        }
        guard let affiliation = item["affiliation"], let target = item["jid"].flatMap(JID.init)?.bare else { return }
        if affiliation == "none" { affiliations[target] = nil } else { affiliations[target] = affiliation }
        for key in joinOrder.filter({ occupants[$0]?.realJID.bare == target }) {
            if affiliation == "outcast" {
                leaveRemoved(key: key, code: 301, actor: actorNick, reason: reason, out: &out)
            } else if config.membersOnly && affiliation == "none" {
                leaveRemoved(key: key, code: 321, actor: actorNick, reason: reason, out: &out)
            } else {
                let role = defaultRole(for: affiliation)
                occupants[key]?.affiliation = affiliation
                occupants[key]?.role = role
                broadcastPresence(of: occupants[key]!, unavailable: false, extra: [], actor: actorNick, reason: reason, out: &out)
            }
        }
    }

    /// Removed by the room: everyone, the occupant included, sees `code` with the actor and
    /// reason; a shadow's user is told the same way (PROTOCOL.md §3 E).
    mutating func leaveRemoved(key: String, code: Int, actor: String?, reason: String?, out: inout Output) {
        guard let occupant = occupants[key] else { return }
        let unavailable = XMLElement.stanza(.presence, from: occupant.realJID, to: jid.with(resource: occupant.nick), type: "unavailable")
        leave(key: key, stanza: unavailable, removal: Removal(code: code, by: actor, reason: reason), out: &out)
    }

    // MARK: - muc#owner: configuration and destruction (XEP-0045 §10)

    mutating func ownerQuery(_ stanza: XMLElement, payload: XMLElement, from: JID, out: inout Output) {
        guard affiliation(of: from) == "owner" else {
            out.stanzas.append(stanza.errorReply(type: "auth", condition: "forbidden", text: "only owners may configure this room"))
            out.notes.append(.refused(from: from, condition: "forbidden"))
            return
        }
        if stanza["type"] == "get" {
            var query = XMLElement("query", namespace: NS.mucOwner)
            query.append(configForm.element)
            out.stanzas.append(stanza.iqResult(query))
            return
        }
        if let destroy = payload.child("destroy", namespace: NS.mucOwner) {
            destroyRoom(reason: destroy.child("reason", namespace: NS.mucOwner)?.text, alternate: destroy["jid"], out: &out)
            out.stanzas.append(stanza.iqResult())
            return
        }
        guard let form = payload.child("x", namespace: NS.dataForms).flatMap(DataForm.init) else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "bad-request", text: "a data form is required"))
            return
        }
        if form.type == "cancel" {
            if locked {
                destroyRoom(reason: nil, alternate: nil, out: &out)
            }
            out.stanzas.append(stanza.iqResult())
            return
        }
        guard form.type == "submit" else {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "bad-request", text: "submit or cancel the form"))
            return
        }
        var updated = config
        if let error = Self.apply(form, to: &updated) {
            out.stanzas.append(stanza.errorReply(type: "modify", condition: "not-acceptable", text: error))
            return
        }
        let wasLocked = locked
        let before = config
        config = updated
        locked = false
        out.stanzas.append(stanza.iqResult())
        if !wasLocked && before != config {
            // XEP-0045 §10.2.1: occupants are told the configuration changed (104).
            var x = XMLElement("x", namespace: NS.mucUser)
            x.append(XMLElement("status", namespace: NS.mucUser, attributes: ["code": "104"]))
            let notice = XMLElement.stanza(.message, from: jid, to: jid, type: "groupchat", children: [x])
            for session in localOccupants.flatMap(\.sessions) {
                var copy = notice
                copy["to"] = session.description
                copy["id"] = RandomID.make(bytes: 6)
                out.stanzas.append(copy)
            }
        }
        if updated.membersOnly && !before.membersOnly {
            // §9.9: occupants without an affiliation leave a room that became members-only (322).
            for key in joinOrder.filter({ occupants[$0].map { $0.affiliation == "none" && $0.node == .local } == true }) {
                leaveRemoved(key: key, code: 322, actor: nil, reason: nil, out: &out)
            }
        }
    }

    /// Everyone leaves with `<destroy/>` (XEP-0045 §10.9); the service then forgets the room.
    mutating func destroyRoom(reason: String?, alternate: String?, out: inout Output) {
        for occupant in occupantList {
            var p = XMLElement.stanza(.presence, from: jid.with(resource: occupant.nick), to: occupant.realJID, type: "unavailable")
            var x = XMLElement("x", namespace: NS.mucUser)
            x.append(XMLElement("item", namespace: NS.mucUser, attributes: ["affiliation": "none", "role": "none"]))
            var destroy = XMLElement("destroy", namespace: NS.mucUser)
            if let alternate { destroy["jid"] = alternate }
            if let reason { destroy.append(.text("reason", namespace: NS.mucUser, reason)) }
            x.append(destroy)
            p.append(x)
            if case .shadow(let shadow) = occupant.node {
                // The shadow hears it as a removal of its user, numbered like any room stanza.
                p["to"] = jid.description
                fanOutOnlyTo(shadow, p, real: occupant.realJID, out: &out)
            } else {
                for session in occupant.sessions {
                    p["to"] = session.description
                    out.stanzas.append(p)
                }
            }
        }
        removeAllOccupants()
        for shadow in shadows.sorted() {
            out.stanzas.append(XMLElement.stanza(.presence, from: jid, to: shadow, type: "unavailable", children: [LinkElements.left()]))
        }
        shadows.removeAll()
        isDestroyed = true
    }

    private mutating func fanOutOnlyTo(_ shadow: JID, _ stanza: XMLElement, real: JID, out: inout Output) {
        seq += 1
        var copy = stanza
        copy["to"] = shadow.description
        copy.append(LinkElements.fmuc(from: real))
        copy.append(LinkElements.seq(seq, epoch: epoch))
        out.stanzas.append(copy)
    }

    /// The `muc#roomconfig` form with the current values.
    public var configForm: DataForm {
        func bool(_ b: Bool) -> [String] { [b ? "1" : "0"] }
        let whois = DataForm.Field(
            "muc#roomconfig_whois", type: "list-single", label: "Who may see real JIDs", values: [config.whois],
            options: [.init(label: "Moderators", value: "moderators"), .init(label: "Anyone", value: "anyone")])
        let allowPM = DataForm.Field(
            "muc#roomconfig_allowpm", type: "list-single", label: "Who may send private messages", values: [config.allowPM],
            options: ["anyone", "participants", "moderators", "none"].map { .init(label: $0.capitalized, value: $0) })
        return DataForm(type: "form", title: "Configuration of \(jid)", formType: "http://jabber.org/protocol/muc#roomconfig", fields: [
            .init("muc#roomconfig_roomname", type: "text-single", label: "Name", values: [config.name]),
            .init("muc#roomconfig_roomdesc", type: "text-single", label: "Description", values: [config.description]),
            .init("muc#roomconfig_persistentroom", type: "boolean", label: "Persistent", values: bool(config.persistent)),
            .init("muc#roomconfig_publicroom", type: "boolean", label: "Listed in the room directory", values: bool(config.isPublic)),
            .init("muc#roomconfig_membersonly", type: "boolean", label: "Members only", values: bool(config.membersOnly)),
            .init("muc#roomconfig_moderatedroom", type: "boolean", label: "Moderated", values: bool(config.moderated)),
            whois,
            .init("muc#roomconfig_changesubject", type: "boolean", label: "Occupants may change the subject", values: bool(config.changeSubject)),
            allowPM,
            .init("muc#roomconfig_passwordprotectedroom", type: "boolean", label: "Password protected", values: bool(config.password != nil)),
            .init("muc#roomconfig_roomsecret", type: "text-private", label: "Password", values: config.password.map { [$0] } ?? []),
            .init("muc#roomconfig_maxusers", type: "text-single", label: "Maximum occupants (empty: no limit)", values: config.maxUsers.map { [String($0)] } ?? []),
            .init("muc#roomconfig_enablelogging", type: "boolean", label: "Public logging", values: bool(config.logging)),
        ] + (archiveAllowed ? [.init("muc#roomconfig_enablearchiving", type: "boolean", label: "Keep a message archive (MAM)", values: bool(config.archiving))] : []))
    }

    /// Applies a submitted form; an error text for a value that makes no sense.
    static func apply(_ form: DataForm, to config: inout RoomConfig) -> String? {
        func bool(_ variable: String) -> Bool? {
            guard let value = form[variable]?.value else { return nil }
            return value == "1" || value == "true"
        }
        if let v = form["muc#roomconfig_roomname"]?.value { config.name = v }
        if let v = form["muc#roomconfig_roomdesc"]?.value { config.description = v }
        if let v = bool("muc#roomconfig_persistentroom") { config.persistent = v }
        if let v = bool("muc#roomconfig_publicroom") { config.isPublic = v }
        if let v = bool("muc#roomconfig_membersonly") { config.membersOnly = v }
        if let v = bool("muc#roomconfig_moderatedroom") { config.moderated = v }
        if let v = form["muc#roomconfig_whois"]?.value {
            guard ["moderators", "anyone"].contains(v) else { return "whois must be moderators or anyone" }
            config.whois = v
        }
        if let v = bool("muc#roomconfig_changesubject") { config.changeSubject = v }
        if let v = form["muc#roomconfig_allowpm"]?.value {
            guard ["anyone", "participants", "moderators", "none"].contains(v) else { return "allowpm must be anyone, participants, moderators or none" }
            config.allowPM = v
        }
        let secret = form["muc#roomconfig_roomsecret"]?.value
        if let protected = bool("muc#roomconfig_passwordprotectedroom") {
            if protected {
                guard let secret, !secret.isEmpty else { return "a password-protected room needs a password" }
                config.password = secret
            } else {
                config.password = nil
            }
        } else if let secret {
            config.password = secret.isEmpty ? nil : secret
        }
        if let field = form["muc#roomconfig_maxusers"] {
            if let v = field.value, !v.isEmpty, v != "none" {
                guard let n = Int(v), n > 0 else { return "maxusers must be a positive number" }
                config.maxUsers = n
            } else {
                config.maxUsers = nil
            }
        }
        if let v = bool("muc#roomconfig_enablelogging") { config.logging = v }
        if let v = bool("muc#roomconfig_enablearchiving") { config.archiving = v }
        return nil
    }

    // MARK: - disco#info

    /// The room's disco#info (XEP-0045 §6.4): identity, the features that describe its
    /// configuration, and a `muc#roominfo` form whose `x-shadowbridge-bridged` lists the shadow
    /// rooms (IRC channels) federated into it (PROTOCOL.md §3, room list).
    public var discoInfo: XMLElement {
        var query = XMLElement("query", namespace: NS.discoInfo)
        let name = config.name.isEmpty ? (jid.local ?? "") : config.name
        query.append(XMLElement("identity", namespace: NS.discoInfo, attributes: ["category": "conference", "type": "text", "name": name]))
        let features = [
            NS.muc, config.isPublic ? "muc_public" : "muc_hidden", config.membersOnly ? "muc_membersonly" : "muc_open",
            config.moderated ? "muc_moderated" : "muc_unmoderated", config.whois == "anyone" ? "muc_nonanonymous" : "muc_semianonymous",
            config.persistent ? "muc_persistent" : "muc_temporary", config.password != nil ? "muc_passwordprotected" : "muc_unsecured",
            "muc#stable_id", "http://jabber.org/protocol/muc#self-ping-optimization", NS.sid, NS.occupantID,
        ] + (archives ? [NS.mam] : [])
        for feature in features {
            query.append(XMLElement("feature", namespace: NS.discoInfo, attributes: ["var": feature]))
        }
        var fields: [DataForm.Field] = [
            .init("muc#roominfo_description", label: "Description", values: [config.description]),
            .init("muc#roominfo_subject", label: "Subject", values: [subject]),
            .init("muc#roominfo_occupants", label: "Number of occupants", values: [String(occupants.count)]),
            .init("muc#roomconfig_changesubject", label: "Occupants may change the subject", values: [config.changeSubject ? "1" : "0"]),
            .init("x-shadowbridge-bridged", type: "list-multi", label: "Bridged IRC channels", values: shadows.map(\.description).sorted()),
        ]
        if let maxUsers = config.maxUsers { fields.append(.init("muc#roomconfig_maxusers", values: [String(maxUsers)])) }
        query.append(DataForm(type: "result", formType: NS.roomInfo, fields: fields).element)
        return query
    }
}
