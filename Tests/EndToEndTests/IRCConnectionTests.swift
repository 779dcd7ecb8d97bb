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
        try servers.prosody.register(user: "paula", password: "pw-paula")
        let channel = "#paste1"
        let room = "paste1@\(LabServers.masterDomain)"
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        agent.send(["cmd": "irc_connect", "user": "rita", "port": servers.ngircd.port, "nick": "rita"])
        try agent.waitFor("rita registered") { $0.user == "rita" && $0.command == "001" }
        agent.send(["cmd": "irc_send", "user": "rita", "line": "JOIN \(channel)"])
        try agent.waitFor("rita joined") { $0.user == "rita" && $0.command == "JOIN" && $0.nick == "rita" }

        let bridge = try ShadowbridgeProcess(servers: servers, directory: directory, channels: [(channel, "paste1")])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=\(channel)%lab@")
        // ngircd offers multi-prefix through CAP LS 302; the bridge takes it.
        try bridge.waitForLog("IRC capabilities", "multi-prefix")

        agent.send(["cmd": "xmpp_connect", "user": "paula", "jid": "paula@\(servers.prosody.domain)", "password": "pw-paula", "port": servers.prosody.c2sPort])
        try agent.waitFor("paula online") { $0.user == "paula" && $0.kind == "online" }
        agent.send(["cmd": "xmpp_join", "user": "paula", "room": room, "nick": "paula"])
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
        let reflected = agent.events(since: mark).filter { $0.user == "paula" && $0.kind == "message" && $0.from == "\(room)/paula" }
        #expect(reflected.count == 1 && reflected.first?.body == lines.joined(separator: "\n"))
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
        agent.send(["cmd": "irc_connect", "user": "carol", "port": stock.port, "nick": "carol"])
        try agent.waitFor("carol registered") { $0.user == "carol" && $0.command == "001" }
        agent.send(["cmd": "irc_send", "user": "carol", "line": "JOIN #limit1"])
        try agent.waitFor("carol joined") { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "carol" }
        let bridge = try ShadowbridgeProcess(
            directory: directory, config: ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges")),
            mappings: ["stock.toml": ShadowbridgeProcess.mapping(network: "stock", ircPort: stock.port, channels: [("#limit1", "limit1")])])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#limit1%stock@")

        // carol + the bridge + three puppets = 5 connections; the fourth XMPP user is one too many.
        let users = ["lim1", "lim2", "lim3", "lim4"]
        for (index, user) in users.enumerated() {
            try servers.prosody.register(user: user, password: "pw-\(user)")
            agent.send(["cmd": "xmpp_connect", "user": user, "jid": "\(user)@\(servers.prosody.domain)", "password": "pw-\(user)", "port": servers.prosody.c2sPort])
            try agent.waitFor("\(user) online") { $0.user == user && $0.kind == "online" }
            agent.send(["cmd": "xmpp_join", "user": user, "room": room, "nick": user])
            try agent.waitFor("\(user) joined") { $0.user == user && $0.kind == "presence" && $0.codes.contains(110) }
            if index < 3 {
                try agent.waitFor("the puppet \(user) joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == user }
            }
        }
        try bridge.waitForLog("refused a puppet connection", "network=stock")
        Thread.sleep(forTimeInterval: 1)

        var mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "lim4", "room": room, "body": "can you hear me?"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "lim1", from: "\(room)/lim4", body: "can you hear me?"),
                On.xmppMessage(to: "lim2", from: "\(room)/lim4", body: "can you hear me?"),
                On.xmppMessage(to: "lim3", from: "\(room)/lim4", body: "can you hear me?"),
                On.xmppMessage(to: "lim4", from: "\(room)/lim4", body: "can you hear me?"),
                On.ircPrivmsg(to: "carol", from: "sbridge", channel: "#limit1", text: "<lim4> can you hear me?"),
            ], since: mark)
        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "lim1", "room": room, "body": "and me, with a puppet"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "lim1", from: "\(room)/lim1", body: "and me, with a puppet"),
                On.xmppMessage(to: "lim2", from: "\(room)/lim1", body: "and me, with a puppet"),
                On.xmppMessage(to: "lim3", from: "\(room)/lim1", body: "and me, with a puppet"),
                On.xmppMessage(to: "lim4", from: "\(room)/lim1", body: "and me, with a puppet"),
                On.ircPrivmsg(to: "carol", from: "lim1", channel: "#limit1", text: "and me, with a puppet"),
            ], since: mark)
        #expect(bridge.logLines(containing: "refused a puppet connection").count == 1, "the admin is told once")
    }
}
