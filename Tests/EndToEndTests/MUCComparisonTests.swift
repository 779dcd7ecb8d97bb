import Foundation
import Lab
import Testing

/// Which MUC service a stock-client scenario runs against.
enum MUCUnderTest: String, CustomTestStringConvertible, Sendable {
    /// Our master (`rooms.xmpp.test`), clients may create rooms.
    case shadowbridge
    /// Prosody's own MUC component in the same lab (`conference.xmpp.test`, with muc_mam).
    case prosody
    var testDescription: String { rawValue }
}

/// The clients' side of one run: our master alone (clients may create rooms), or Prosody's
/// MUC with an agent of its own.
struct ClientLab {
    let agent: LabAgent
    let domain: String
    /// Appended to user names, so the two runs use different accounts.
    let tag: String
    private let ours: MUCServiceTests.MasterOnly?
    private let directory: URL?

    init(_ servers: LabServers, service: MUCUnderTest, name: String) throws {
        if service == .shadowbridge {
            let lab = try MUCServiceTests.MasterOnly(servers, name: name)
            (ours, directory, agent, domain, tag) = (lab, nil, lab.agent, LabServers.masterDomain, "o")
        } else {
            let directory = try Lab.makeTemporaryDirectory(prefix: name + "-prosody")
            (ours, self.directory, agent, domain, tag) = (nil, directory, try LabAgent(directory: directory), servers.prosody.mucDomain, "p")
        }
    }

    func close() {
        if let ours { ours.close() } else { agent.stop() }
        if let directory { Lab.removeUnlessKept(directory) }
    }
}

/// The same client scenario, unchanged, against our master and against Prosody's own MUC in
/// the same run: where they differ, one of them is wrong or the difference is a choice
/// (README, "Compared with Prosody's MUC").
@Suite("Stock clients: our master and Prosody's MUC, the same scenario", .serialized, .labServers)
struct MUCComparisonTests {
    @Test("join order and history, reflection with stanza-id, nick change (303), two clients on one nick, kick (307), self-ping", arguments: [MUCUnderTest.shadowbridge, .prosody])
    func clientSuite(service: MUCUnderTest) throws {
        let servers = try LabServers.require()
        let lab = try ClientLab(servers, service: service, name: "cmp")
        defer { lab.close() }
        let agent = lab.agent
        let room = "compare1@\(lab.domain)"
        let (a, b, a2) = ("cmp\(lab.tag)a", "cmp\(lab.tag)b", "cmp\(lab.tag)a-second")

        // alice creates the room (201) and accepts the default configuration (an instant room).
        try agent.xmppUserOnline(a, prosody: servers.prosody)
        var mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": a, "room": room, "nick": "alice"])
        let created = try agent.waitFor("alice's self-presence", since: mark) { $0.user == a && $0.kind == "presence" && $0.codes.contains(110) }
        #expect(created.codes.contains(201), "a new room says 201: \(created)")
        let configured = try agent.iq(a, to: room, type: "set", MUCServiceTests.ownerSubmit([:]))
        #expect(configured.type == "result", "\(configured)")
        for body in ["one", "two"] { agent.send(["cmd": "xmpp_say", "user": a, "room": room, "body": body]) }
        let reflected = try agent.waitFor("alice's second line is reflected") { $0.user == a && $0.body == "two" }
        #expect(reflected.xml?.contains("urn:xmpp:sid:0") == true && reflected.xml?.contains("by=\"\(room)\"") == true, "the room's stanza-id: \(reflected.xml ?? "")")

        // bob joins: alice, then himself (110), then the history with delays, then the subject.
        try agent.xmppUserOnline(b, prosody: servers.prosody)
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": b, "room": room, "nick": "bob"])
        try agent.waitFor("bob gets the subject", since: mark) { $0.user == b && $0.kind == "message" && $0.subject != nil }
        let join = agent.events(since: mark).filter { $0.user == b && ($0.kind == "presence" || $0.kind == "message") }
        let shape = join.map { event -> String in
            if event.kind == "presence" { return "presence \(event.from ?? "")\(event.codes.contains(110) ? " 110" : "")" }
            if event.subject != nil { return "subject" }
            return "\(event.body ?? "") delayed=\(event.xml?.contains("urn:xmpp:delay") == true)"
        }
        #expect(shape == ["presence \(room)/alice", "presence \(room)/bob 110", "one delayed=true", "two delayed=true", "subject"], "\(shape)")
        Thread.sleep(forTimeInterval: 0.5)

        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": b, "room": room, "body": "hi"])
        try agent.expectExactlyOnce([On.xmppMessage(to: a, from: "\(room)/bob", body: "hi"), On.xmppMessage(to: b, from: "\(room)/bob", body: "hi")], since: mark)

        // bob becomes robert: 303 with the new nick, then the new nick, to everyone.
        mark = agent.mark
        agent.send(["cmd": "xmpp_show", "user": b, "room": room, "nick": "robert"])
        try agent.expectExactlyOnce(
            [
                On.xmppPresence(to: a, from: "\(room)/bob", unavailable: true), On.xmppPresence(to: a, from: "\(room)/robert", unavailable: false),
                On.xmppPresence(to: b, from: "\(room)/bob", unavailable: true), On.xmppPresence(to: b, from: "\(room)/robert", unavailable: false),
            ],
            since: mark)
        #expect(agent.events(since: mark).filter { $0.from == "\(room)/bob" }.allSatisfy { $0.codes.contains(303) && $0.xml?.contains("nick=\"robert\"") == true })

        // A second client of alice's account joins as alice: it gets the join, nobody else hears of it.
        mark = agent.mark
        agent.send(["cmd": "xmpp_connect", "user": a2, "jid": "\(a)@\(servers.prosody.domain)/second", "password": "pw-\(a)", "port": servers.prosody.c2sPort])
        try agent.waitFor("alice's second client online", since: mark) { $0.user == a2 && $0.kind == "online" }
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": a2, "room": room, "nick": "alice"])
        try agent.waitFor("the second client's subject", since: mark) { $0.user == a2 && $0.subject != nil }
        let second = agent.events(since: mark).filter { $0.user == a2 && $0.kind == "presence" }
        #expect(second.contains { $0.from == "\(room)/alice" && $0.codes.contains(110) }, "\(second)")
        Thread.sleep(forTimeInterval: 1)
        // The one difference (a choice, README "Compared with Prosody's MUC"): Prosody sends
        // alice's presence again to everyone when a client of hers joins or leaves; we send
        // nothing, as nothing about the occupant changed.
        let others = agent.events(since: mark).filter { $0.isTraffic && $0.user != a2 }.map { "\($0.user) \($0.kind) \($0.from ?? "")" }
        let rebroadcast = service == .prosody ? ["\(a) presence \(room)/alice", "\(b) presence \(room)/alice"] : []
        #expect(others.sorted() == rebroadcast, "what the others were told of a second client: \(others)")
        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": b, "room": room, "body": "to both"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: a, from: "\(room)/robert", body: "to both"), On.xmppMessage(to: a2, from: "\(room)/robert", body: "to both"),
                On.xmppMessage(to: b, from: "\(room)/robert", body: "to both"),
            ],
            since: mark)

        // XEP-0410: alice's client pings itself in the room.
        let ping = try agent.iq(a, to: "\(room)/alice", "<ping xmlns='urn:xmpp:ping'/>")
        #expect(ping.type == "result", "\(ping)")

        // alice (owner, so moderator) kicks robert: 307 with the reason, to him and to both her clients.
        mark = agent.mark
        let kick = try agent.iq(a, to: room, type: "set", MUCServiceTests.admin(["nick": "robert", "role": "none"], reason: "enough"))
        #expect(kick.type == "result", "\(kick)")
        try agent.expectExactlyOnce(
            [
                On.xmppPresence(to: b, from: "\(room)/robert", unavailable: true), On.xmppPresence(to: a, from: "\(room)/robert", unavailable: true),
                On.xmppPresence(to: a2, from: "\(room)/robert", unavailable: true),
            ],
            since: mark)
        #expect(agent.events(since: mark).filter { $0.from == "\(room)/robert" }.allSatisfy { $0.codes.contains(307) && $0.xml?.contains("enough") == true })

        // One of alice's clients leaves: only it is told.
        mark = agent.mark
        agent.send(["cmd": "xmpp_leave", "user": a2, "room": room, "nick": "alice"])
        try agent.expectExactlyOnce(
            [On.xmppPresence(to: a2, from: "\(room)/alice", unavailable: true)]
                + (service == .prosody ? [On.xmppPresence(to: a, from: "\(room)/alice", unavailable: false)] : []),
            since: mark)
    }

    @Test("moderation from a stock client: voice in a moderated room, kick (307), ban (301, then forbidden), password (not-authorized)", arguments: [MUCUnderTest.shadowbridge, .prosody])
    func moderation(service: MUCUnderTest) throws {
        let servers = try LabServers.require()
        let lab = try ClientLab(servers, service: service, name: "muc-moderation")
        defer { lab.close() }
        let agent = lab.agent
        let room = "mod1@\(lab.domain)"
        let (olga2, alic2, bob2) = ("olga2" + lab.tag, "alic2" + lab.tag, "bob2" + lab.tag)
        try agent.xmppUserJoins(olga2, prosody: servers.prosody, room: room, nick: "olga")
        #expect(try agent.iq(olga2, to: room, type: "set", MUCServiceTests.ownerSubmit(["muc#roomconfig_moderatedroom": "1"])).type == "result")
        try agent.xmppUserJoins(alic2, prosody: servers.prosody, room: room, nick: "alice")
        try agent.xmppUserJoins(bob2, prosody: servers.prosody, room: room, nick: "bob")
        #expect(agent.events(since: 0).last { $0.user == alic2 && $0.codes.contains(110) }?.role == "visitor")

        // A visitor's line is refused; with voice it goes through.
        var mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": alic2, "room": room, "body": "may I?"])
        let refused = try agent.waitFor("alice's line is refused", since: mark) { $0.user == alic2 && $0.kind == "message" && $0.type == "error" }
        #expect(refused.xml?.contains("forbidden") == true)
        #expect(!agent.events(since: mark).contains { $0.user == olga2 && $0.body == "may I?" })
        #expect(try agent.iq(olga2, to: room, type: "set", MUCServiceTests.admin(["nick": "alice", "role": "participant"])).type == "result")
        try agent.waitFor("alice gets voice") { $0.user == alic2 && $0.kind == "presence" && $0.codes.contains(110) && $0.role == "participant" }
        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": alic2, "room": room, "body": "now I may"])
        try agent.expectExactlyOnce(
            [olga2, alic2, bob2].map { On.xmppMessage(to: $0, from: "\(room)/alice", body: "now I may") }, since: mark)

        // A participant cannot kick; the owner can, and everyone sees 307 with the actor.
        let notAllowed = try agent.iq(bob2, to: room, type: "set", MUCServiceTests.admin(["nick": "alice", "role": "none"]))
        // A difference (README "Compared with Prosody's MUC"): XEP-0045 says forbidden for a
        // requester without the privilege; Prosody answers not-allowed.
        #expect(notAllowed.type == "error" && notAllowed.error == (service == .prosody ? "not-allowed" : "forbidden"), "\(notAllowed)")
        mark = agent.mark
        #expect(try agent.iq(olga2, to: room, type: "set", MUCServiceTests.admin(["nick": "alice", "role": "none"], reason: "enough")).type == "result")
        let kicked = try agent.waitFor("alice is kicked", since: mark) { $0.user == alic2 && $0.type == "unavailable" && $0.codes.contains(307) && $0.codes.contains(110) }
        #expect(kicked.xml?.contains("nick=\"olga\"") == true && kicked.xml?.contains("enough") == true, "\(kicked)")
        try agent.waitFor("bob sees it", since: mark) { $0.user == bob2 && $0.from == "\(room)/alice" && $0.codes == [307] }

        // Ban by JID: 301, and the next join is forbidden.
        mark = agent.mark
        let bobJID = "\(bob2)@\(servers.prosody.domain)"
        #expect(try agent.iq(olga2, to: room, type: "set", MUCServiceTests.admin(["jid": bobJID, "affiliation": "outcast"])).type == "result")
        try agent.waitFor("bob is banned", since: mark) { $0.user == bob2 && $0.type == "unavailable" && $0.codes.contains(301) }
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": bob2, "room": room, "nick": "bob"])
        let again = try agent.waitFor("bob's rejoin is refused", since: mark) { $0.user == bob2 && $0.kind == "presence" && $0.type == "error" }
        #expect(again.error == "forbidden")

        // A password: refused without it, in with it.
        #expect(try agent.iq(olga2, to: room, type: "set", MUCServiceTests.ownerSubmit(["muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "sesame"])).type == "result")
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": alic2, "room": room, "nick": "alice"])
        let noPassword = try agent.waitFor("alice needs the password", since: mark) { $0.user == alic2 && $0.kind == "presence" && $0.type == "error" }
        #expect(noPassword.error == "not-authorized")
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": alic2, "room": room, "nick": "alice", "password": "sesame"])
        try agent.waitFor("alice is in with the password", since: mark) { $0.user == alic2 && $0.kind == "presence" && $0.codes.contains(110) && $0.type != "unavailable" }
    }
}
