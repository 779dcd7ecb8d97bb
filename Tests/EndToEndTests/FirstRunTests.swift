import Foundation
import Lab
import Testing

/// Issue 3: the demo, clear configuration errors from the command line, and malformed input
/// that never takes the process down.
@Suite("First run: the demo, configuration errors and malformed input", .serialized, .labServers)
struct FirstRunTests {
    @Test("shadowbridge demo runs the whole system: an IRC line and an XMPP line cross once each, and Ctrl-C stops everything")
    func demo() throws {
        let directory = try Lab.makeTemporaryDirectory(prefix: "demo-test")
        defer { Lab.removeUnlessKept(directory) }
        let output = directory.appendingPathComponent("demo.out")
        let demo = try ManagedProcess(
            name: "demo", executable: try ShadowbridgeProcess.binary(), arguments: ["demo"], logFile: output)
        defer { demo.stop() }
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while !text.contains("Servers: prosody pid") && Date() < deadline && demo.isRunning {
            Thread.sleep(forTimeInterval: 0.1)
            text = demo.log()
        }
        try #require(text.contains("Shadowbridge demo is running"), "demo output: \(text)")
        let ircPort = try #require(Int(Self.capture(#"-p (\d+) -n"#, in: text)), "\(text)")
        let c2sPort = try #require(Int(Self.capture(#"port (\d+), plain connection"#, in: text)), "\(text)")
        let prosodyPID = try #require(Int32(Self.capture(#"prosody pid (\d+)"#, in: text)))
        let ngircdPID = try #require(Int32(Self.capture(#"ngircd pid (\d+)"#, in: text)))
        let demoDirectory = Self.capture(#"directory (\S+)"#, in: text)
        #expect(text.contains("alice@localhost password alice-demo") && text.contains("demo@rooms.localhost") && text.contains("/join #demo"))

        // Follow the printed instructions: one IRC user, one XMPP user.
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        agent.send(["cmd": "irc_connect", "user": "ivy", "port": ircPort, "nick": "ivy"])
        try agent.waitFor("ivy registered") { $0.user == "ivy" && $0.command == "001" }
        agent.send(["cmd": "irc_send", "user": "ivy", "line": "JOIN #demo"])
        agent.send(["cmd": "xmpp_connect", "user": "alice", "jid": "alice@localhost", "password": "alice-demo", "port": c2sPort])
        try agent.waitFor("alice online") { $0.user == "alice" && $0.kind == "online" }
        agent.send(["cmd": "xmpp_join", "user": "alice", "room": "demo@rooms.localhost", "nick": "alice"])
        try agent.waitFor("alice sees ivy in the room") { $0.user == "alice" && $0.kind == "presence" && $0.from == "demo@rooms.localhost/ivy" }
        try agent.waitFor("the puppet alice joins #demo", timeout: 20) { $0.user == "ivy" && $0.command == "JOIN" && $0.nick == "alice" }
        Thread.sleep(forTimeInterval: 0.5)

        var mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "ivy", "line": "PRIVMSG #demo :hello from irssi"])
        try agent.expectExactlyOnce([On.xmppMessage(to: "alice", from: "demo@rooms.localhost/ivy", body: "hello from irssi")], since: mark)
        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "alice", "room": "demo@rooms.localhost", "body": "hello from XMPP"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "alice", from: "demo@rooms.localhost/alice", body: "hello from XMPP"),
                On.ircPrivmsg(to: "ivy", from: "alice", channel: "#demo", text: "hello from XMPP"),
            ], since: mark)

        // Ctrl-C: a clean exit, the servers gone, the directory removed.
        demo.signal(SIGINT)
        #expect(demo.waitForExit(timeout: 15))
        #expect(demo.exitStatus == 0)
        #expect(demo.log().contains("Demo stopped"))
        #expect(kill(prosodyPID, 0) == -1, "prosody still running")
        #expect(kill(ngircdPID, 0) == -1, "ngircd still running")
        #expect(!FileManager.default.fileExists(atPath: demoDirectory), "\(demoDirectory) left behind")
    }

    @Test("configuration errors from the command line: file, line and key, a non-zero exit, no stack trace")
    func configurationErrors() throws {
        let directory = try Lab.makeTemporaryDirectory(prefix: "config-errors")
        defer { Lab.removeUnlessKept(directory) }
        let bridges = directory.appendingPathComponent("bridges")
        try FileManager.default.createDirectory(at: bridges, withIntermediateDirectories: true)
        let good = ShadowbridgeProcess.config(xmppPort: 5347, mappings: bridges)
        let mapping = ShadowbridgeProcess.mapping(network: "net", ircPort: 6667, channels: [("#ops", "ops")])
        // The line after `[log]`, where the misspelt key goes.
        let levleLine = good.split(separator: "\n", omittingEmptySubsequences: false).firstIndex(of: "[log]")! + 2
        let cases: [(config: String, mapping: String, file: String, expected: String)] = [
            (good.replacingOccurrences(of: "port = 5347", with: "port = = 5347"), mapping, "shadowbridge.toml", ":3:"),
            (good.replacingOccurrences(of: "[log]", with: "[log]\nlevle = \"debug\""), mapping, "shadowbridge.toml", ":\(levleLine): log.levle: unknown key"),
            (good, mapping.replacingOccurrences(of: "ops@\(LabServers.masterDomain)", with: "ops@conference.elsewhere.org"), "bridges/net.toml", "channel[0].room: ops@conference.elsewhere.org is not on the master's domain"),
            (good, mapping.replacingOccurrences(of: "nick = \"sbridge\"\n", with: ""), "bridges/net.toml", "network.nick: is required"),
        ]
        for item in cases {
            try item.config.write(to: directory.appendingPathComponent("shadowbridge.toml"), atomically: true, encoding: .utf8)
            try item.mapping.write(to: bridges.appendingPathComponent("net.toml"), atomically: true, encoding: .utf8)
            for command in ["check", "run"] {
                let log = directory.appendingPathComponent("\(command).log")
                let process = try ManagedProcess(
                    name: command, executable: try ShadowbridgeProcess.binary(),
                    arguments: [command, "--config", directory.appendingPathComponent("shadowbridge.toml").path], logFile: log)
                #expect(process.waitForExit(timeout: 10))
                let output = process.log()
                #expect(process.exitStatus != 0, "\(command) accepted a bad configuration: \(output)")
                #expect(output.contains(directory.appendingPathComponent(item.file).path + (item.expected.hasPrefix(":") ? item.expected : "")), "\(command): \(output)")
                #expect(output.contains(item.expected), "\(command): \(output)")
                #expect(!output.contains("Fatal error") && !output.contains("Stack dump") && output.split(separator: "\n").count <= 2, "\(command): \(output)")
            }
        }
        // And a good configuration is accepted, with its mapping table.
        try good.write(to: directory.appendingPathComponent("shadowbridge.toml"), atomically: true, encoding: .utf8)
        try mapping.write(to: bridges.appendingPathComponent("net.toml"), atomically: true, encoding: .utf8)
        let check = try ManagedProcess(
            name: "check", executable: try ShadowbridgeProcess.binary(),
            arguments: ["check", "--config", directory.appendingPathComponent("shadowbridge.toml").path], logFile: directory.appendingPathComponent("ok.log"))
        #expect(check.waitForExit(timeout: 10) && check.exitStatus == 0, "\(check.log())")
        let rows = check.log().split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
        #expect(rows.contains { $0 == ["NETWORK", "IRC", "CHANNEL", "XMPP", "ROOM", "FILE"] }, "\(check.log())")
        #expect(rows.contains { $0 == ["net", "#ops", "ops@\(LabServers.masterDomain)", "net.toml:7"] }, "\(check.log())")
        #expect(check.log().contains("1 mapping on 1 network"))
    }

    @Test("malformed XML from the server (scripted XMPP peer): a stream error, a reconnect with backoff, and service afterwards")
    func malformedXML() throws {
        let directory = try Lab.makeTemporaryDirectory(prefix: "malformed-xml")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        agent.send(["cmd": "scripted_xmpp_server", "user": "xs"])
        let port = try #require(try agent.waitFor("the scripted XMPP server") { $0.kind == "scripted_xmpp_listening" }.port)
        let bridge = try ShadowbridgeProcess(
            directory: directory, config: ShadowbridgeProcess.config(xmppPort: port, mappings: directory.appendingPathComponent("bridges"), bridge: false),
            mappings: [:])
        defer { _ = bridge.stop() }
        try agent.waitFor("the master's handshake") { $0.kind == "scripted_xmpp_handshake" && $0.count == 1 }
        agent.send(["cmd": "scripted_xmpp_send", "user": "xs", "data": "<message><body>broken</bdy></message>"])
        try agent.waitFor("a not-well-formed stream error") { $0.kind == "scripted_xmpp_received" && $0.count == 1 && ($0.data ?? "").contains("<not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>") }
        try agent.waitFor("the connection closed") { $0.kind == "scripted_xmpp_closed" && $0.count == 1 }
        try agent.waitFor("a reconnect and a new handshake", timeout: 10) { $0.kind == "scripted_xmpp_handshake" && $0.count == 2 }
        // Still serving: a disco#info query is answered on the new stream.
        agent.send(["cmd": "scripted_xmpp_send", "user": "xs", "data": "<iq type='get' id='after1' from='someone@xmpp.test/x' to='\(LabServers.masterDomain)'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"])
        try agent.waitFor("the disco#info answer") { $0.kind == "scripted_xmpp_received" && $0.count == 2 && ($0.data ?? "").contains("id='after1'") && ($0.data ?? "").contains("type='result'") }
        #expect(bridge.process.isRunning)
        #expect(bridge.logLines(containing: "malformed stream from the XMPP server").count == 1)
    }

    @Test("an over-long IRC line (scripted IRC peer) is dropped with a log line; the connection and the next line live on")
    func overlongIRCLine() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "overlong")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        agent.send(["cmd": "scripted_irc_server", "user": "is", "names": ["carol"]])
        let port = try #require(try agent.waitFor("the scripted IRC server") { $0.kind == "scripted_irc_listening" }.port)
        let bridge = try ShadowbridgeProcess(
            directory: directory,
            config: ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges")),
            mappings: ["scripted.toml": ShadowbridgeProcess.mapping(network: "scripted", ircPort: port, channels: [("#long", "long1")])])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#long%scripted@")
        let room = "long1@\(LabServers.masterDomain)"
        try agent.xmppUserJoins("olive", prosody: servers.prosody, room: room, nick: "olive")
        try agent.waitFor("olive sees carol") { $0.user == "olive" && $0.kind == "presence" && $0.from == "\(room)/carol" }
        try agent.waitFor("the puppet joins", timeout: 20) { $0.kind == "scripted_irc_received" && $0.command == "JOIN" && $0.nick == "olive" }
        Thread.sleep(forTimeInterval: 0.5)

        let mark = agent.mark
        let long = Array(":carol!c@h PRIVMSG #long :".utf8) + Array(repeating: UInt8(ascii: "x"), count: 20_000) + [0x0D, 0x0A]
        let after = Array(":carol!c@h PRIVMSG #long :after the long line\r\n".utf8)
        agent.send(["cmd": "scripted_irc_send", "user": "is", "channel": "#long", "hex": (long + after).map { String(format: "%02x", $0) }.joined()])
        try agent.expectExactlyOnce([On.xmppMessage(to: "olive", from: "\(room)/carol", body: "after the long line")], since: mark)
        #expect(bridge.logLines(containing: "dropped an over-long IRC line").count >= 1)
        #expect(bridge.process.isRunning)
    }

    @Test("unreachable servers are retried with backoff, each attempt logged once, and the process stays up")
    func unreachableServers() throws {
        let directory = try Lab.makeTemporaryDirectory(prefix: "unreachable")
        defer { Lab.removeUnlessKept(directory) }
        let closedXMPP = try Lab.freePort()
        let closedIRC = try Lab.freePort()
        let bridge = try ShadowbridgeProcess(
            directory: directory, config: ShadowbridgeProcess.config(xmppPort: closedXMPP, mappings: directory.appendingPathComponent("bridges")),
            mappings: ["down.toml": ShadowbridgeProcess.mapping(network: "down", ircPort: closedIRC, channels: [("#x", "x")])])
        Thread.sleep(forTimeInterval: 4)
        #expect(bridge.process.isRunning)
        for (what, marker) in [("IRC", "cannot connect to the IRC server"), ("master component", "domain=\(LabServers.masterDomain)"), ("bridge component", "domain=\(LabServers.bridgeDomain)")] {
            let lines = bridge.logLines(containing: marker).filter { $0.contains("cannot connect") }
            let attempts = lines.compactMap { line in line.split(separator: " ").first { $0.hasPrefix("attempt=") }.flatMap { Int($0.dropFirst(8)) } }
            #expect(attempts.count >= 3, "\(what): \(lines)")
            #expect(attempts == Array(1...max(1, attempts.count)), "\(what): each attempt once, in order: \(attempts)")
            // Backoff: with 0.5 s doubling, four seconds hold at most five attempts, not dozens.
            #expect(attempts.count <= 5, "\(what): \(attempts.count) attempts in 4 s")
        }
        #expect(bridge.stop() == 0)
    }

    static func capture(_ pattern: String, in text: String) -> String {
        guard let regex = try? Regex(pattern), let match = text.firstMatch(of: regex), match.count > 1, let value = match[1].substring else { return "" }
        return String(value)
    }
}
