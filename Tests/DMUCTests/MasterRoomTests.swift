import DMUC
import Testing
import XMPPCore

/// `MasterRoom` as a state machine: stanzas in, stanzas out, no sockets.
@Suite("MasterRoom")
struct MasterRoomTests {
    static let room = JID("ops@rooms.test")!
    static let alice = JID("alice@xmpp.test/phone")!
    static let bob = JID("bob@xmpp.test/laptop")!
    static let shadow = JID("#ops%net@irc.test")!
    static let carolReal = JID("u1%net@irc.test/irc")!

    var master = MasterRoom(jid: room, rid: "rid-1", epoch: "e1")

    static func join(_ from: JID, nick: String) -> XMLElement {
        var p = XMLElement.stanza(.presence, from: from, to: room.with(resource: nick))
        p.append(XMLElement("x", namespace: NS.muc))
        return p
    }

    static func shadowJoin(nick: String, real: JID, link: Bool = true, from shadow: JID = shadow) -> XMLElement {
        var p = XMLElement.stanza(.presence, from: shadow.with(resource: nick), to: room.with(resource: nick))
        p.append(XMLElement("x", namespace: NS.muc))
        p.append(LinkElements.fmuc(from: real))
        if link { p.append(LinkElements.link()) }
        return p
    }

    static func groupchat(_ from: JID, _ body: String, to: JID = room) -> XMLElement {
        .stanza(.message, from: from, to: to, type: "groupchat", id: "m-\(body)", children: [.text("body", namespace: NS.component, body)])
    }

    static func codes(_ p: XMLElement) -> [String] {
        p.child("x", namespace: NS.mucUser)?.children("status", namespace: NS.mucUser).compactMap { $0["code"] } ?? []
    }

    @Test("a client joins: self-presence with 110, then the subject closes the join (XEP-0045 §7.2)")
    mutating func firstJoin() {
        let out = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false).stanzas
        #expect(out.count == 2)
        #expect(out[0].name == "presence" && out[0]["from"] == "ops@rooms.test/Alice" && out[0]["to"] == Self.alice.description)
        #expect(Self.codes(out[0]) == ["110"])
        #expect(out[0].child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["role"] == "participant")
        #expect(out[1].name == "message" && out[1].child("subject", namespace: NS.component) != nil)
    }

    @Test("the next client first sees everyone present, then itself, and the others see it")
    mutating func secondJoin() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        let out = master.receive(Self.join(Self.bob, nick: "Bob"), fromShadowDomain: false).stanzas
        #expect(out.map { "\($0.name) \($0["from"]!) -> \($0["to"]!)" } == [
            "presence ops@rooms.test/Alice -> bob@xmpp.test/laptop",
            "presence ops@rooms.test/Bob -> alice@xmpp.test/phone",
            "presence ops@rooms.test/Bob -> bob@xmpp.test/laptop",
            "message ops@rooms.test -> bob@xmpp.test/laptop",
        ])
        #expect(Self.codes(out[1]).isEmpty)
        #expect(Self.codes(out[2]) == ["110"])
    }

    @Test("a taken nick is refused with conflict, whatever its case")
    mutating func conflict() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        let out = master.receive(Self.join(Self.bob, nick: "alice"), fromShadowDomain: false).stanzas
        #expect(out.count == 1)
        #expect(out[0]["type"] == "error" && out[0].errorCondition == "conflict" && out[0]["to"] == Self.bob.description)
        #expect(master.occupantList.count == 1)
    }

    @Test("nicks fold like rfc1459 IRC: Alice[x] and alice{x} are the same nick")
    mutating func ircFold() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice[x]"), fromShadowDomain: false)
        let out = master.receive(Self.join(Self.bob, nick: "alice{x}"), fromShadowDomain: false).stanzas
        #expect(out.first?.errorCondition == "conflict")
        #expect(MasterRoom.fold("Ünïcode~") == "ünïcode^")
    }

    @Test("groupchat is reflected to every occupant with the room's stanza-id; non-occupants are refused")
    mutating func groupchat() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.join(Self.bob, nick: "Bob"), fromShadowDomain: false)
        var message = Self.groupchat(Self.alice, "hi")
        message.append(XMLElement("stanza-id", namespace: NS.sid, attributes: ["id": "forged", "by": "ops@rooms.test"]))
        let out = master.receive(message, fromShadowDomain: false).stanzas
        #expect(out.count == 2)
        for copy in out {
            #expect(copy["from"] == "ops@rooms.test/Alice" && copy["id"] == "m-hi")
            let ids = copy.children("stanza-id", namespace: NS.sid)
            #expect(ids.count == 1 && ids[0]["id"] != "forged" && ids[0]["by"] == "ops@rooms.test")
        }
        let stranger = master.receive(Self.groupchat(JID("eve@xmpp.test/x")!, "let me in"), fromShadowDomain: false).stanzas
        #expect(stranger.count == 1 && stranger[0].errorCondition == "not-acceptable")
    }

    @Test("a client cannot assert fmuc: the element is stripped and never echoed")
    mutating func clientFMUCStripped() {
        var p = Self.join(Self.alice, nick: "Alice")
        p.append(LinkElements.fmuc(from: JID("admin@xmpp.test/x")!))
        let out = master.receive(p, fromShadowDomain: false).stanzas
        #expect(master.occupantList.first?.realJID == Self.alice)
        #expect(!out.contains { $0.child("fmuc", namespace: NS.fmuc) != nil })
    }

    @Test("a shadow federates: the others see its user, the node gets a burst that the subject with <sync/> closes (flow A)")
    mutating func federation() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        let output = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        let out = output.stanzas
        #expect(output.notes.contains(.federated(shadow: Self.shadow)))
        #expect(out.map { "\($0.name) \($0["from"]!) -> \($0["to"]!)" } == [
            "presence ops@rooms.test/carol -> alice@xmpp.test/phone",
            "presence ops@rooms.test/Alice -> #ops%net@irc.test",
            "presence ops@rooms.test/carol -> #ops%net@irc.test",
            "message ops@rooms.test -> #ops%net@irc.test",
        ])
        // The client never sees link elements; the node sees real JIDs.
        #expect(out[0].child("fmuc", namespace: NS.fmuc) == nil)
        #expect(LinkElements.fmucFrom(out[1]) == Self.alice)
        #expect(LinkElements.fmucFrom(out[2]) == Self.carolReal)
        let sync = out[3].child("sync", namespace: NS.link)
        #expect(sync?["seq"] == String(master.seq) && sync?["rid"] == "rid-1" && sync?["epoch"] == "e1")
    }

    @Test("every room-wide stanza reaches a shadow once, numbered, with the real JID (flows C, D)")
    mutating func numberedFanout() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        let before = master.seq
        let first = master.receive(Self.groupchat(Self.alice, "one"), fromShadowDomain: false).stanzas.filter { $0["to"] == Self.shadow.description }
        let second = master.receive(Self.groupchat(Self.alice, "two"), fromShadowDomain: false).stanzas.filter { $0["to"] == Self.shadow.description }
        #expect(first.count == 1 && second.count == 1)
        #expect(LinkElements.seqNumber(first[0]) == before + 1)
        #expect(LinkElements.seqNumber(second[0]) == before + 2)
        #expect(LinkElements.fmucFrom(first[0]) == Self.alice)
    }

    @Test("a shadow's submitted line goes to clients without link elements and back to the shadow as its echo")
    mutating func submitAndEcho() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        var line = Self.groupchat(Self.shadow.with(resource: "carol"), "from irc")
        line.append(LinkElements.originID("o-1"))
        line.append(LinkElements.fmuc(from: Self.carolReal))
        let out = master.receive(line, fromShadowDomain: true).stanzas
        #expect(out.count == 2)
        let toAlice = out.first { $0["to"] == Self.alice.description }!
        #expect(toAlice["from"] == "ops@rooms.test/carol")
        #expect(toAlice.child("fmuc", namespace: NS.fmuc) == nil && toAlice.child("seq", namespace: NS.link) == nil)
        let echo = out.first { $0["to"] == Self.shadow.description }!
        #expect(LinkElements.originID(of: echo) == "o-1" && LinkElements.seqNumber(echo) != nil)
    }

    @Test("a shadow may not assert a real JID outside its own domain, nor speak for someone else's nick")
    mutating func forgedRealJID() {
        let forged = master.receive(Self.shadowJoin(nick: "mallory", real: Self.alice), fromShadowDomain: true).stanzas
        #expect(forged.count == 1 && forged[0].errorCondition == "forbidden")
        #expect(master.occupantList.isEmpty && master.shadows.isEmpty)
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        var impersonation = Self.groupchat(Self.shadow.with(resource: "Alice"), "i am alice")
        impersonation.append(LinkElements.fmuc(from: Self.carolReal))
        let out = master.receive(impersonation, fromShadowDomain: true).stanzas
        #expect(out.count == 1 && out[0].errorCondition == "not-acceptable")
    }

    @Test("leaving: the client gets its own unavailable with 110; a node whose last user leaves gets <left/> (flow E)")
    mutating func leaving() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        var part = XMLElement.stanza(.presence, from: Self.shadow.with(resource: "carol"), to: Self.room.with(resource: "carol"), type: "unavailable")
        part.append(.text("status", namespace: NS.component, "bye"))
        part.append(LinkElements.fmuc(from: Self.carolReal))
        let output = master.receive(part, fromShadowDomain: true)
        #expect(output.notes.contains(.nodeLeft(shadow: Self.shadow)))
        let toAlice = output.stanzas.first { $0["to"] == Self.alice.description }!
        #expect(toAlice["type"] == "unavailable" && toAlice.child("status", namespace: NS.component)?.text == "bye")
        #expect(LinkElements.isLeft(output.stanzas.last!))
        #expect(master.shadows.isEmpty)

        let leave = XMLElement.stanza(.presence, from: Self.alice, to: Self.room.with(resource: "Alice"), type: "unavailable")
        let out = master.receive(leave, fromShadowDomain: false).stanzas
        #expect(out.count == 1 && out[0]["type"] == "unavailable" && Self.codes(out[0]) == ["110"])
        #expect(master.isEmpty)
    }

    @Test("the room answers a self-ping from an occupant only (XEP-0410)")
    mutating func selfPing() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        let ping = XMLElement.stanza(.iq, from: Self.alice, to: Self.room.with(resource: "Alice"), type: "get", id: "p1", children: [XMLElement("ping", namespace: NS.ping)])
        #expect(master.receive(ping, fromShadowDomain: false).stanzas.first?["type"] == "result")
        var stranger = ping
        stranger["from"] = Self.bob.description
        #expect(master.receive(stranger, fromShadowDomain: false).stanzas.first?.errorCondition == "not-acceptable")
    }

    @Test("a nick change is 303 with the new nick, then the new presence; the shadow gets both, numbered (XEP-0045 §7.6)")
    mutating func nickChange() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.join(Self.bob, nick: "Bob"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        let before = master.seq
        let out = master.receive(XMLElement.stanza(.presence, from: Self.alice, to: Self.room.with(resource: "Alicia")), fromShadowDomain: false).stanzas
        let toBob = out.filter { $0["to"] == Self.bob.description }
        #expect(toBob.count == 2)
        #expect(toBob[0]["type"] == "unavailable" && toBob[0]["from"] == "ops@rooms.test/Alice" && Self.codes(toBob[0]) == ["303"])
        #expect(toBob[0].child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["nick"] == "Alicia")
        #expect(toBob[1]["type"] == nil && toBob[1]["from"] == "ops@rooms.test/Alicia")
        let toAlice = out.filter { $0["to"] == Self.alice.description }
        #expect(toAlice.map { Self.codes($0) } == [["303", "110"], ["110"]])
        let toShadow = out.filter { $0["to"] == Self.shadow.description }
        #expect(toShadow.map { LinkElements.seqNumber($0) } == [before + 1, before + 2])
        #expect(master.occupantList.map(\.nick) == ["Alicia", "Bob", "carol"])
        // The old nick is free again; the new one is taken.
        let taken = master.receive(XMLElement.stanza(.presence, from: Self.bob, to: Self.room.with(resource: "alicia")), fromShadowDomain: false).stanzas
        #expect(taken.count == 1 && taken[0].errorCondition == "conflict")
    }

    @Test("a shadow's nick change keeps the real JID; its kick shows 307 with actor and reason")
    mutating func shadowNickAndKick() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        _ = master.receive(Self.shadowJoin(nick: "dave", real: JID("u2%net@irc.test/irc")!, link: false), fromShadowDomain: true)
        var rename = XMLElement.stanza(.presence, from: Self.shadow.with(resource: "caro"), to: Self.room.with(resource: "caro"))
        rename.append(LinkElements.fmuc(from: Self.carolReal))
        let renamed = master.receive(rename, fromShadowDomain: true).stanzas.filter { $0["to"] == Self.alice.description }
        #expect(renamed.count == 2 && Self.codes(renamed[0]) == ["303"])
        var kick = XMLElement.stanza(.presence, from: Self.shadow.with(resource: "dave"), to: Self.room.with(resource: "dave"), type: "unavailable")
        kick.append(LinkElements.fmuc(from: JID("u2%net@irc.test/irc")!))
        kick.append(LinkElements.removed(kind: "kick", by: "caro", reason: "spam"))
        let out = master.receive(kick, fromShadowDomain: true).stanzas
        let toAlice = out.first { $0["to"] == Self.alice.description }!
        #expect(Self.codes(toAlice) == ["307"])
        let item = toAlice.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)
        #expect(item?.child("actor", namespace: NS.mucUser)?["nick"] == "caro" && item?.child("reason", namespace: NS.mucUser)?.text == "spam")
        #expect(toAlice.child("removed", namespace: NS.link) == nil)
    }

    @Test("private messages go to the node that holds the recipient, from the sender's occupant JID (XEP-0045 §7.5, flow F)")
    mutating func privateMessages() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        let toCarol = master.receive(.stanza(.message, from: Self.alice, to: Self.room.with(resource: "carol"), type: "chat", children: [.text("body", namespace: NS.component, "psst")]), fromShadowDomain: false).stanzas
        #expect(toCarol.count == 1)
        #expect(toCarol[0]["from"] == "ops@rooms.test/Alice" && toCarol[0]["to"] == "#ops%net@irc.test/carol")
        #expect(LinkElements.fmucFrom(toCarol[0]) == Self.alice && toCarol[0].child("x", namespace: NS.mucUser) != nil)
        #expect(toCarol[0].child("seq", namespace: NS.link) == nil)

        var reply = XMLElement.stanza(.message, from: Self.shadow.with(resource: "carol"), to: Self.room.with(resource: "Alice"), type: "chat", children: [.text("body", namespace: NS.component, "hi")])
        reply.append(LinkElements.fmuc(from: Self.carolReal))
        let toAlice = master.receive(reply, fromShadowDomain: true).stanzas
        #expect(toAlice.count == 1 && toAlice[0]["from"] == "ops@rooms.test/carol" && toAlice[0]["to"] == Self.alice.description)
        #expect(toAlice[0].child("fmuc", namespace: NS.fmuc) == nil)

        let nobody = master.receive(.stanza(.message, from: Self.alice, to: Self.room.with(resource: "nobody"), type: "chat", children: [.text("body", namespace: NS.component, "?")]), fromShadowDomain: false).stanzas
        #expect(nobody.first?.errorCondition == "item-not-found")
        let stranger = master.receive(.stanza(.message, from: Self.bob, to: Self.room.with(resource: "Alice"), type: "chat", children: [.text("body", namespace: NS.component, "?")]), fromShadowDomain: false).stanzas
        #expect(stranger.first?.errorCondition == "not-acceptable")
    }

    @Test("shutdown: every local occupant gets its own unavailable with 110 and 332 (XEP-0045 §9)")
    mutating func shutdown() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.join(Self.bob, nick: "Bob"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        let out = master.shutdown(reason: "going down")
        #expect(out.map { $0["to"] } == [Self.alice.description, Self.bob.description])
        #expect(out.allSatisfy { $0["type"] == "unavailable" && Set(Self.codes($0)) == ["110", "332"] })
        #expect(master.isEmpty && master.shadows.isEmpty)
    }

    @Test("a shadow asserts its IRC user's role (from channel modes); a client cannot assert its own")
    mutating func roles() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        var op = Self.shadowJoin(nick: "carol", real: Self.carolReal)
        op.append(XMLElement("x", namespace: NS.mucUser, children: [.element(XMLElement("item", namespace: NS.mucUser, attributes: ["role": "moderator"]))]))
        let joined = master.receive(op, fromShadowDomain: true).stanzas.first { $0["to"] == Self.alice.description }
        #expect(joined?.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["role"] == "moderator")
        var deop = XMLElement.stanza(.presence, from: Self.shadow.with(resource: "carol"), to: Self.room.with(resource: "carol"))
        deop.append(XMLElement("x", namespace: NS.mucUser, children: [.element(XMLElement("item", namespace: NS.mucUser, attributes: ["role": "participant"]))]))
        deop.append(LinkElements.fmuc(from: Self.carolReal))
        let update = master.receive(deop, fromShadowDomain: true).stanzas.first { $0["to"] == Self.alice.description }
        #expect(update?.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["role"] == "participant")

        var selfPromotion = XMLElement.stanza(.presence, from: Self.bob, to: Self.room.with(resource: "Bob"))
        selfPromotion.append(XMLElement("x", namespace: NS.mucUser, children: [.element(XMLElement("item", namespace: NS.mucUser, attributes: ["role": "moderator"]))]))
        _ = master.receive(selfPromotion, fromShadowDomain: false)
        #expect(master.occupantList.first { $0.nick == "Bob" }?.role == "participant")
        #expect(master.occupantList.allSatisfy { $0.affiliation == "none" }, "roles only, never affiliations")
    }

    @Test("a <link/> from a federated node gets a full burst; a node's user with a new real JID takes over her nick (found in review)")
    mutating func resync() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        // The bridge restarted: carol comes back with a new id, asking for a burst.
        let renewed = JID("u7%net@irc.test/irc")!
        let out = master.receive(Self.shadowJoin(nick: "carol", real: renewed), fromShadowDomain: true).stanzas
        #expect(!out.contains { $0.errorCondition == "conflict" })
        #expect(master.occupantList.first { $0.nick == "carol" }?.realJID == renewed)
        let toShadow = out.filter { $0["to"] == Self.shadow.description }
        #expect(toShadow.last?.child("sync", namespace: NS.link) != nil, "a full burst closes with <sync/>")
        #expect(toShadow.contains { $0["from"] == "ops@rooms.test/Alice" && $0.child("seq", namespace: NS.link) == nil })
    }

    @Test("a resync that changes nothing is invisible: clients get no presence, the shadow gets its burst")
    mutating func quietResync() {
        _ = master.receive(Self.join(Self.alice, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true)
        let out = master.receive(Self.shadowJoin(nick: "carol", real: Self.carolReal), fromShadowDomain: true).stanzas
        #expect(!out.contains { $0["to"] == Self.alice.description }, "\(out)")
        #expect(out.last?.child("sync", namespace: NS.link) != nil)
        // A real change (away) still reaches everyone.
        var away = Self.shadowJoin(nick: "carol", real: Self.carolReal, link: false)
        away.append(.text("show", namespace: NS.component, "away"))
        let changed = master.receive(away, fromShadowDomain: true).stanzas
        #expect(changed.contains { $0["to"] == Self.alice.description })
    }
}

/// Several clients of one account under one nick (XEP-0045 §7.2, multi-session nick).
@Suite("MasterRoom multi-session")
struct MasterRoomMultiSessionTests {
    static let room = MasterRoomTests.room
    static let phone = JID("alice@xmpp.test/phone")!
    static let laptop = JID("alice@xmpp.test/laptop")!
    static let bob = MasterRoomTests.bob
    static let mallory = JID("mallory@xmpp.test/x")!

    var master = MasterRoom(jid: room, rid: "rid-1", epoch: "e1")

    static func to(_ out: [XMLElement], _ jid: JID) -> [XMLElement] { out.filter { $0["to"] == jid.description } }

    mutating func bothJoined() {
        _ = master.receive(MasterRoomTests.join(Self.bob, nick: "Bob"), fromShadowDomain: false)
        _ = master.receive(MasterRoomTests.join(Self.phone, nick: "Alice"), fromShadowDomain: false)
        _ = master.receive(MasterRoomTests.join(Self.laptop, nick: "Alice"), fromShadowDomain: false)
    }

    @Test("a second client of the same account joins under the same nick: it gets the whole join, the others see nothing; one occupant")
    mutating func secondSession() {
        _ = master.receive(MasterRoomTests.join(Self.bob, nick: "Bob"), fromShadowDomain: false)
        _ = master.receive(MasterRoomTests.join(Self.phone, nick: "Alice"), fromShadowDomain: false)
        let out = master.receive(MasterRoomTests.join(Self.laptop, nick: "alice"), fromShadowDomain: false).stanzas
        #expect(out.allSatisfy { $0["to"] == Self.laptop.description }, "only the new client hears of it")
        #expect(out.map { "\($0.name) \($0["from"]!)" } == ["presence ops@rooms.test/Bob", "presence ops@rooms.test/Alice", "message ops@rooms.test"])
        #expect(MasterRoomTests.codes(out[1]).contains("110"))
        #expect(out[1].child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["jid"] == Self.laptop.description)
        #expect(master.occupantList.count == 2)
        // Another account under the nick is still a conflict.
        let conflict = master.receive(MasterRoomTests.join(Self.mallory, nick: "Alice"), fromShadowDomain: false).stanzas
        #expect(conflict.first?.errorCondition == "conflict")
    }

    @Test("room messages, presence changes and private messages reach every client of the nick; either client speaks as the occupant")
    mutating func fanout() {
        bothJoined()
        let line = master.receive(MasterRoomTests.groupchat(Self.bob, "hi"), fromShadowDomain: false).stanzas
        #expect(Self.to(line, Self.phone).count == 1 && Self.to(line, Self.laptop).count == 1 && Self.to(line, Self.bob).count == 1)
        let fromLaptop = master.receive(MasterRoomTests.groupchat(Self.laptop, "from the laptop"), fromShadowDomain: false).stanzas
        #expect(fromLaptop.count == 3 && fromLaptop.allSatisfy { $0["from"] == "ops@rooms.test/Alice" })
        let pm = XMLElement.stanza(.message, from: Self.bob, to: Self.room.with(resource: "Alice"), type: "chat", children: [.text("body", namespace: NS.component, "psst")])
        let pms = master.receive(pm, fromShadowDomain: false).stanzas
        #expect(Set(pms.compactMap { $0["to"] }) == [Self.phone.description, Self.laptop.description])
        var away = XMLElement.stanza(.presence, from: Self.bob, to: Self.room.with(resource: "Bob"))
        away.append(.text("show", namespace: NS.component, "away"))
        let presence = master.receive(away, fromShadowDomain: false).stanzas
        #expect(Self.to(presence, Self.phone).count == 1 && Self.to(presence, Self.laptop).count == 1)
    }

    @Test("one client leaving is told alone; the occupant leaves when its last client does; a shared nick cannot be changed by one client")
    mutating func leaving() {
        bothJoined()
        var nickChange = XMLElement.stanza(.presence, from: Self.laptop, to: Self.room.with(resource: "Alicia"))
        nickChange.append(XMLElement("x", namespace: NS.muc))
        #expect(master.receive(nickChange, fromShadowDomain: false).stanzas.first?.errorCondition == "not-acceptable")
        var out = master.receive(.stanza(.presence, from: Self.phone, to: Self.room.with(resource: "Alice"), type: "unavailable"), fromShadowDomain: false).stanzas
        #expect(out.count == 1 && out[0]["to"] == Self.phone.description && out[0]["type"] == "unavailable" && MasterRoomTests.codes(out[0]) == ["110"])
        // The laptop is the occupant now: it still speaks and hears.
        #expect(master.receive(MasterRoomTests.groupchat(Self.laptop, "still here"), fromShadowDomain: false).stanzas.count == 2)
        out = master.receive(.stanza(.presence, from: Self.laptop, to: Self.room.with(resource: "Alice"), type: "unavailable"), fromShadowDomain: false).stanzas
        #expect(Self.to(out, Self.bob).first?["type"] == "unavailable")
        #expect(master.occupantList.map(\.nick) == ["Bob"])
    }

    @Test("a kick removes every client of the nick, each told with 307")
    mutating func kick() {
        master.serviceAdmins = [JID("bob@xmpp.test")!]
        bothJoined()
        let kick = XMLElement.stanza(.iq, from: Self.bob, to: Self.room, type: "set", id: "k1", children: [
            XMLElement("query", namespace: NS.mucAdmin, children: [.element(XMLElement("item", namespace: NS.mucAdmin, attributes: ["nick": "Alice", "role": "none"]))]),
        ])
        let out = master.receive(kick, fromShadowDomain: false).stanzas
        for session in [Self.phone, Self.laptop] {
            let told = Self.to(out, session)
            #expect(told.count == 1 && MasterRoomTests.codes(told[0]).contains("307"), "\(session)")
        }
        #expect(master.occupantList.map(\.nick) == ["Bob"])
    }
}
