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
}
