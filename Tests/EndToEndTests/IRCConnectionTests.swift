import Foundation
import Lab
import Testing

/// Issue 5, the part landed so far: connections that a stock server tolerates.
@Suite("IRC connections: CAP negotiation and flood control against stock ngircd", .serialized, .labServers)
struct IRCConnectionTests {
    @Test("a 50-line XMPP paste reaches IRC whole, in order, once, through ngircd's default flood penalties, and nobody is killed")
    func pasteThroughDefaultPenalties() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "paste")
        defer { Lab.removeUnlessKept(directory) }
        let channel = "#paste1"
        let room = "paste1@\(LabServers.masterDomain)"
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("rita", port: servers.ngircd.port, channel: channel)

        let bridge = try ShadowbridgeProcess(servers: servers, directory: directory, channels: [(channel, "paste1")])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=\(channel)%lab@")
        // ngircd offers multi-prefix through CAP LS 302; the bridge takes it.
        try bridge.waitForLog("IRC capabilities", "multi-prefix")

        try agent.xmppUserJoins("paula", prosody: servers.prosody, room: room, nick: "paula")
        try agent.waitFor("the puppet joins", timeout: 20) { $0.user == "rita" && $0.command == "JOIN" && $0.nick == "paula" }
        Thread.sleep(forTimeInterval: 1)

        let lines = (1...50).map { String(format: "paste line %02d: the quick brown fox jumps over the lazy dog", $0) }
        let mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "paula", "room": room, "body": lines.joined(separator: "\n")])
        // About 2 lines a second after a burst of 5: bound the wait generously, not tightly.
        try agent.waitFor("the 50th line on IRC", since: mark, timeout: 90) { $0.user == "rita" && $0.command == "PRIVMSG" && $0.params.last == lines[49] }
        Thread.sleep(forTimeInterval: 1)
        let received = agent.events(since: mark).filter { $0.user == "rita" && $0.kind == "irc" && $0.command == "PRIVMSG" }
        #expect(received.map { $0.params.last ?? "" } == lines, "lines out of order, lost or doubled")
        #expect(received.allSatisfy { $0.nick == "paula" })
        let trouble = agent.events(since: mark).filter { ["KILL", "ERROR", "QUIT", "PART", "KICK"].contains($0.command ?? "") || $0.kind == "irc_closed" }
        #expect(trouble.isEmpty, "\(trouble)")
        // Each line once, the paste once in the room, and nothing else on either side.
        try agent.expectExactlyOnce(
            lines.map { On.ircPrivmsg(to: "rita", from: "paula", channel: channel, text: $0) } + [On.xmppMessage(to: "paula", from: "\(room)/paula", body: lines.joined(separator: "\n"))],
            since: mark)
        #expect(bridge.process.isRunning)
    }

    @Test("ngircd's default limit of 5 connections per IP: the occupant whose puppet is refused speaks through the bridge, nothing lost")
    func connectionLimitFallsBackToRelay() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "limit")
        defer { Lab.removeUnlessKept(directory) }
        // A stock ngircd: MaxConnectionsIP defaults to 5, and every connection here is 127.0.0.1.
        let stock = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"), options: .init(maxConnectionsIP: 5))
        defer { stock.stop() }
        let room = "limit1@\(LabServers.masterDomain)"
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("carol", port: stock.port, channel: "#limit1")
        let bridge = try ShadowbridgeProcess(
            directory: directory, config: ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges")),
            mappings: ["stock.toml": ShadowbridgeProcess.mapping(network: "stock", ircPort: stock.port, channels: [("#limit1", "limit1")])])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#limit1%stock@")

        // carol + the bridge + three puppets = 5 connections; the fourth XMPP user is one too many.
        let users = ["lim1", "lim2", "lim3", "lim4"]
        for (index, user) in users.enumerated() {
            try agent.xmppUserJoins(user, prosody: servers.prosody, room: room, nick: user)
            if index < 3 {
                try agent.waitFor("the puppet \(user) joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == user }
            }
        }
        try bridge.waitForLog("refused a puppet connection", "network=stock")
        Thread.sleep(forTimeInterval: 1)

        // Every XMPP user gets the line once; carol gets it once, from the bridge or the puppet.
        for (speaker, body, ircSender, ircText) in [
            ("lim4", "can you hear me?", "sbridge", "<lim4> can you hear me?"), ("lim1", "and me, with a puppet", "lim1", "and me, with a puppet"),
        ] {
            let mark = agent.mark
            agent.send(["cmd": "xmpp_say", "user": speaker, "room": room, "body": body])
            try agent.expectExactlyOnce(
                users.map { On.xmppMessage(to: $0, from: "\(room)/\(speaker)", body: body) }
                    + [On.ircPrivmsg(to: "carol", from: ircSender, channel: "#limit1", text: ircText)],
                since: mark)
        }
        #expect(bridge.logLines(containing: "refused a puppet connection").count == 1, "the admin is told once")
    }

    @Test("max_puppets: beyond it, occupants are relayed through the bridge's connection, nothing lost")
    func maxPuppets() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "maxp")
        defer { Lab.removeUnlessKept(directory) }
        let room = "maxp1@\(LabServers.masterDomain)"
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("carol", port: servers.ngircd.port, channel: "#maxp1")
        let mapping = ShadowbridgeProcess.mapping(network: "lab", ircPort: servers.ngircd.port, channels: [("#maxp1", "maxp1")])
            .replacingOccurrences(of: "nick = \"sbridge\"", with: "nick = \"sbridge\"\nmax_puppets = 1")
        let bridge = try ShadowbridgeProcess(
            directory: directory, config: ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges")),
            mappings: ["lab.toml": mapping])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#maxp1%lab@")
        try agent.xmppUserJoins("mp1", prosody: servers.prosody, room: room, nick: "mp1")
        try agent.waitFor("the one puppet joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "mp1" }
        try agent.xmppUserJoins("mp2", prosody: servers.prosody, room: room, nick: "mp2")
        try bridge.waitForLog("max_puppets reached")
        Thread.sleep(forTimeInterval: 1)
        let mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "mp2", "room": room, "body": "over the limit"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "mp1", from: "\(room)/mp2", body: "over the limit"),
                On.xmppMessage(to: "mp2", from: "\(room)/mp2", body: "over the limit"),
                On.ircPrivmsg(to: "carol", from: "sbridge", channel: "#maxp1", text: "<mp2> over the limit"),
            ], since: mark)
        #expect(!agent.events(since: 0).contains { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "mp2" }, "no second puppet")
    }

    @Test("the IRC server restarted mid-conversation: the bridge and the puppet reconnect and rejoin (the puppet is not replaced by the relay); IRC users who come back within netsplit_grace show nothing in the room, one who does not leaves once with 333; numbered lines each way cross once, in order")
    func serverRestart() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "ircrestart")
        defer { Lab.removeUnlessKept(directory) }
        // Its own ngircd: the restart must not disturb the suite's other scenarios.
        let ngircd = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"))
        defer { ngircd.stop() }
        let (channel, room) = ("#restart1", "restart1@\(LabServers.masterDomain)")
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("carol", port: ngircd.port, channel: channel)
        try agent.ircUserJoins("dave", port: ngircd.port, channel: channel)
        let bridge = try ShadowbridgeProcess(
            servers: servers, directory: directory, channels: [(channel, "restart1")], server: "irc://127.0.0.1:\(ngircd.port)", networkSettings: "netsplit_grace = 10")
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=\(channel)%lab@")
        try agent.xmppUserJoins("rsx", prosody: servers.prosody, room: room, nick: "xena")
        try agent.waitFor("xena's puppet joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xena" }
        Thread.sleep(forTimeInterval: 0.5)
        var mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :before the restart"])
        try agent.expectExactlyOnce(
            [On.xmppMessage(to: "rsx", from: "\(room)/carol", body: "before the restart"), On.ircPrivmsg(to: "dave", from: "carol", channel: channel, text: "before the restart")],
            since: mark)

        // Numbered lines from both sides all through the restart; carol comes back like a
        // person would, dave does not.
        mark = agent.mark
        let fromXMPP = NumberedStream.xmpp("ircrx-", count: 30, interval: 0.25, agent: agent, user: "rsx", room: room)
        let fromIRC = NumberedStream.irc("ircri-", count: 30, interval: 0.25, agent: agent, user: "carol", channel: channel)
        Thread.sleep(forTimeInterval: 1.5)
        let restarting = Date()
        try ngircd.restart()
        try agent.waitFor("carol is cut off", since: mark) { $0.user == "carol" && $0.kind == "irc_closed" }
        // A line written to the server as it goes down (before its sender hears the close) may
        // die in the server's own buffers: in flight at the server's end, not lost by the bridge.
        let serverGoingDown = restarting.addingTimeInterval(-0.3)...Date()
        try bridge.waitForLog("IRC connection lost; reconnecting", "network=lab")
        agent.send(["cmd": "irc_connect", "user": "carol", "port": ngircd.port, "nick": "carol"])
        try agent.waitFor("carol registered again", since: mark) { $0.user == "carol" && $0.command == "001" }
        agent.send(["cmd": "irc_send", "user": "carol", "line": "JOIN \(channel)"])
        try agent.waitFor("xena's puppet joins again", since: mark, timeout: 30) {
            $0.user == "carol" && (($0.command == "JOIN" && $0.nick == "xena") || ($0.command == "353" && ($0.params.last ?? "").split(separator: " ").contains { $0.hasSuffix("xena") }))
        }
        try fromXMPP.finish()
        try fromIRC.finish()
        agent.waitForQuiet(seconds: 3, timeout: 60)
        let events = agent.events(since: mark)
        let carolGone: (AgentEvent) -> Bool = { $0.user == "carol" && $0.kind == "irc_closed" }
        // In the channel with her: the bridge's connection (for her lines), xena's puppet (for xena's).
        func carolWith(_ nick: String) -> (AgentEvent) -> Bool {
            { $0.user == "carol" && (($0.command == "JOIN" && $0.nick == nick) || ($0.command == "353" && ($0.params.last ?? "").split(separator: " ").contains { $0.hasSuffix(nick) })) }
        }
        LineAccount(
            stream: "XMPP xena -> IRC carol across an IRC server restart (cut off: carol and xena's puppet not both in the channel)",
            sent: fromXMPP.sent(events: events, down: carolGone, up: carolWith("xena"), refusal: { _ in nil }, inFlight: serverGoingDown),
            received: fromXMPP.received(atIRC: "carol", from: "xena", in: events)
        ).check()
        LineAccount(
            stream: "IRC carol -> XMPP xena across an IRC server restart (cut off: carol disconnected, or no bridge connection in the channel)",
            sent: fromIRC.sent(events: events, down: carolGone, up: carolWith("sbridge"), refusal: { _ in nil }, inFlight: serverGoingDown),
            received: fromIRC.received(atXMPP: "rsx", from: "\(room)/carol", in: events)
        ).check()
        #expect(bridge.logLines(containing: "IRC bridge connection registered").count == 2, "the bridge's connection registers again")
        #expect(events.filter { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xena" }.count <= 1, "at most one puppet rejoin")
        #expect(!events.contains { $0.user == "carol" && $0.command == "PRIVMSG" && $0.nick == "sbridge" }, "the puppet was not replaced by the relay")

        // The room: carol was back within the grace, so nothing; dave leaves once, with 333
        // and the two ends of the lost connection as status, when the grace ends.
        try agent.waitFor("dave leaves the room when the grace ends", since: mark, timeout: 30) {
            $0.user == "rsx" && $0.kind == "presence" && $0.from == "\(room)/dave" && $0.type == "unavailable"
        }
        Thread.sleep(forTimeInterval: 1)
        let presences = agent.events(since: mark).filter { $0.user == "rsx" && $0.kind == "presence" }
        #expect(presences.count == 1 && presences.first?.status == "127.0.0.1 \(LabServers.bridgeDomain)", "\(presences)")
        #expect(presences.first?.xml?.contains("code=\"333\"") == true, "\(presences)")

        mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :after the restart"])
        agent.send(["cmd": "xmpp_say", "user": "rsx", "room": room, "body": "me too"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "rsx", from: "\(room)/carol", body: "after the restart"),
                On.xmppMessage(to: "rsx", from: "\(room)/xena", body: "me too"),
                On.ircPrivmsg(to: "carol", from: "xena", channel: channel, text: "me too"),
            ], since: mark)
    }

    @Test("draft/multiline (scripted IRC peer: no Debian IRC server offers it): a three-line XMPP message goes as one batch, and a long line is cut with multiline-concat")
    func multilineScriptedPeer() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "multiline")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let bridge = try bridgeOnScriptedPeer(
            agent, servers: servers, directory: directory, channel: "#ml", room: "ml1",
            options: ["user": "ml", "names": ["carol"], "caps": "batch message-tags draft/multiline=max-bytes=4096,max-lines=24 server-time"])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("IRC capabilities", "draft/multiline")
        let room = "ml1@\(LabServers.masterDomain)"
        try agent.xmppUserJoins("mlx", prosody: servers.prosody, room: room, nick: "xena")
        try agent.waitFor("the puppet joins", timeout: 20) { $0.kind == "scripted_irc_received" && $0.command == "JOIN" && $0.nick == "xena" }
        Thread.sleep(forTimeInterval: 0.5)

        let long = String(repeating: "word ", count: 120).trimmingCharacters(in: .whitespaces)
        let mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "mlx", "room": room, "body": "first line\nsecond line\n\(long)"])
        try agent.waitFor("the batch closes", since: mark) { $0.kind == "scripted_irc_received" && $0.nick == "xena" && $0.command == "BATCH" && $0.params.first?.hasPrefix("-") == true }
        Thread.sleep(forTimeInterval: 0.5)
        let sent = agent.events(since: mark).filter { $0.kind == "scripted_irc_received" && $0.nick == "xena" && ["BATCH", "PRIVMSG"].contains($0.command ?? "") }
        let raw = sent.compactMap(\.raw)
        #expect(raw.first?.hasPrefix("BATCH +") == true && raw.first?.hasSuffix(" draft/multiline #ml") == true, "\(raw)")
        let reference = String(raw.first?.split(separator: " ")[1].dropFirst() ?? "")
        let lines = sent.filter { $0.command == "PRIVMSG" }
        #expect(lines.count >= 4, "the long line is cut: \(raw)")
        #expect(lines.allSatisfy { $0.raw?.hasPrefix("@batch=\(reference)") == true }, "\(raw)")
        #expect(lines.prefix(3).map { $0.raw?.contains("draft/multiline-concat") == true } == [false, false, false])
        #expect(lines.dropFirst(3).allSatisfy { $0.raw?.contains("draft/multiline-concat") == true })
        #expect(lines.map { $0.params.last ?? "" }.dropFirst(2).joined() == long, "the pieces join back to the line")
        #expect(raw.last == "BATCH -\(reference)")
        // Without its tags (their own 8,191-byte budget), each line relayed with the puppet's
        // prefix (":xena!~x1a2b3c4d@", a ten-byte user, and a host of up to 63 bytes) fits 512
        // bytes with CR LF.
        let untagged = raw.map { $0.hasPrefix("@") ? String($0.split(separator: " ", maxSplits: 1)[1]) : $0 }
        #expect(untagged.allSatisfy { ":xena!~x1a2b3c4d@".utf8.count + 63 + 1 + $0.utf8.count + 2 <= 512 }, "\(untagged.map(\.utf8.count))")
    }

    @Test("bind_address with a prefix: each puppet connects from its own stable address, so ngircd's stock limit of 5 per address refuses nobody")
    func bindPrefix() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "bind")
        defer { Lab.removeUnlessKept(directory) }
        let stock = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"), options: .init(maxConnectionsIP: 5))
        defer { stock.stop() }
        let room = "bind1@\(LabServers.masterDomain)"
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("carol", port: stock.port, channel: "#bind1")
        // All of 127.0.0.0/8 is this host's on Linux: no routing to set up.
        let bridge = try ShadowbridgeProcess(
            servers: servers, directory: directory, channels: [("#bind1", "bind1")], server: "irc://127.0.0.1:\(stock.port)",
            networkSettings: "bind_address = \"127.77.0.0/16\"")
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#bind1%lab@")
        let users = (1...6).map { "bnd\($0)" }
        var hosts: [String: String] = [:]
        for user in users {
            try agent.xmppUserJoins(user, prosody: servers.prosody, room: room, nick: user)
            let join = try agent.waitFor("the puppet \(user) joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == user }
            // ":bnd1!~x1a2b3c4d@127.77.x.y JOIN :#bind1"
            hosts[user] = join.raw?.split(separator: " ").first?.split(separator: "@").last.map(String.init)
        }
        #expect(Set(hosts.values).count == users.count, "one address each: \(hosts)")
        #expect(hosts.values.allSatisfy { $0.hasPrefix("127.77.") }, "\(hosts)")
        Thread.sleep(forTimeInterval: 0.5)
        let mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "bnd6", "room": room, "body": "the sixth puppet speaks for itself"])
        try agent.expectExactlyOnce(
            users.map { On.xmppMessage(to: $0, from: "\(room)/bnd6", body: "the sixth puppet speaks for itself") }
                + [On.ircPrivmsg(to: "carol", from: "bnd6", channel: "#bind1", text: "the sixth puppet speaks for itself")],
            since: mark)
        #expect(bridge.logLines(containing: "refused a puppet connection").isEmpty)
    }

    @Test(
        "draft/relaymsg (scripted IRC peer: no Debian IRC server offers it): a refused puppet's lines go under its own nick; a FAIL sends that line as <nick> text, once",
        arguments: ["echo", "fail"])
    func relaymsgScriptedPeer(answer: String) throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "relaymsg")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        // One connection only: the bridge's own. Every puppet is refused ("too many
        // connections"), so its occupant is relayed through the bridge's connection.
        let bridge = try bridgeOnScriptedPeer(
            agent, servers: servers, directory: directory, channel: "#rl", room: "rl1",
            options: [
                "user": "rl", "names": ["carol"], "connections": 1, "relaymsg": answer, "caps": "echo-message message-tags draft/relaymsg=/ server-time",
            ])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("IRC capabilities", "draft/relaymsg")
        let room = "rl1@\(LabServers.masterDomain)"
        try agent.xmppUserJoins("rlx", prosody: servers.prosody, room: room, nick: "xena")
        try agent.waitFor("the puppet is refused", timeout: 20) { $0.kind == "scripted_irc_refused" }
        try bridge.waitForLog("refused a puppet connection")

        func sent(since mark: Int) -> [String] {
            agent.events(since: mark).filter { $0.kind == "scripted_irc_received" && $0.nick == "sbridge" && ["RELAYMSG", "PRIVMSG"].contains($0.command ?? "") }
                .compactMap(\.raw)
        }
        var mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "rlx", "room": room, "body": "hello from xmpp"])
        // The room's own copy reaches the sender once; nothing comes back from IRC.
        try agent.expectExactlyOnce([On.xmppMessage(to: "rlx", from: "\(room)/xena", body: "hello from xmpp")], since: mark)
        if answer == "echo" {
            #expect(sent(since: mark) == ["RELAYMSG #rl xena/xmpp :hello from xmpp"])
        } else {
            #expect(sent(since: mark) == ["RELAYMSG #rl xena/xmpp :hello from xmpp", "PRIVMSG #rl :<xena> hello from xmpp"])
            try bridge.waitForLog("refuses RELAYMSG")
        }
        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "rlx", "room": room, "body": "/me waves"])
        try agent.expectExactlyOnce([On.xmppMessage(to: "rlx", from: "\(room)/xena", body: "/me waves")], since: mark)
        #expect(sent(since: mark) == [answer == "echo" ? "RELAYMSG #rl xena/xmpp :\u{1}ACTION waves\u{1}" : "PRIVMSG #rl :* xena waves"])
    }

    @Test("draft/chathistory (scripted IRC peer: no Debian IRC server offers it): after a reconnection, the lines said while the bridge was away reach the room once each; the server's msgid is the XMPP id and origin-id, a msgid that is no token is used for neither")
    func chathistoryScriptedPeer() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "chathistory")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let bridge = try bridgeOnScriptedPeer(
            agent, servers: servers, directory: directory, channel: "#ch", room: "ch1",
            options: ["user": "ch", "names": ["carol"], "caps": "batch message-tags server-time draft/chathistory"])
        defer { _ = bridge.stop() }
        let room = "ch1@\(LabServers.masterDomain)"
        try agent.xmppUserJoins("chx", prosody: servers.prosody, room: room, nick: "xena")
        Thread.sleep(forTimeInterval: 0.5)

        let before = "@time=2026-11-25T10:00:00.000Z;msgid=m1 :carol!u@h PRIVMSG #ch :before the outage"
        var mark = agent.mark
        agent.scriptedIRCSend("ch", channel: "#ch", line: before)
        try agent.expectExactlyOnce([On.xmppMessage(to: "chx", from: "\(room)/carol", body: "before the outage")], since: mark)
        // The server's msgid is the line's XMPP id and origin-id (XEP-0359).
        let first = agent.events(since: mark).first { $0.kind == "message" && $0.user == "chx" && $0.body == "before the outage" }
        #expect(first?.id == "m1")
        #expect(first?.xml?.range(of: "<origin-id [^>]*\\bid=\"m1\"", options: .regularExpression) != nil, "\(first?.xml ?? "no message")")
        // A msgid that is no short printable token (a space, once its tag escape is undone) is
        // used neither as the XMPP id nor in a CHATHISTORY request.
        mark = agent.mark
        let spaced = "@time=2026-11-25T10:00:01.000Z;msgid=has\\sspace :carol!u@h PRIVMSG #ch :odd id"
        agent.scriptedIRCSend("ch", channel: "#ch", line: spaced)
        try agent.expectExactlyOnce([On.xmppMessage(to: "chx", from: "\(room)/carol", body: "odd id")], since: mark)
        let odd = agent.events(since: mark).first { $0.kind == "message" && $0.user == "chx" && $0.body == "odd id" }
        #expect(odd?.id != nil && odd?.id != "has space" && odd?.id != "has\\sspace")

        // The server's history: the line the bridge saw (it must not come twice) and two it missed.
        agent.send([
            "cmd": "scripted_irc_history", "user": "ch",
            "lines": [
                before,
                "@time=2026-11-25T10:00:05.000Z;msgid=m2 :carol!u@h PRIVMSG #ch :said while the bridge was away",
                "@time=2026-11-25T10:00:06.000Z;msgid=m3 :carol!u@h PRIVMSG #ch :\u{1}ACTION waits\u{1}",
            ],
        ])
        mark = agent.mark
        agent.send(["cmd": "scripted_irc_drop", "user": "ch"])
        try agent.waitFor("the catch-up request", since: mark, timeout: 30) { $0.kind == "scripted_irc_received" && $0.command == "CHATHISTORY" }
        let request = agent.events(since: mark).first { $0.kind == "scripted_irc_received" && $0.command == "CHATHISTORY" }
        // The last line's msgid was no token, so the request starts from its time.
        #expect(request?.raw == "CHATHISTORY AFTER #ch timestamp=2026-11-25T10:00:01.000Z 100")
        // carol is back with the bridge's connection within the grace, so the room shows no
        // presence for her; the two missed lines arrive once each, the one seen before not again.
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "chx", from: "\(room)/carol", body: "said while the bridge was away"),
                On.xmppMessage(to: "chx", from: "\(room)/carol", body: "/me waits"),
            ], since: mark, timeout: 30)
    }

    @Test("a netsplit batch (scripted IRC peer: no Debian IRC server sends one): its QUITs keep the users in the room; one back in the netjoin batch shows nothing, one not back leaves once after the grace with 333 and the batch's servers as status")
    func netsplitBatchScriptedPeer() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "nsbatch")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let bridge = try bridgeOnScriptedPeer(
            agent, servers: servers, directory: directory, channel: "#ns", room: "ns1",
            options: ["user": "ns", "names": ["carol", "dave"], "caps": "batch message-tags"], networkSettings: "netsplit_grace = 4")
        defer { _ = bridge.stop() }
        let room = "ns1@\(LabServers.masterDomain)"
        try agent.xmppUserJoins("nsx", prosody: servers.prosody, room: room, nick: "xena")
        for nick in ["carol", "dave"] {
            try agent.waitFor("xena sees \(nick)") { $0.user == "nsx" && $0.kind == "presence" && $0.from == "\(room)/\(nick)" }
        }
        try agent.waitFor("the puppet joins", timeout: 20) { $0.kind == "scripted_irc_received" && $0.command == "JOIN" && $0.nick == "xena" }
        Thread.sleep(forTimeInterval: 0.5)

        // The server hides the servers in the QUIT reasons (InspIRCd's hidesplits writes
        // `*.net *.split`); the batch names them.
        let mark = agent.mark
        for line in [
            ":scripted.test BATCH +ns1 netsplit hub.test leaf.test",
            "@batch=ns1 :carol!u@h QUIT :*.net *.split",
            "@batch=ns1 :dave!u@h QUIT :*.net *.split",
            ":scripted.test BATCH -ns1",
        ] {
            agent.scriptedIRCSend("ns", channel: "#ns", line: line)
        }
        try bridge.waitForLog("IRC netsplit", "servers=hub.test leaf.test")
        for line in [":scripted.test BATCH +nj1 netjoin hub.test leaf.test", "@batch=nj1 :dave!u@h JOIN #ns", ":scripted.test BATCH -nj1"] {
            agent.scriptedIRCSend("ns", channel: "#ns", line: line)
        }
        // carol is not back: after the grace she leaves once, with 333 and the batch's
        // servers; dave, back in the netjoin, shows nothing at all.
        try agent.expectExactlyOnce(
            [
                Expected("xena sees carol leave with 333") {
                    $0.user == "nsx" && $0.from == "\(room)/carol" && $0.type == "unavailable" && $0.codes == [333] && $0.status == "hub.test leaf.test"
                }
            ], since: mark, timeout: 20)
        #expect(!agent.events(since: mark).contains { $0.user == "nsx" && $0.kind == "presence" && $0.from == "\(room)/dave" })
        let after = agent.mark
        agent.scriptedIRCSend("ns", channel: "#ns", line: ":dave!u@h PRIVMSG #ns :back from the split")
        try agent.expectExactlyOnce([On.xmppMessage(to: "nsx", from: "\(room)/dave", body: "back from the split")], since: after)
    }

    /// A bridge on a scripted IRC peer (the agent's `scripted_irc_server` with `options`),
    /// mapping `channel` to the master room `room`, once that shadow has federated.
    private func bridgeOnScriptedPeer(
        _ agent: LabAgent, servers: LabServers, directory: URL, channel: String, room: String, options: [String: Any], networkSettings: String = ""
    ) throws -> ShadowbridgeProcess {
        agent.send(options.merging(["cmd": "scripted_irc_server"]) { $1 })
        let port = try #require(try agent.waitFor("the scripted IRC server") { $0.kind == "scripted_irc_listening" }.port)
        let bridge = try ShadowbridgeProcess(
            directory: directory, config: ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges")),
            mappings: [
                "scripted.toml": ShadowbridgeProcess.mapping(
                    network: "scripted", server: "irc://127.0.0.1:\(port)", channels: [(channel, room)], networkSettings: networkSettings)
            ])
        do {
            try bridge.waitForLog("link federated", "shadow=\(channel)%scripted@")
        } catch {
            _ = bridge.stop()
            throw error
        }
        return bridge
    }

    /// The prefix of the JOIN `watcher` saw for `nick`: (user, host).
    private func joinPrefix(_ agent: LabAgent, watcher: String, nick: String) throws -> (user: String, host: String) {
        let join = try agent.waitFor("\(nick) joins", timeout: 20) { $0.user == watcher && $0.command == "JOIN" && $0.nick == nick }
        let prefix = join.raw?.split(separator: " ").first.map { String($0.dropFirst()) } ?? ""
        let user = prefix.split(separator: "!").last?.split(separator: "@").first.map(String.init) ?? ""
        let host = prefix.split(separator: "@").last.map(String.init) ?? ""
        return (user, host)
    }

    @Test("identd: ngircd asks port 113 and shows each puppet's own user name, without ~")
    func identd() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "identd")
        defer { Lab.removeUnlessKept(directory) }
        let asking = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"), options: .init(ident: true))
        defer { asking.stop() }
        let room = "ident1@\(LabServers.masterDomain)"
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("carol", port: asking.port, channel: "#ident1")
        let bridge = try ShadowbridgeProcess(
            servers: servers, directory: directory, channels: [("#ident1", "ident1")], server: "irc://127.0.0.1:\(asking.port)",
            bridgeSettings: "identd = \"127.0.0.1:113\"")
        defer { _ = bridge.stop() }
        try bridge.waitForLog("identd listening")
        let own = try joinPrefix(agent, watcher: "carol", nick: "sbridge")
        #expect(own.user == "shadowbridge", "the bridge's own connection: \(own)")
        try bridge.waitForLog("link federated", "shadow=#ident1%lab@")
        var idents: [String] = []
        for user in ["idu1", "idu2"] {
            try agent.xmppUserJoins(user, prosody: servers.prosody, room: room, nick: user)
            let puppet = try joinPrefix(agent, watcher: "carol", nick: user)
            idents.append(puppet.user)
        }
        // `x` and eight hex digits, answered by our identd (ngircd would show `~x...` otherwise).
        #expect(idents.allSatisfy { $0.count == 9 && $0.hasPrefix("x") && $0.dropFirst().allSatisfy(\.isHexDigit) }, "\(idents)")
        #expect(Set(idents).count == 2, "one ident per XMPP user: \(idents)")
        let log = (try? String(contentsOf: asking.directory.appendingPathComponent("ngircd.log"), encoding: .utf8)) ?? ""
        #expect(idents.allSatisfy { log.contains("IDENT lookup for connection") && log.contains("\"\($0)\"") }, "ngircd's log names each ident")
    }

    @Test("WEBIRC: ngircd shows each puppet under its own host name below the bridge's domain")
    func webirc() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "webirc")
        defer { Lab.removeUnlessKept(directory) }
        let trusting = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"), options: .init(lookUpClients: true, webircPassword: "lab-webirc"))
        defer { trusting.stop() }
        let room = "webirc1@\(LabServers.masterDomain)"
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("carol", port: trusting.port, channel: "#webirc1")
        let secret = directory.appendingPathComponent("webirc.secret")
        try "lab-webirc\n".write(to: secret, atomically: true, encoding: .utf8)
        let bridge = try ShadowbridgeProcess(
            servers: servers, directory: directory, channels: [("#webirc1", "webirc1")], server: "irc://127.0.0.1:\(trusting.port)",
            networkSettings: "webirc_password_file = \"\(secret.path)\"")
        defer { _ = bridge.stop() }
        let own = try joinPrefix(agent, watcher: "carol", nick: "sbridge")
        #expect(own.host == LabServers.bridgeDomain, "the bridge's own connection: \(own)")
        try bridge.waitForLog("link federated", "shadow=#webirc1%lab@")
        var hosts: [String] = []
        for user in ["wbu1", "wbu2"] {
            try agent.xmppUserJoins(user, prosody: servers.prosody, room: room, nick: user)
            hosts.append(try joinPrefix(agent, watcher: "carol", nick: user).host)
        }
        let suffix = "." + LabServers.bridgeDomain
        #expect(hosts.allSatisfy { $0.hasSuffix(suffix) && $0.dropLast(suffix.count).count == 8 }, "\(hosts)")
        #expect(Set(hosts).count == 2, "one host per XMPP user: \(hosts)")
        // The puppet's line still arrives once, from the WEBIRC host.
        Thread.sleep(forTimeInterval: 0.5)
        let mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "wbu1", "room": room, "body": "through the trusted gateway"])
        try agent.expectExactlyOnce(
            ["wbu1", "wbu2"].map { On.xmppMessage(to: $0, from: "\(room)/wbu1", body: "through the trusted gateway") }
                + [On.ircPrivmsg(to: "carol", from: "wbu1", channel: "#webirc1", text: "through the trusted gateway")],
            since: mark)
        #expect(bridge.logLines(containing: "lab-webirc").isEmpty, "the password is never logged")
    }
}
