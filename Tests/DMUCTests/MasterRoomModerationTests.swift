import DMUC
import Foundation
import Testing
import XMPPCore

/// XEP-0045 for stock clients beyond the walking skeleton: history, occupant ids, creation and
/// configuration, roles and affiliations, bounces. Stanzas in, stanzas out.
@Suite("MasterRoom: history, occupant ids, configuration and moderation")
struct MasterRoomModerationTests {
    static let room = JID("ops@rooms.test")!
    static let owner = JID("olga@xmpp.test/desk")!
    static let alice = JID("alice@xmpp.test/phone")!
    static let bob = JID("bob@xmpp.test/laptop")!
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// A room `olga` created and configured with `fields`, with olga in it as its owner.
    static func configured(_ fields: [String: String] = [:]) -> MasterRoom {
        var room = MasterRoom(jid: Self.room, rid: "r", epoch: "e", config: .created, owner: owner)
        _ = room.receive(join(owner, nick: "olga"), fromShadowDomain: false, at: t0)
        _ = room.receive(configure(fields), fromShadowDomain: false, at: t0)
        return room
    }

    static func join(_ from: JID, nick: String, history: [String: String]? = nil, password: String? = nil) -> XMLElement {
        var p = XMLElement.stanza(.presence, from: from, to: room.with(resource: nick))
        var x = XMLElement("x", namespace: NS.muc)
        if let history { x.append(XMLElement("history", namespace: NS.muc, attributes: history)) }
        if let password { x.append(.text("password", namespace: NS.muc, password)) }
        p.append(x)
        return p
    }

    static func configure(_ fields: [String: String], from: JID = owner) -> XMLElement {
        var query = XMLElement("query", namespace: NS.mucOwner)
        query.append(DataForm(type: "submit", formType: "http://jabber.org/protocol/muc#roomconfig", fields: fields.map { .init($0.key, values: [$0.value]) }).element)
        return .stanza(.iq, from: from, to: room, type: "set", id: "cfg", children: [query])
    }

    static func admin(_ from: JID, _ attributes: [String: String], reason: String? = nil, type: String = "set") -> XMLElement {
        var item = XMLElement("item", namespace: NS.mucAdmin, attributes: attributes)
        if let reason { item.append(.text("reason", namespace: NS.mucAdmin, reason)) }
        var query = XMLElement("query", namespace: NS.mucAdmin)
        query.append(item)
        return .stanza(.iq, from: from, to: room, type: type, id: "adm", children: [query])
    }

    static func say(_ from: JID, _ body: String) -> XMLElement {
        .stanza(.message, from: from, to: room, type: "groupchat", id: "m", children: [.text("body", namespace: NS.component, body)])
    }

    static func codes(_ p: XMLElement) -> Set<String> {
        Set(p.child("x", namespace: NS.mucUser)?.children("status", namespace: NS.mucUser).compactMap { $0["code"] } ?? [])
    }

    @Test("a client creates a room: 201, locked for others until the owner submits the form, then open")
    func creation() {
        var room = MasterRoom(jid: Self.room, rid: "r", epoch: "e", config: .created, owner: Self.owner)
        let created = room.receive(Self.join(Self.owner, nick: "olga"), fromShadowDomain: false, at: Self.t0).stanzas
        #expect(created.contains { Self.codes($0).isSuperset(of: ["110", "201"]) })
        #expect(created.first { Self.codes($0).contains("110") }?.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["affiliation"] == "owner")
        #expect(room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false).stanzas.first?.errorCondition == "item-not-found")
        let form = room.receive(.stanza(.iq, from: Self.owner, to: Self.room, type: "get", id: "g", children: [XMLElement("query", namespace: NS.mucOwner)]), fromShadowDomain: false).stanzas
        #expect(form.first?.child("query", namespace: NS.mucOwner)?.child("x", namespace: NS.dataForms) != nil)
        let notOwner = room.receive(Self.configure([:], from: Self.alice), fromShadowDomain: false).stanzas
        #expect(notOwner.first?.errorCondition == "forbidden")
        #expect(room.receive(Self.configure([:]), fromShadowDomain: false).stanzas.first?["type"] == "result")
        #expect(!room.locked)
        #expect(room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false).stanzas.contains { Self.codes($0).contains("110") })
    }

    @Test("occupant ids on every presence and message: the same for the same account, different per room; a claimed one is replaced")
    func occupantIDs() {
        var room = Self.configured()
        let joined = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false).stanzas
        let id = joined.first { $0["from"] == "ops@rooms.test/alice" }?.child("occupant-id", namespace: NS.occupantID)?["id"]
        #expect(id != nil && id!.count == 32)
        var claimed = Self.say(Self.alice, "hi")
        claimed.append(XMLElement("occupant-id", namespace: NS.occupantID, attributes: ["id": "forged"]))
        let said = room.receive(claimed, fromShadowDomain: false).stanzas
        #expect(said.allSatisfy { $0.children("occupant-id", namespace: NS.occupantID).map { $0["id"] } == [id] })
        var other = MasterRoom(jid: JID("dev@rooms.test")!, rid: "r2", epoch: "e")
        let elsewhere = other.receive(.stanza(.presence, from: Self.alice, to: JID("dev@rooms.test/alice")!, children: [XMLElement("x", namespace: NS.muc)]), fromShadowDomain: false).stanzas
        #expect(elsewhere.last { $0["from"] == "dev@rooms.test/alice" }?.child("occupant-id", namespace: NS.occupantID)?["id"] != id)
    }

    @Test("history on join: after the self-presence, before the subject, with delay from the room; maxstanzas, maxchars, seconds and since")
    func history() {
        var room = Self.configured()
        for (i, body) in ["one", "two", "three"].enumerated() {
            _ = room.receive(Self.say(Self.owner, body), fromShadowDomain: false, at: Self.t0.addingTimeInterval(Double(i) * 60))
        }
        let joined = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false, at: Self.t0.addingTimeInterval(600)).stanzas
        #expect(joined.compactMap { $0.child("body", namespace: NS.component)?.text } == ["one", "two", "three"])
        let selfIndex = joined.firstIndex { Self.codes($0).contains("110") }!
        let firstHistory = joined.firstIndex { $0.child("body", namespace: NS.component) != nil }!
        let subjectIndex = joined.firstIndex { $0.child("subject", namespace: NS.component) != nil }!
        #expect(selfIndex < firstHistory && firstHistory < subjectIndex && subjectIndex == joined.count - 1)
        let delay = joined[firstHistory].child("delay", namespace: NS.delay)
        #expect(delay?["from"] == "ops@rooms.test" && delay?["stamp"] == XMPPDateTime.format(Self.t0))
        #expect(joined[firstHistory]["to"] == Self.alice.description)

        func historyFor(_ history: [String: String], at offset: Double = 600) -> [String] {
            var copy = room
            return copy.receive(Self.join(Self.bob, nick: "bob", history: history), fromShadowDomain: false, at: Self.t0.addingTimeInterval(offset))
                .stanzas.filter { $0["to"] == Self.bob.description }.compactMap { $0.child("body", namespace: NS.component)?.text }
        }
        #expect(historyFor(["maxstanzas": "1"]) == ["three"])
        #expect(historyFor(["maxstanzas": "0"]) == [])
        #expect(historyFor(["maxchars": "0"]) == [])
        #expect(historyFor(["seconds": "130"], at: 180) == ["two", "three"])
        #expect(historyFor(["since": XMPPDateTime.format(Self.t0.addingTimeInterval(30))]) == ["two", "three"])
    }

    @Test("kick: a moderator removes a participant with 307, actor and reason, the kicked one included; a participant cannot, an admin cannot be kicked")
    func kick() {
        var room = Self.configured()
        _ = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false)
        _ = room.receive(Self.join(Self.bob, nick: "bob"), fromShadowDomain: false)
        #expect(room.receive(Self.admin(Self.alice, ["nick": "bob", "role": "none"]), fromShadowDomain: false).stanzas.first?.errorCondition == "forbidden")
        let kicked = room.receive(Self.admin(Self.owner, ["nick": "bob", "role": "none"], reason: "spam"), fromShadowDomain: false).stanzas
        let toBob = kicked.first { $0["to"] == Self.bob.description }
        #expect(toBob?["type"] == "unavailable" && Self.codes(toBob!) == ["307", "110"])
        let item = toBob?.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)
        #expect(item?.child("actor", namespace: NS.mucUser)?["nick"] == "olga" && item?.child("reason", namespace: NS.mucUser)?.text == "spam")
        #expect(kicked.contains { $0["to"] == Self.alice.description && Self.codes($0) == ["307"] })
        #expect(kicked.last?["type"] == "result")
        #expect(!room.occupantList.contains { $0.nick == "bob" })
        _ = room.receive(Self.admin(Self.owner, ["jid": "alice@xmpp.test", "affiliation": "admin"]), fromShadowDomain: false)
        #expect(room.occupantList.first { $0.nick == "alice" }?.role == "moderator")
        _ = room.receive(Self.join(Self.bob, nick: "bob"), fromShadowDomain: false)
        _ = room.receive(Self.admin(Self.owner, ["jid": "bob@xmpp.test", "affiliation": "admin"]), fromShadowDomain: false)
        #expect(room.receive(Self.admin(Self.alice, ["nick": "bob", "role": "none"]), fromShadowDomain: false).stanzas.first?.errorCondition == "not-allowed")
    }

    @Test("ban: outcast by JID removes with 301 and refuses the next join; the outcast list shows it to admins only")
    func ban() {
        var room = Self.configured()
        _ = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false)
        _ = room.receive(Self.join(Self.bob, nick: "bob"), fromShadowDomain: false)
        #expect(room.receive(Self.admin(Self.alice, ["jid": "bob@xmpp.test", "affiliation": "outcast"]), fromShadowDomain: false).stanzas.first?.errorCondition == "forbidden")
        let banned = room.receive(Self.admin(Self.owner, ["jid": "bob@xmpp.test", "affiliation": "outcast"], reason: "enough"), fromShadowDomain: false).stanzas
        #expect(banned.contains { $0["to"] == Self.bob.description && Self.codes($0) == ["301", "110"] })
        #expect(room.receive(Self.join(Self.bob, nick: "bob"), fromShadowDomain: false).stanzas.first?.errorCondition == "forbidden")
        let list = room.receive(Self.admin(Self.owner, ["affiliation": "outcast"], type: "get"), fromShadowDomain: false).stanzas.first
        #expect(list?.child("query", namespace: NS.mucAdmin)?.children("item", namespace: NS.mucAdmin).map { $0["jid"] } == ["bob@xmpp.test"])
        #expect(room.receive(Self.admin(Self.alice, ["affiliation": "outcast"], type: "get"), fromShadowDomain: false).stanzas.first?.errorCondition == "forbidden")
    }

    @Test("join errors: members-only (registration-required), password (not-authorized), full (service-unavailable)")
    func joinErrors() {
        var membersOnly = Self.configured(["muc#roomconfig_membersonly": "1"])
        #expect(membersOnly.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false).stanzas.first?.errorCondition == "registration-required")
        _ = membersOnly.receive(Self.admin(Self.owner, ["jid": "alice@xmpp.test", "affiliation": "member"]), fromShadowDomain: false)
        #expect(membersOnly.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false).stanzas.contains { Self.codes($0).contains("110") })

        var secret = Self.configured(["muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "sesame"])
        #expect(secret.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false).stanzas.first?.errorCondition == "not-authorized")
        #expect(secret.receive(Self.join(Self.alice, nick: "alice", password: "wrong"), fromShadowDomain: false).stanzas.first?.errorCondition == "not-authorized")
        #expect(secret.receive(Self.join(Self.alice, nick: "alice", password: "sesame"), fromShadowDomain: false).stanzas.contains { Self.codes($0).contains("110") })

        var small = Self.configured(["muc#roomconfig_maxusers": "2"])
        _ = small.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false)
        let full = small.receive(Self.join(Self.bob, nick: "bob"), fromShadowDomain: false).stanzas.first
        #expect(full?.errorCondition == "service-unavailable" && full?.child("error", namespace: NS.component)?["type"] == "wait")
        #expect(Self.configured(["muc#roomconfig_maxusers": "lots"]).config.maxUsers == nil, "a bad value is refused, the config unchanged")
    }

    @Test("moderated rooms: visitors are refused with forbidden until given voice; the subject is the moderators' when the room says so")
    func moderated() {
        var room = Self.configured(["muc#roomconfig_moderatedroom": "1", "muc#roomconfig_changesubject": "0"])
        _ = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false)
        #expect(room.occupantList.first { $0.nick == "alice" }?.role == "visitor")
        #expect(room.receive(Self.say(Self.alice, "hello?"), fromShadowDomain: false).stanzas.first?.errorCondition == "forbidden")
        _ = room.receive(Self.admin(Self.owner, ["nick": "alice", "role": "participant"]), fromShadowDomain: false)
        #expect(room.receive(Self.say(Self.alice, "hello!"), fromShadowDomain: false).stanzas.contains { $0["to"] == Self.owner.description })
        let subject = XMLElement.stanza(.message, from: Self.alice, to: Self.room, type: "groupchat", children: [.text("subject", namespace: NS.component, "mine")])
        #expect(room.receive(subject, fromShadowDomain: false).stanzas.first?.errorCondition == "forbidden")
        #expect(room.subject == "")
    }

    @Test("configuration changes reach occupants as 104; destroy sends everyone away with <destroy/>")
    func configChangeAndDestroy() {
        var room = Self.configured()
        _ = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false)
        let changed = room.receive(Self.configure(["muc#roomconfig_roomname": "Operations"]), fromShadowDomain: false).stanzas
        #expect(changed.contains { $0.name == "message" && $0["to"] == Self.alice.description && Self.codes($0) == ["104"] })
        #expect(room.discoInfo.child("identity", namespace: NS.discoInfo)?["name"] == "Operations")
        var query = XMLElement("query", namespace: NS.mucOwner)
        var destroy = XMLElement("destroy", namespace: NS.mucOwner)
        destroy.append(.text("reason", namespace: NS.mucOwner, "moving"))
        query.append(destroy)
        let gone = room.receive(.stanza(.iq, from: Self.owner, to: Self.room, type: "set", id: "d", children: [query]), fromShadowDomain: false).stanzas
        #expect(gone.contains { $0["to"] == Self.alice.description && $0["type"] == "unavailable" && $0.child("x", namespace: NS.mucUser)?.child("destroy", namespace: NS.mucUser) != nil })
        #expect(room.isDestroyed && room.isEmpty)
    }

    @Test("an occupant whose client bounces the room's stanzas is removed with 333")
    func bounce() {
        var room = Self.configured()
        _ = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false)
        var error = XMLElement.stanza(.message, from: Self.alice, to: Self.room.with(resource: "alice"), type: "error")
        var element = XMLElement("error", namespace: NS.component, attributes: ["type": "cancel"])
        element.append(XMLElement("recipient-unavailable", namespace: NS.stanzas))
        error.append(element)
        let out = room.receive(error, fromShadowDomain: false).stanzas
        #expect(out.contains { $0["to"] == Self.owner.description && $0["type"] == "unavailable" && Self.codes($0) == ["333"] })
        #expect(!room.occupantList.contains { $0.nick == "alice" })
    }

    @Test("an IRC user kicked by an XMPP moderator: the shadow stops relaying them and says why (flow E)")
    func shadowKicked() {
        var shadow = ShadowRoom(masterRoom: Self.room, jid: JID("#ops%net@irc.test")!)
        let real = JID("u1%net@irc.test/irc")!
        var out = shadow.ircJoined(nick: "carol", realJID: real)
        var burstEnd = XMLElement.stanza(.message, from: Self.room, to: JID("#ops%net@irc.test")!, type: "groupchat", children: [.text("subject", namespace: NS.component, "")])
        burstEnd.append(LinkElements.sync(epoch: "e", rid: "r", seq: 0))
        out = shadow.receive(burstEnd)
        var kicked = XMLElement.stanza(.presence, from: Self.room.with(resource: "carol"), to: JID("#ops%net@irc.test")!, type: "unavailable")
        var x = XMLElement("x", namespace: NS.mucUser)
        var item = XMLElement("item", namespace: NS.mucUser, attributes: ["affiliation": "none", "role": "none"])
        item.append(XMLElement("actor", namespace: NS.mucUser, attributes: ["nick": "olga"]))
        x.append(item)
        x.append(XMLElement("status", namespace: NS.mucUser, attributes: ["code": "307"]))
        kicked.append(x)
        kicked.append(LinkElements.fmuc(from: real))
        kicked.append(LinkElements.seq(1, epoch: "e"))
        out = shadow.receive(kicked)
        #expect(out.contains(.localRemoved(nick: "carol", banned: false, actor: "olga", reason: nil)), "\(out)")
        #expect(shadow.ircMessage(nick: "carol", body: "hello?", originID: "o1").allSatisfy { if case .send = $0 { false } else { true } })
    }

    @Test("a joined client joining again gets the whole join again; the others see nothing")
    func rejoin() {
        var room = Self.configured()
        _ = room.receive(Self.say(Self.owner, "before"), fromShadowDomain: false, at: Self.t0)
        _ = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false, at: Self.t0)
        let again = room.receive(Self.join(Self.alice, nick: "alice"), fromShadowDomain: false, at: Self.t0).stanzas
        #expect(again.allSatisfy { $0["to"] == Self.alice.description }, "\(again)")
        #expect(again.contains { $0["from"] == "ops@rooms.test/olga" && $0.name == "presence" })
        #expect(again.contains { Self.codes($0).contains("110") })
        #expect(again.contains { $0.child("body", namespace: NS.component)?.text == "before" })
        #expect(again.last?.child("subject", namespace: NS.component) != nil)
        #expect(room.occupantList.count == 2)
    }
}
