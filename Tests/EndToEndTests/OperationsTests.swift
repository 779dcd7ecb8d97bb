import Foundation
import Lab
import Testing

/// Issue 7: what an admin sees of a running bridge and what they can do to it.
@Suite("Operations: metrics, ad-hoc commands, the room list, reload and shutdown", .serialized, .labServers)
struct OperationsTests {
    /// The value of one sample line, `name{labels} value`, or 0 when absent.
    static func sample(_ text: String, _ series: String) -> Double {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1)) ?? .nan
        }
        return 0
    }

    @Test("the Prometheus endpoint counts messages and presence each way, puppets and master fanout, scraped before and after traffic")
    func metrics() throws {
        let port = try Lab.freePort()
        let r = try BridgedRoom(servers: try LabServers.require(), name: "metrics1", ircUsers: ["carol"], xmppUsers: [("mxa", "xanna")], metricsPort: port)
        defer { r.close() }
        let before = try #require(Lab.httpGet(port: port, path: "/metrics"), "no /metrics on \(port)")
        #expect(before.contains("# TYPE shadowbridge_messages_total counter"))
        #expect(Self.sample(before, "shadowbridge_puppet_connections") == 1)
        #expect(Self.sample(before, "shadowbridge_master_federations_total") == 1)
        // carol's join went to the room, xanna's came to IRC: one presence event each way.
        #expect(Self.sample(before, #"shadowbridge_presence_events_total{direction="irc_to_xmpp"}"#) == 1)
        #expect(Self.sample(before, #"shadowbridge_presence_events_total{direction="xmpp_to_irc"}"#) == 1)
        #expect(Lab.httpGet(port: port, path: "/nothing") == nil, "other paths are 404")

        var mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :counted once")
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "mxa", from: r.occupant("carol"), body: "counted once")], since: mark)
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "mxa", "room": r.room, "body": "and back"])
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "mxa", from: r.occupant("xanna"), body: "and back"), On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "and back")],
            since: mark)
        let after = try #require(Lab.httpGet(port: port, path: "/metrics"))
        let ircToXMPP = #"shadowbridge_messages_total{direction="irc_to_xmpp"}"#
        let xmppToIRC = #"shadowbridge_messages_total{direction="xmpp_to_irc"}"#
        #expect(Self.sample(after, ircToXMPP) - Self.sample(before, ircToXMPP) == 1)
        #expect(Self.sample(after, xmppToIRC) - Self.sample(before, xmppToIRC) == 1)
        // Each room message: to the one client, and once to the shadow.
        #expect(Self.sample(after, "shadowbridge_master_link_stanzas_total") - Self.sample(before, "shadowbridge_master_link_stanzas_total") == 2)
        #expect(Self.sample(after, "shadowbridge_link_seq_gaps_total") == 0)
        #expect(Self.sample(after, "shadowbridge_link_duplicates_dropped_total") == 0)
        // Flood control: lines went through the queues, none wait now, and their wait is a histogram.
        #expect(after.contains("\nshadowbridge_irc_flood_queue_lines ") && Self.sample(after, "shadowbridge_irc_flood_queue_lines") == 0, "\(after)")
        #expect(after.contains("# TYPE shadowbridge_irc_flood_queue_wait histogram"), "\(after)")
        #expect(Self.sample(after, "shadowbridge_irc_flood_queue_wait_count") > 0, "\(after)")
    }

    static let commandsNode = "<query xmlns='http://jabber.org/protocol/disco#items' node='http://jabber.org/protocol/commands'/>"

    static func command(_ node: String, action: String = "execute", form: [String: String]? = nil) -> String {
        let fields = (form ?? [:]).sorted { $0.key < $1.key }.map { "<field var='\($0.key)'><value>\($0.value)</value></field>" }.joined()
        let x = form == nil ? "" : "<x xmlns='jabber:x:data' type='submit'>\(fields)</x>"
        return "<command xmlns='http://jabber.org/protocol/commands' node='\(node)' action='\(action)'>\(x)</command>"
    }

    @Test("ad-hoc commands: an admin lists and runs status, mappings, resync and puppet disconnect on both domains; a stranger is forbidden")
    func adHocCommands() throws {
        let servers = try LabServers.require()
        let admin = "opsadmin", stranger = "opsstranger"
        let r = try BridgedRoom(
            servers: servers, name: "adhoc1", ircUsers: ["carol"], xmppUsers: [("ahx", "xanna")],
            extraConfig: "\n[admin]\njids = [\"\(admin)@\(servers.prosody.domain)\"]\n")
        defer { r.close() }
        try r.agent.xmppUserOnline(admin, prosody: servers.prosody)
        try r.agent.xmppUserOnline(stranger, prosody: servers.prosody)
        let bridge = LabServers.bridgeDomain, master = LabServers.masterDomain, shadow = "#adhoc1%lab@\(bridge)"

        // Discovery: the admin sees every command, a stranger none.
        let listed = try r.agent.iq(admin, to: bridge, Self.commandsNode)
        for node in ["status", "mappings", "reload", "resync", "disconnect-puppet"] {
            #expect(listed.xml?.contains("node=\"\(node)\"") == true, "\(node) not listed: \(listed.xml ?? "")")
        }
        let masterListed = try r.agent.iq(admin, to: master, Self.commandsNode)
        #expect(masterListed.xml?.contains("node=\"status\"") == true && masterListed.xml?.contains("node=\"mappings\"") == true, "\(masterListed)")
        let strangerListed = try r.agent.iq(stranger, to: bridge, Self.commandsNode)
        #expect(strangerListed.type == "result" && strangerListed.xml?.contains("node=\"status\"") == false, "\(strangerListed.xml ?? "")")

        // A stranger running a command: forbidden, on both domains, and nothing runs.
        for domain in [bridge, master] {
            for node in ["status", "reload", "disconnect-puppet"] {
                let refused = try r.agent.iq(stranger, to: domain, type: "set", Self.command(node))
                #expect(refused.type == "error" && refused.error == "forbidden", "\(domain) \(node): \(refused)")
            }
        }

        let status = try r.agent.iq(admin, to: bridge, type: "set", Self.command("status"))
        #expect(status.xml?.contains("status=\"completed\"") == true, "\(status.xml ?? "")")
        #expect(status.xml?.contains("network lab: connected as sbridge; channels 1/1 joined; IRC users 1; puppets 1 connected, 0 relayed") == true, "\(status.xml ?? "")")
        #expect(status.xml?.contains("federated; 1 IRC users, 1 remote occupants") == true, "\(status.xml ?? "")")
        let masterStatus = try r.agent.iq(admin, to: master, type: "set", Self.command("status"))
        #expect(masterStatus.xml?.contains("1 rooms, 2 occupants, 1 federated shadow rooms") == true, "\(masterStatus.xml ?? "")")
        let mappings = try r.agent.iq(admin, to: bridge, type: "set", Self.command("mappings"))
        #expect(mappings.xml?.contains("lab #adhoc1 &lt;-&gt; adhoc1@\(master)") == true, "\(mappings.xml ?? "")")
        let masterMappings = try r.agent.iq(admin, to: master, type: "set", Self.command("mappings"))
        #expect(masterMappings.xml?.contains("adhoc1@\(master): bridged from \(shadow)") == true, "\(masterMappings.xml ?? "")")
        let unknown = try r.agent.iq(admin, to: bridge, type: "set", Self.command("no-such-command"))
        #expect(unknown.type == "error" && unknown.error == "item-not-found")

        // Resync: a form first, then a new federation that neither side notices.
        let form = try r.agent.iq(admin, to: bridge, type: "set", Self.command("resync"))
        #expect(form.xml?.contains("status=\"executing\"") == true && form.xml?.contains("<value>\(shadow)</value>") == true, "\(form.xml ?? "")")
        var mark = r.agent.mark
        let resync = try r.agent.iq(admin, to: bridge, type: "set", Self.command("resync", action: "complete", form: ["room": shadow]))
        #expect(resync.xml?.contains("is federating again") == true, "\(resync.xml ?? "")")
        try r.agent.expectExactlyOnce([], since: mark, quiet: 2)
        mark = r.agent.mark
        r.irc("carol", "PRIVMSG #adhoc1 :after the resync")
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "ahx", from: r.occupant("carol"), body: "after the resync")], since: mark)

        // Disconnecting a puppet: it QUITs; the occupant goes on through the bridge's connection.
        mark = r.agent.mark
        let disconnect = try r.agent.iq(admin, to: bridge, type: "set", Self.command("disconnect-puppet", action: "complete", form: ["network": "lab", "nick": "xanna"]))
        #expect(disconnect.xml?.contains("disconnected from lab") == true, "\(disconnect.xml ?? "")")
        try r.agent.waitFor("xanna's puppet quits", since: mark) { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "xanna" }
        #expect(r.agent.events(since: mark).contains { $0.command == "QUIT" && $0.params.last?.contains("Disconnected by a Shadowbridge admin") == true })
        Thread.sleep(forTimeInterval: 0.5)
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "ahx", "room": r.room, "body": "still here"])
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "ahx", from: r.occupant("xanna"), body: "still here"), On.ircPrivmsg(to: "carol", from: "sbridge", channel: r.channel, text: "<xanna> still here")],
            since: mark)
        #expect(r.bridge.logLines(containing: "ad-hoc command refused").count == 7, "each refusal logged: six for the stranger, one unknown command")
    }

    @Test("one room list: the bridge lists its shadow rooms with dmuc-source, the master marks bridged rooms")
    func roomList() throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(servers: servers, name: "roomlist1", ircUsers: ["carol"], xmppUsers: [("rlu", "ulla")])
        defer { r.close() }
        let shadow = "#roomlist1%lab@\(LabServers.bridgeDomain)"
        let items = try r.agent.iq("rlu", to: LabServers.bridgeDomain, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
        #expect(items.xml?.contains("jid=\"\(shadow)\"") == true, "\(items.xml ?? "")")
        let shadowInfo = try r.agent.iq("rlu", to: shadow, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        #expect(shadowInfo.xml?.contains("var=\"dmuc-source\"") == true && shadowInfo.xml?.contains("<value>\(r.room)</value>") == true, "\(shadowInfo.xml ?? "")")
        let roomInfo = try r.agent.iq("rlu", to: r.room, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        #expect(roomInfo.xml?.contains("var=\"x-shadowbridge-bridged\"") == true && roomInfo.xml?.contains("<value>\(shadow)</value>") == true, "\(roomInfo.xml ?? "")")
        #expect(roomInfo.xml?.contains("muc#roominfo") == true && roomInfo.xml?.contains("var=\"muc#stable_id\"") == true)
        let masterItems = try r.agent.iq("rlu", to: LabServers.masterDomain, "<query xmlns='http://jabber.org/protocol/disco#items'/>")
        #expect(masterItems.xml?.contains("name=\"roomlist1 (bridged)\"") == true, "\(masterItems.xml ?? "")")
        let missing = try r.agent.iq("rlu", to: "#nothing%lab@\(LabServers.bridgeDomain)", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        #expect(missing.type == "error" && missing.error == "item-not-found", "\(missing)")
    }

    /// Numbered lines from an IRC user, a little apart, while something else happens.
    static func stream(_ r: BridgedRoom, from user: String, channel: String, prefix: String, count: Int) -> [String] {
        let lines = (1...count).map { "\(prefix) \($0)" }
        for line in lines {
            r.irc(user, "PRIVMSG \(channel) :\(line)")
            Thread.sleep(forTimeInterval: 0.05)
        }
        return lines
    }

    @Test("SIGHUP reload while lines flow: an added mapping starts, a removed one leaves cleanly, a changed one moves, a broken file changes nothing")
    func reload() throws {
        let servers = try LabServers.require()
        let port = try Lab.freePort()
        let r = try BridgedRoom(servers: servers, name: "reload1", ircUsers: ["rita"], xmppUsers: [("rlx", "xavier")], metricsPort: port)
        defer { r.close() }
        let agent = r.agent
        try agent.ircUserJoins("rob", port: servers.ngircd.port, channel: "#reload2")
        let mappingFile = r.bridge.mappingsDirectory.appendingPathComponent("lab.toml")
        func map(_ channels: [(String, String)]) throws {
            try ShadowbridgeProcess.mapping(network: "lab", ircPort: servers.ngircd.port, channels: channels)
                .write(to: mappingFile, atomically: true, encoding: .utf8)
            r.bridge.process.signal(SIGHUP)
        }
        let room2 = "reload2@\(LabServers.masterDomain)", room3 = "reload3@\(LabServers.masterDomain)"
        /// A new XMPP user joins `room` and meets rob there; rob sees their puppet join.
        func meet(_ user: String, as nick: String, in room: String) throws {
            try agent.xmppUserOnline(user, prosody: servers.prosody)
            try agent.xmppJoin(user, room: room, nick: nick)
            try agent.waitFor("\(nick) sees rob in \(room)") { $0.user == user && $0.kind == "presence" && $0.from == "\(room)/rob" }
            try agent.waitFor("\(nick)'s puppet joins", timeout: 20) { $0.user == "rob" && $0.command == "JOIN" && $0.nick == nick }
            Thread.sleep(forTimeInterval: 0.5)
        }

        // Add #reload2 while rita talks in the unchanged #reload1.
        var mark = agent.mark
        try map([("#reload1", "reload1"), ("#reload2", "reload2")])
        var lines = Self.stream(r, from: "rita", channel: "#reload1", prefix: "during the add", count: 15)
        try agent.expectExactlyOnce(
            lines.map { On.xmppMessage(to: "rlx", from: r.occupant("rita"), body: $0) } + [On.irc(to: "rob", "JOIN", from: "sbridge")],
            since: mark, quiet: 1.5)
        try r.bridge.waitForLog("link federated", "shadow=#reload2%lab@")
        try meet("rly", as: "yolanda", in: room2)

        // Remove #reload1 while rob talks in the unchanged #reload2.
        mark = agent.mark
        try map([("#reload2", "reload2")])
        lines = Self.stream(r, from: "rob", channel: "#reload2", prefix: "during the removal", count: 15)
        let gone = "This channel is no longer bridged to reload1@\(LabServers.masterDomain)"
        try agent.expectExactlyOnce(
            lines.map { On.xmppMessage(to: "rly", from: "\(room2)/rob", body: $0) } + [
                On.xmppPresence(to: "rlx", from: r.occupant("rita"), unavailable: true, status: gone),
                On.irc(to: "rita", "QUIT", from: "xavier"),
                On.irc(to: "rita", "PART", from: "sbridge"),
            ],
            since: mark, quiet: 1.5)
        #expect(agent.events(since: mark).contains { $0.user == "rita" && $0.command == "QUIT" && $0.params.last?.contains(gone) == true })
        mark = agent.mark
        r.irc("rita", "PRIVMSG #reload1 :nobody hears this")
        try agent.expectExactlyOnce([], since: mark)

        // Change #reload2's room to reload3: it leaves reload2 and federates reload3.
        mark = agent.mark
        try map([("#reload2", "reload3")])
        try agent.waitFor("rob leaves reload2", since: mark) { $0.user == "rly" && $0.kind == "presence" && $0.from == "\(room2)/rob" && $0.type == "unavailable" }
        try agent.waitFor("yolanda's puppet quits", since: mark) { $0.user == "rob" && $0.command == "QUIT" && $0.nick == "yolanda" }
        try r.bridge.waitForLog("link federated", "room=\(room3)", "shadow=#reload2%lab@")
        try meet("rlz", as: "zora", in: room3)

        // A broken file: reported, and the running mapping goes on as it was.
        mark = agent.mark
        try "[network]\nname = 1\n".write(to: r.bridge.mappingsDirectory.appendingPathComponent("broken.toml"), atomically: true, encoding: .utf8)
        r.bridge.process.signal(SIGHUP)
        try r.bridge.waitForLog("mappings not reloaded", "broken.toml")
        r.irc("rob", "PRIVMSG #reload2 :after the broken file")
        try agent.expectExactlyOnce([On.xmppMessage(to: "rlz", from: "\(room3)/rob", body: "after the broken file")], since: mark)

        let metrics = try #require(Lab.httpGet(port: port, path: "/metrics"))
        #expect(Self.sample(metrics, #"shadowbridge_reloads_total{result="applied"}"#) == 3, "\(metrics)")
        #expect(Self.sample(metrics, #"shadowbridge_reloads_total{result="refused"}"#) == 1)
        #expect(r.bridge.process.isRunning)
    }

    @Test("SIGTERM during traffic: every line at most once and in order, the room told (332), puppets QUIT with a reason, exit 0 within 10 s")
    func sigtermDuringTraffic() throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(servers: servers, name: "term1", ircUsers: ["tess"], xmppUsers: [("tmx", "tom")])
        defer { r.close() }
        let mark = r.agent.mark
        let lines = (1...20).map { "before the end \($0)" }
        for line in lines { r.irc("tess", "PRIVMSG #term1 :\(line)") }
        Thread.sleep(forTimeInterval: 0.1)
        let started = Date()
        r.bridge.process.signal(SIGTERM)
        #expect(r.bridge.process.waitForExit(timeout: 12))
        let took = Date().timeIntervalSince(started)
        #expect(took < 10, "stopped in \(took) s")
        #expect(r.bridge.process.exitStatus == 0, "\(r.bridge.log.suffix(2000))")
        try r.agent.waitFor("tom is told the room is going away") {
            $0.user == "tmx" && $0.kind == "presence" && $0.from == r.occupant("tom") && $0.type == "unavailable" && $0.codes.contains(332)
        }
        try r.agent.waitFor("tom's puppet quits") {
            $0.user == "tess" && $0.command == "QUIT" && $0.nick == "tom" && $0.params.last?.contains("Shadowbridge is shutting down") == true
        }
        let received = r.agent.events(since: mark).filter { $0.user == "tmx" && $0.kind == "message" && $0.body?.hasPrefix("before the end") == true }.compactMap(\.body)
        #expect(received == Array(lines.prefix(received.count)), "at most once, in order: \(received)")
        #expect(r.bridge.logLines(containing: "stopped").count == 1)
    }
}
