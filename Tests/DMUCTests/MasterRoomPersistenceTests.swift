import DMUC
import Foundation
import Testing
import XMPPCore

/// What of a room outlives the process, what goes to the archive, and who may read it.
@Suite("MasterRoom: snapshot, archive and archive access")
struct MasterRoomPersistenceTests {
    typealias M = MasterRoomModerationTests
    static let carol = JID("carol@xmpp.test/tab")!
    static let shadow = JID("#ops%net@irc.test")!
    static let ircReal = JID("u1%net@irc.test/irc")!

    @Test("a room restored from its snapshot has its config, affiliations, subject and occupant ids, and its history")
    func restore() throws {
        var room = M.configured(["muc#roomconfig_roomname": "Operations", "muc#roomconfig_membersonly": "1", "muc#roomconfig_persistentroom": "1"])
        _ = room.receive(M.admin(M.owner, ["jid": "alice@xmpp.test", "affiliation": "member"]), fromShadowDomain: false, at: M.t0)
        var subject = XMLElement.stanza(.message, from: M.owner, to: M.room, type: "groupchat")
        subject.append(.text("subject", namespace: NS.component, "Deploy day"))
        _ = room.receive(subject, fromShadowDomain: false, at: M.t0)
        let said = room.receive(M.say(M.owner, "before the restart"), fromShadowDomain: false, at: M.t0)
        let aliceJoinBefore = room.receive(M.join(M.alice, nick: "alice"), fromShadowDomain: false, at: M.t0)
        #expect(room.isStored)

        var restored = MasterRoom(jid: M.room, restoring: room.snapshot, epoch: "e2", history: said.archived)
        #expect(restored.snapshot == room.snapshot)
        #expect(restored.isEmpty && restored.epoch == "e2")
        let join = restored.receive(M.join(M.alice, nick: "alice"), fromShadowDomain: false, at: M.t0.addingTimeInterval(60)).stanzas
        // Members-only still holds (alice is a member), the subject and the line come back, and
        // alice's occupant id is what it was before the restart.
        #expect(join.first?.child("occupant-id", namespace: NS.occupantID) == aliceJoinBefore.stanzas.last { $0.name == "presence" }?.child("occupant-id", namespace: NS.occupantID))
        #expect(join.contains { $0.child("body", namespace: NS.component)?.text == "before the restart" && $0.child("delay", namespace: NS.delay) != nil })
        #expect(join.last?.child("subject", namespace: NS.component)?.text == "Deploy day")
        let stranger = restored.receive(M.join(M.bob, nick: "bob"), fromShadowDomain: false, at: M.t0).stanzas
        #expect(stranger.first?.errorCondition == "registration-required")
    }

    @Test("groupchat bodies, from clients and from IRC users behind a shadow, are archived with the room's stanza-id; subjects and PMs are not")
    func archived() throws {
        var room = M.configured()
        _ = room.receive(M.join(M.alice, nick: "alice"), fromShadowDomain: false, at: M.t0)
        var ircJoin = XMLElement.stanza(.presence, from: Self.shadow.with(resource: "carol_irc"), to: M.room.with(resource: "carol_irc"))
        ircJoin.append(XMLElement("x", namespace: NS.muc))
        ircJoin.append(LinkElements.fmuc(from: Self.ircReal))
        ircJoin.append(LinkElements.link())
        _ = room.receive(ircJoin, fromShadowDomain: true, at: M.t0)

        let fromClient = room.receive(M.say(M.alice, "hello"), fromShadowDomain: false, at: M.t0)
        #expect(fromClient.archived.count == 1)
        let entry = try #require(fromClient.archived.first)
        let reflected = try #require(fromClient.stanzas.first { $0.name == "message" })
        #expect(entry.id == reflected.child("stanza-id", namespace: NS.sid)?["id"])
        #expect(entry.nick == "alice" && entry.date == M.t0 && entry.message["to"] == nil && entry.message["from"] == "ops@rooms.test/alice")

        var fromIRC = XMLElement.stanza(.message, from: Self.shadow.with(resource: "carol_irc"), to: M.room, type: "groupchat", children: [.text("body", namespace: NS.component, "from mIRC")])
        fromIRC.append(LinkElements.fmuc(from: Self.ircReal))
        #expect(room.receive(fromIRC, fromShadowDomain: true, at: M.t0).archived.map(\.nick) == ["carol_irc"])

        var subject = XMLElement.stanza(.message, from: M.alice, to: M.room, type: "groupchat")
        subject.append(.text("subject", namespace: NS.component, "new"))
        #expect(room.receive(subject, fromShadowDomain: false, at: M.t0).archived.isEmpty)
        let pm = XMLElement.stanza(.message, from: M.alice, to: M.room.with(resource: "olga"), type: "chat", children: [.text("body", namespace: NS.component, "psst")])
        #expect(room.receive(pm, fromShadowDomain: false, at: M.t0).archived.isEmpty)
    }

    @Test("archiving off, by the room's owner or by the service: nothing archived, no MAM feature, queries refused")
    func archivingOff() {
        var room = M.configured(["muc#roomconfig_enablearchiving": "0"])
        #expect(room.receive(M.say(M.owner, "x"), fromShadowDomain: false, at: M.t0).archived.isEmpty)
        #expect(!room.discoInfo.children("feature", namespace: NS.discoInfo).contains { $0["var"] == NS.mam })
        #expect(room.archiveRefusal(for: M.owner)?.condition == "feature-not-implemented")

        var service = M.configured()
        #expect(service.discoInfo.children("feature", namespace: NS.discoInfo).contains { $0["var"] == NS.mam })
        service.archiveAllowed = false
        #expect(service.receive(M.say(M.owner, "x"), fromShadowDomain: false, at: M.t0).archived.isEmpty)
        #expect(!service.configForm.fields.contains { $0.variable == "muc#roomconfig_enablearchiving" })
    }

    @Test("who reads the archive: anyone in an open public room; members in members-only; occupants or affiliated in hidden or password rooms; never outcasts")
    func archiveAccess() {
        var open = M.configured()
        #expect(open.archiveRefusal(for: M.bob) == nil)
        _ = open.receive(M.admin(M.owner, ["jid": "bob@xmpp.test", "affiliation": "outcast"]), fromShadowDomain: false, at: M.t0)
        #expect(open.archiveRefusal(for: M.bob)?.condition == "forbidden")

        let membersOnly = M.configured(["muc#roomconfig_membersonly": "1"])
        #expect(membersOnly.archiveRefusal(for: M.alice)?.condition == "registration-required")
        #expect(membersOnly.archiveRefusal(for: M.owner) == nil)

        var hidden = M.configured(["muc#roomconfig_publicroom": "0"])
        #expect(hidden.archiveRefusal(for: M.alice)?.condition == "forbidden")
        _ = hidden.receive(M.join(M.alice, nick: "alice"), fromShadowDomain: false, at: M.t0)
        #expect(hidden.archiveRefusal(for: M.alice) == nil)
        #expect(hidden.archiveRefusal(for: Self.carol)?.condition == "forbidden")
    }

    @Test("a moderator joining a semi-anonymous room sees the real JIDs of those already present (found in review)")
    func moderatorSeesJIDsOnJoin() {
        var room = M.configured()
        _ = room.receive(M.join(M.alice, nick: "alice"), fromShadowDomain: false, at: M.t0)
        // olga (owner, so moderator) leaves and comes back: her first view of alice has alice's JID.
        var leave = XMLElement.stanza(.presence, from: M.owner, to: M.room.with(resource: "olga"), type: "unavailable")
        leave.append(XMLElement("x", namespace: NS.muc))
        _ = room.receive(leave, fromShadowDomain: false, at: M.t0)
        let moderatorJoin = room.receive(M.join(M.owner, nick: "olga"), fromShadowDomain: false, at: M.t0).stanzas
        let aliceSeenByOlga = moderatorJoin.first { $0["from"] == "ops@rooms.test/alice" && $0["to"] == M.owner.description }
        #expect(aliceSeenByOlga?.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["jid"] == M.alice.description)
        // A participant joining does not.
        let bobJoin = room.receive(M.join(M.bob, nick: "bob"), fromShadowDomain: false, at: M.t0).stanzas
        let aliceSeenByBob = bobJoin.first { $0["from"] == "ops@rooms.test/alice" && $0["to"] == M.bob.description }
        #expect(aliceSeenByBob != nil && aliceSeenByBob?.child("x", namespace: NS.mucUser)?.child("item", namespace: NS.mucUser)?["jid"] == nil)
    }
}
