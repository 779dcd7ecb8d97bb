import Foundation
import Lab
import Testing

/// Issue 4: the master as a MUC service that stock XMPP clients (slixmpp here) rely on, through
/// real Prosody.
@Suite("The master as a MUC service for stock clients", .serialized, .labServers)
struct MUCServiceTests {
    static let domain = LabServers.masterDomain

    /// One scenario's lab: a master-only process where clients may create rooms, and an agent.
    final class MasterOnly: Sendable {
        let directory: URL
        let agent: LabAgent
        let master: ShadowbridgeProcess

        init(_ servers: LabServers, name: String) throws {
            directory = try Lab.makeTemporaryDirectory(prefix: name)
            agent = try LabAgent(directory: directory)
            let config = ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges"), bridge: false)
                .replacingOccurrences(of: "allowed_shadows = [\"\(LabServers.bridgeDomain)\"]", with: "allowed_shadows = [\"\(LabServers.bridgeDomain)\"]\ncreate_rooms = \"anyone\"")
            master = try ShadowbridgeProcess(directory: directory, config: config, mappings: [:])
            try master.waitForLog("[master] component connected")
        }

        func close() {
            agent.stop()
            _ = master.stop()
            Lab.removeUnlessKept(directory)
        }
    }

    static func ownerSubmit(_ fields: [String: String]) -> String {
        let values = fields.sorted { $0.key < $1.key }.map { "<field var='\($0.key)'><value>\($0.value)</value></field>" }.joined()
        return "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'>"
            + "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>\(values)</x></query>"
    }

    static func admin(_ attributes: [String: String], reason: String? = nil) -> String {
        let attrs = attributes.sorted { $0.key < $1.key }.map { "\($0.key)='\($0.value)'" }.joined(separator: " ")
        return "<query xmlns='http://jabber.org/protocol/muc#admin'><item \(attrs)>\(reason.map { "<reason>\($0)</reason>" } ?? "")</item></query>"
    }

    @Test("a client creates and configures a room; the next one gets its history with delays, occupant ids and the room info; empty, it goes away")
    func createConfigureHistory() throws {
        let servers = try LabServers.require()
        let lab = try MasterOnly(servers, name: "muc-create")
        defer { lab.close() }
        let agent = lab.agent, master = lab.master
        let room = "made1@\(Self.domain)"
        try agent.xmppUserOnline("olga1", prosody: servers.prosody)
        var mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": "olga1", "room": room, "nick": "olga"])
        let created = try agent.waitFor("olga's room is created", since: mark) { $0.user == "olga1" && $0.kind == "presence" && $0.codes.contains(110) }
        #expect(created.codes.contains(201) && created.xml?.contains("affiliation=\"owner\"") == true, "\(created)")
        try agent.xmppUserOnline("alic1", prosody: servers.prosody)
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": "alic1", "room": room, "nick": "alice"])
        let locked = try agent.waitFor("alice is kept out of the locked room", since: mark) { $0.user == "alic1" && $0.kind == "presence" && $0.type == "error" }
        #expect(locked.error == "item-not-found")

        let configured = try agent.iq("olga1", to: room, type: "set", Self.ownerSubmit(["muc#roomconfig_roomname": "Made here"]))
        #expect(configured.type == "result", "\(configured)")
        for body in ["first", "second"] { agent.send(["cmd": "xmpp_say", "user": "olga1", "room": room, "body": body]) }
        try agent.waitFor("olga's second line is reflected") { $0.user == "olga1" && $0.body == "second" }

        mark = agent.mark
        try agent.xmppJoin("alic1", room: room, nick: "alice")
        try agent.waitFor("alice gets the subject", since: mark) { $0.user == "alic1" && $0.subject != nil }
        let arrived = agent.events(since: mark).filter { $0.user == "alic1" && $0.kind == "message" }
        #expect(arrived.map { $0.body ?? "<subject>" } == ["first", "second", "<subject>"], "\(arrived)")
        #expect(arrived.prefix(2).allSatisfy { $0.xml?.contains("urn:xmpp:delay") == true && $0.xml?.contains("from=\"\(room)\"") == true }, "\(arrived)")
        #expect(arrived.prefix(2).allSatisfy { $0.xml?.contains("urn:xmpp:occupant-id:0") == true })
        let info = try agent.iq("alic1", to: room, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        #expect(info.xml?.contains("name=\"Made here\"") == true && info.xml?.contains("muc_temporary") == true && info.xml?.contains("urn:xmpp:occupant-id:0") == true, "\(info.xml ?? "")")

        // A temporary room goes away with its last occupant.
        agent.send(["cmd": "xmpp_leave", "user": "alic1", "room": room, "nick": "alice"])
        agent.send(["cmd": "xmpp_leave", "user": "olga1", "room": room, "nick": "olga"])
        try master.waitForLog("room removed", "room=\(room)")
        let items = try agent.iq("alic1", to: Self.domain, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
        #expect(items.xml?.contains(room) == false, "\(items.xml ?? "")")
    }

    @Test("moderation from a stock client: voice in a moderated room, kick (307), ban (301, then forbidden), password (not-authorized)")
    func moderation() throws {
        let servers = try LabServers.require()
        let lab = try MasterOnly(servers, name: "muc-moderation")
        defer { lab.close() }
        let agent = lab.agent
        let room = "mod1@\(Self.domain)"
        try agent.xmppUserJoins("olga2", prosody: servers.prosody, room: room, nick: "olga")
        #expect(try agent.iq("olga2", to: room, type: "set", Self.ownerSubmit(["muc#roomconfig_moderatedroom": "1"])).type == "result")
        try agent.xmppUserJoins("alic2", prosody: servers.prosody, room: room, nick: "alice")
        try agent.xmppUserJoins("bob2", prosody: servers.prosody, room: room, nick: "bob")
        #expect(agent.events(since: 0).last { $0.user == "alic2" && $0.codes.contains(110) }?.role == "visitor")

        // A visitor's line is refused; with voice it goes through.
        var mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "alic2", "room": room, "body": "may I?"])
        let refused = try agent.waitFor("alice's line is refused", since: mark) { $0.user == "alic2" && $0.kind == "message" && $0.type == "error" }
        #expect(refused.xml?.contains("forbidden") == true)
        #expect(!agent.events(since: mark).contains { $0.user == "olga2" && $0.body == "may I?" })
        #expect(try agent.iq("olga2", to: room, type: "set", Self.admin(["nick": "alice", "role": "participant"])).type == "result")
        try agent.waitFor("alice gets voice") { $0.user == "alic2" && $0.kind == "presence" && $0.codes.contains(110) && $0.role == "participant" }
        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "alic2", "room": room, "body": "now I may"])
        try agent.expectExactlyOnce(
            ["olga2", "alic2", "bob2"].map { On.xmppMessage(to: $0, from: "\(room)/alice", body: "now I may") }, since: mark)

        // A participant cannot kick; the owner can, and everyone sees 307 with the actor.
        let notAllowed = try agent.iq("bob2", to: room, type: "set", Self.admin(["nick": "alice", "role": "none"]))
        #expect(notAllowed.type == "error" && notAllowed.error == "forbidden")
        mark = agent.mark
        #expect(try agent.iq("olga2", to: room, type: "set", Self.admin(["nick": "alice", "role": "none"], reason: "enough")).type == "result")
        let kicked = try agent.waitFor("alice is kicked", since: mark) { $0.user == "alic2" && $0.type == "unavailable" && $0.codes.contains(307) && $0.codes.contains(110) }
        #expect(kicked.xml?.contains("nick=\"olga\"") == true && kicked.xml?.contains("enough") == true, "\(kicked)")
        try agent.waitFor("bob sees it", since: mark) { $0.user == "bob2" && $0.from == "\(room)/alice" && $0.codes == [307] }

        // Ban by JID: 301, and the next join is forbidden.
        mark = agent.mark
        let bobJID = "bob2@\(servers.prosody.domain)"
        #expect(try agent.iq("olga2", to: room, type: "set", Self.admin(["jid": bobJID, "affiliation": "outcast"])).type == "result")
        try agent.waitFor("bob is banned", since: mark) { $0.user == "bob2" && $0.type == "unavailable" && $0.codes.contains(301) }
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": "bob2", "room": room, "nick": "bob"])
        let again = try agent.waitFor("bob's rejoin is refused", since: mark) { $0.user == "bob2" && $0.kind == "presence" && $0.type == "error" }
        #expect(again.error == "forbidden")

        // A password: refused without it, in with it.
        #expect(try agent.iq("olga2", to: room, type: "set", Self.ownerSubmit(["muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "sesame"])).type == "result")
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": "alic2", "room": room, "nick": "alice"])
        let noPassword = try agent.waitFor("alice needs the password", since: mark) { $0.user == "alic2" && $0.kind == "presence" && $0.type == "error" }
        #expect(noPassword.error == "not-authorized")
        mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": "alic2", "room": room, "nick": "alice", "password": "sesame"])
        try agent.waitFor("alice is in with the password", since: mark) { $0.user == "alic2" && $0.kind == "presence" && $0.codes.contains(110) && $0.type != "unavailable" }
    }

    @Test("an XMPP admin kicks an IRC user: the room sees 307, the IRC user is told once and no longer relayed")
    func kickIRCUser() throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(
            servers: servers, name: "kickirc1", ircUsers: ["carol"], xmppUsers: [("kix", "xena")],
            extraConfig: "\n[admin]\njids = [\"kadmin@\(servers.prosody.domain)\"]\n")
        defer { r.close() }
        try r.agent.xmppUserJoins("kadmin", prosody: servers.prosody, room: r.room, nick: "boss")
        try r.agent.waitFor("the admin's puppet joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "boss" }
        #expect(r.agent.events(since: 0).last { $0.user == "kadmin" && $0.codes.contains(110) }?.role == "moderator")
        Thread.sleep(forTimeInterval: 0.5)
        var mark = r.agent.mark
        #expect(try r.agent.iq("kadmin", to: r.room, type: "set", Self.admin(["nick": "carol", "role": "none"], reason: "off topic")).type == "result")
        try r.agent.expectExactlyOnce(
            [
                Expected("xena sees carol kicked") { $0.user == "kix" && $0.from == r.occupant("carol") && $0.type == "unavailable" && $0.codes == [307] },
                Expected("the admin sees carol kicked") { $0.user == "kadmin" && $0.from == r.occupant("carol") && $0.type == "unavailable" && $0.codes == [307] },
                Expected("carol is told") { $0.user == "carol" && $0.command == "NOTICE" && $0.nick == "sbridge" && $0.params.last?.contains("kicked from the XMPP room by boss: off topic") == true },
            ],
            since: mark)
        mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :can anyone hear me?")
        try r.agent.expectExactlyOnce([], since: mark)
    }
}
