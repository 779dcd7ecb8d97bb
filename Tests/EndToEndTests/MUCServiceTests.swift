import Foundation
import Lab
import Synchronization
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
        let config: String
        private let current: Mutex<ShadowbridgeProcess>
        var master: ShadowbridgeProcess { current.withLock { $0 } }

        init(_ servers: LabServers, name: String) throws {
            directory = try Lab.makeTemporaryDirectory(prefix: name)
            agent = try LabAgent(directory: directory)
            config = ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges"), bridge: false)
                .replacingOccurrences(of: "allowed_shadows = [\"\(LabServers.bridgeDomain)\"]", with: "allowed_shadows = [\"\(LabServers.bridgeDomain)\"]\ncreate_rooms = \"anyone\"")
            let master = try ShadowbridgeProcess(directory: directory, config: config, mappings: [:])
            current = Mutex(master)
            try master.waitForLog("[master] component connected")
        }

        /// Stops the master cleanly and starts it again on the same directory and database;
        /// the first run's log is kept beside as `shadowbridge.log.1`.
        func restart() throws {
            let status = master.stop()
            #expect(status == 0, "the master's exit status on SIGTERM")
            let log = directory.appendingPathComponent("shadowbridge.log")
            try FileManager.default.moveItem(at: log, to: directory.appendingPathComponent("shadowbridge.log.1"))
            let next = try ShadowbridgeProcess(directory: directory, config: config, mappings: [:])
            current.withLock { $0 = next }
            try next.waitForLog("[master] component connected")
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

    @Test("an XMPP admin kicks an IRC user, the bridge holding no ops: the room sees 307, the IRC user and the admin are told once, she is no longer relayed until she leaves and joins again")
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
                Expected("the admin is told carol is still on IRC, and why") {
                    $0.user == "kadmin" && $0.kind == "message" && $0.type == "chat" && $0.from?.hasSuffix("@\(LabServers.bridgeDomain)") == true
                        && $0.body?.hasPrefix("carol is still in \(r.channel) on IRC: the bridge has no operator rights there, so it could not kick them.") == true
                },
            ],
            since: mark)
        mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :can anyone hear me?")
        try r.agent.expectExactlyOnce([], since: mark)

        // Flow E: she is submitted again once she leaves the channel and joins again.
        mark = r.agent.mark
        r.irc("carol", "PART \(r.channel)")
        r.irc("carol", "JOIN \(r.channel)")
        try r.agent.expectExactlyOnce(
            [
                On.irc(to: "carol", "PART", from: "carol"),
                On.irc(to: "carol", "JOIN", from: "carol"),
                On.xmppPresence(to: "kix", from: r.occupant("carol"), unavailable: false),
                On.xmppPresence(to: "kadmin", from: r.occupant("carol"), unavailable: false),
            ], since: mark, quiet: 2)
        mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :back again")
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "kix", from: r.occupant("carol"), body: "back again"), On.xmppMessage(to: "kadmin", from: r.occupant("carol"), body: "back again")],
            since: mark)
    }

    @Test("an XMPP moderator kicks, then bans, IRC users where the bridge holds ops: KICK (and +b) on IRC once each, 307/301 in the room once, nothing relayed twice")
    func kickAndBanWithOps() throws {
        let servers = try LabServers.require()
        // Nobody on IRC before the bridge: it creates the channel and holds ops.
        let r = try BridgedRoom(
            servers: servers, name: "kickops1", ircUsers: [], xmppUsers: [],
            extraConfig: "\n[admin]\njids = [\"oadmin@\(servers.prosody.domain)\"]\n")
        defer { r.close() }
        try r.agent.ircUserJoins("carol", port: servers.ngircd.port, channel: r.channel)
        try r.agent.ircUserJoins("dave", port: servers.ngircd.port, channel: r.channel)
        try r.agent.xmppUserJoins("oadmin", prosody: servers.prosody, room: r.room, nick: "boss")
        try r.agent.waitFor("the admin's puppet joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "boss" }
        try r.agent.waitFor("boss sees dave", timeout: 20) { $0.user == "oadmin" && $0.kind == "presence" && $0.from == r.occupant("dave") }
        Thread.sleep(forTimeInterval: 1)

        var mark = r.agent.mark
        #expect(try r.agent.iq("oadmin", to: r.room, type: "set", Self.admin(["nick": "carol", "role": "none"], reason: "off topic")).type == "result")
        try r.agent.expectExactlyOnce(
            [
                Expected("the admin sees carol kicked") { $0.user == "oadmin" && $0.from == r.occupant("carol") && $0.type == "unavailable" && $0.codes == [307] },
                Expected("carol is kicked on IRC by the bridge") {
                    $0.user == "carol" && $0.command == "KICK" && $0.nick == "sbridge" && $0.params == [r.channel, "carol", "Kicked from the XMPP room by boss: off topic"]
                },
                Expected("dave sees the KICK") { $0.user == "dave" && $0.command == "KICK" && $0.nick == "sbridge" && $0.params.dropFirst().first == "carol" },
            ], since: mark)

        // A moderator sees the IRC user's (opaque) real JID, and bans it.
        let daveXML = r.agent.events(since: 0).last { $0.user == "oadmin" && $0.kind == "presence" && $0.from == r.occupant("dave") }?.xml ?? ""
        let daveJID = try #require(daveXML.firstMatch(of: /jid="([^"\/]+)/).map { String($0.1) }, "\(daveXML)")
        mark = r.agent.mark
        #expect(try r.agent.iq("oadmin", to: r.room, type: "set", Self.admin(["jid": daveJID, "affiliation": "outcast"], reason: "spam")).type == "result")
        try r.agent.expectExactlyOnce(
            [
                Expected("the admin sees dave banned") { $0.user == "oadmin" && $0.from == r.occupant("dave") && $0.type == "unavailable" && $0.codes == [301] },
                Expected("dave sees the ban") { $0.user == "dave" && $0.command == "MODE" && $0.nick == "sbridge" && $0.params.dropFirst().first == "+b" },
                Expected("dave is kicked on IRC") { $0.user == "dave" && $0.command == "KICK" && $0.nick == "sbridge" && $0.params.last == "Banned from the XMPP room by boss: spam" },
            ], since: mark)
        mark = r.agent.mark
        r.irc("dave", "JOIN \(r.channel)")
        try r.agent.waitFor("dave cannot come back (474)", since: mark) { $0.user == "dave" && $0.command == "474" }
    }

    /// A raw MAM query; the bodies of the results that arrived before the answer, and the answer.
    static func mamQuery(_ agent: LabAgent, _ user: String, room: String, _ payload: String) throws -> (bodies: [String], answer: AgentEvent) {
        let mark = agent.mark
        let answer = try agent.iq(user, to: room, type: "set", "<query xmlns='urn:xmpp:mam:2' queryid='raw'>\(payload)</query>")
        let results = agent.events(since: mark).filter { $0.user == user && $0.kind == "message" && $0.index < answer.index && $0.xml?.contains("urn:xmpp:mam:2") == true }
        let bodies = results.compactMap { event -> String? in
            guard let xml = event.xml, let start = xml.range(of: "<body>"), let end = xml.range(of: "</body>", range: start.upperBound..<xml.endIndex) else { return nil }
            return String(xml[start.upperBound..<end.lowerBound])
        }
        return (bodies, answer)
    }

    @Test("a room's configuration, affiliations, subject, occupant ids and archive survive a master restart; a stock client pages through the archive with MAM")
    func persistenceAndArchive() throws {
        let servers = try LabServers.require()
        let lab = try MasterOnly(servers, name: "muc-persist")
        defer { lab.close() }
        let agent = lab.agent
        let room = "kept1@\(Self.domain)"
        try agent.xmppUserOnline("olga2", prosody: servers.prosody)
        var mark = agent.mark
        agent.send(["cmd": "xmpp_join", "user": "olga2", "room": room, "nick": "olga"])
        try agent.waitFor("olga's room is created", since: mark) { $0.user == "olga2" && $0.kind == "presence" && $0.codes.contains(201) }
        let configured = try agent.iq("olga2", to: room, type: "set", Self.ownerSubmit(["muc#roomconfig_roomname": "Kept", "muc#roomconfig_persistentroom": "1"]))
        #expect(configured.type == "result", "\(configured)")
        #expect(try agent.iq("olga2", to: room, type: "set", Self.admin(["jid": "alic2@\(servers.prosody.domain)", "affiliation": "member"])).type == "result")
        agent.send(["cmd": "xmpp_subject", "user": "olga2", "room": room, "subject": "Before the restart"])
        let lines = (1...7).map { "line \($0)" }
        for line in lines { agent.send(["cmd": "xmpp_say", "user": "olga2", "room": room, "body": line]) }
        let last = try agent.waitFor("olga's last line is reflected") { $0.user == "olga2" && $0.body == "line 7" }
        let xml = last.xml ?? ""
        let occupantID = xml.range(of: #"<occupant-id [^>]*/>"#, options: .regularExpression).map { String(xml[$0]) }
        #expect(occupantID != nil, "\(last)")

        // A stock client reads the whole archive three lines a page: every line once, in order.
        let read = try agent.mam("olga2", room: room, max: 3)
        #expect(read.error == nil && read.params == lines, "\(read)")
        #expect(read.data?.split(separator: "\n").allSatisfy { $0 == "\(room)/olga" } == true, "\(read)")
        // The last page (an empty <before/>), the count, and an unknown id.
        let lastPage = try Self.mamQuery(agent, "olga2", room: room, "<set xmlns='http://jabber.org/protocol/rsm'><max>2</max><before/></set>")
        #expect(lastPage.bodies == ["line 6", "line 7"], "\(lastPage)")
        #expect(lastPage.answer.xml?.contains("<count>7</count>") == true && lastPage.answer.xml?.contains("complete") == false, "\(lastPage.answer)")
        let unknown = try Self.mamQuery(agent, "olga2", room: room, "<set xmlns='http://jabber.org/protocol/rsm'><after>no-such-id</after></set>")
        #expect(unknown.answer.type == "error" && unknown.answer.error == "item-not-found", "\(unknown.answer)")

        mark = agent.mark
        try lab.restart()
        try agent.waitFor("olga is told the service went down (332)", since: mark) { $0.user == "olga2" && $0.kind == "presence" && $0.codes.contains(332) }
        try lab.master.waitForLog("room state loaded", "rooms=1")

        // Back in the room: owner, no 201, the history and the subject, the same occupant id.
        mark = agent.mark
        try agent.xmppJoin("olga2", room: room, nick: "olga")
        let subject = try agent.waitFor("olga gets the subject", since: mark) { $0.user == "olga2" && $0.subject != nil }
        #expect(subject.subject == "Before the restart")
        let joined = agent.events(since: mark).filter { $0.user == "olga2" }
        let selfPresence = joined.first { $0.kind == "presence" && $0.codes.contains(110) }
        #expect(selfPresence?.xml?.contains("affiliation=\"owner\"") == true && selfPresence?.codes.contains(201) == false, "\(joined)")
        #expect(selfPresence?.xml?.contains(occupantID ?? "-") == true, "\(selfPresence?.xml ?? "")")
        #expect(joined.filter { $0.kind == "message" && $0.body != nil }.map { $0.body! } == lines, "\(joined)")
        let info = try agent.iq("olga2", to: room, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        #expect(info.xml?.contains("name=\"Kept\"") == true && info.xml?.contains("muc_persistent") == true && info.xml?.contains("urn:xmpp:mam:2") == true, "\(info)")
        let members = try agent.iq("olga2", to: room, Self.admin(["affiliation": "member"]))
        #expect(members.xml?.contains("alic2@\(servers.prosody.domain)") == true, "\(members)")

        // The archive survived, and a line said now is in it at once.
        agent.send(["cmd": "xmpp_say", "user": "olga2", "room": room, "body": "line 8"])
        try agent.waitFor("line 8 is reflected") { $0.user == "olga2" && $0.body == "line 8" }
        let after = try agent.mam("olga2", room: room, max: 5)
        #expect(after.params == lines + ["line 8"], "\(after)")
    }
}
