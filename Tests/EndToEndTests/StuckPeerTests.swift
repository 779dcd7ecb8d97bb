import Foundation
import Lab
import Testing

/// Issue 9's slow peers: an IRC server and an XMPP client that stop reading.
extension IRCConnectionTests {
    @Test("a stuck IRC server and a stuck XMPP client (both SIGSTOP for 6 s): the room goes on meanwhile, and afterwards each gets every line once, in order, with nobody leaving")
    func stuckPeers() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "stuck")
        defer { Lab.removeUnlessKept(directory) }
        // Its own ngircd: freezing it must not disturb the suite's other scenarios.
        let ngircd = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"))
        defer { ngircd.stop() }
        let (channel, room) = ("#stuck1", "stuck1@\(LabServers.masterDomain)")
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        // The stuck client lives in its own agent process, so freezing it freezes nobody else.
        let stuckDirectory = directory.appendingPathComponent("stuck-agent")
        try FileManager.default.createDirectory(at: stuckDirectory, withIntermediateDirectories: true)
        let stuckAgent = try LabAgent(directory: stuckDirectory)
        defer { stuckAgent.stop() }
        try agent.ircUserJoins("carol", port: ngircd.port, channel: channel)
        let bridge = try ShadowbridgeProcess(servers: servers, directory: directory, channels: [(channel, "stuck1")], server: "irc://127.0.0.1:\(ngircd.port)")
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=\(channel)%lab@")
        try agent.xmppUserJoins("skx", prosody: servers.prosody, room: room, nick: "xena")
        try stuckAgent.xmppUserJoins("sky", prosody: servers.prosody, room: room, nick: "yann")
        try agent.waitFor("xena's puppet joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xena" }
        try stuckAgent.waitFor("yann sees xena") { $0.user == "sky" && $0.kind == "presence" && $0.from == "\(room)/xena" }
        Thread.sleep(forTimeInterval: 1)

        let mark = agent.mark, stuckMark = stuckAgent.mark
        // Long lines, so the stuck client's socket fills sooner; still one IRC line each.
        let fromXMPP = NumberedStream.xmpp("sx-" + String(repeating: "x", count: 150) + "-", count: 20, interval: 0.2, agent: agent, user: "skx", room: room)
        let fromIRC = NumberedStream.irc("si-", count: 10, interval: 0.3, agent: agent, user: "carol", channel: channel)
        Thread.sleep(forTimeInterval: 0.5)
        kill(ngircd.pid, SIGSTOP)
        kill(stuckAgent.pid, SIGSTOP)
        defer {
            kill(ngircd.pid, SIGCONT)
            kill(stuckAgent.pid, SIGCONT)
        }
        Thread.sleep(forTimeInterval: 6)
        // Before the thaw (her 20 lines took 4 s): the room went on for xena, who heard each of
        // her lines reflected while the IRC server and yann were stuck.
        let reflected = fromXMPP.received(atXMPP: "skx", from: "\(room)/xena", in: agent.events(since: mark))
        #expect(reflected == Array(1...20), "\(reflected)")
        kill(ngircd.pid, SIGCONT)
        kill(stuckAgent.pid, SIGCONT)
        try fromXMPP.finish()
        try fromIRC.finish()
        agent.waitForQuiet(seconds: 3, timeout: 60)
        stuckAgent.waitForQuiet(seconds: 1, timeout: 30)
        let events = agent.events(since: mark), stuckEvents = stuckAgent.events(since: stuckMark)
        let xmppSent = fromXMPP.sent(events: events)
        let ircSent = fromIRC.sent(events: events)
        let accounts = [
            LineAccount(stream: "XMPP xena -> IRC carol through a stuck ngircd", sent: xmppSent, received: fromXMPP.received(atIRC: "carol", from: "xena", in: events)),
            LineAccount(stream: "XMPP xena -> XMPP yann, stuck", sent: xmppSent, received: fromXMPP.received(atXMPP: "sky", from: "\(room)/xena", in: stuckEvents)),
            LineAccount(stream: "IRC carol (her server stuck) -> XMPP xena", sent: ircSent, received: fromIRC.received(atXMPP: "skx", from: "\(room)/carol", in: events)),
            LineAccount(stream: "IRC carol (her server stuck) -> XMPP yann, stuck", sent: ircSent, received: fromIRC.received(atXMPP: "sky", from: "\(room)/carol", in: stuckEvents)),
        ]
        for account in accounts { account.check() }
        #expect(accounts.allSatisfy { $0.deliveredOnceInOrder.count == ($0.stream.hasPrefix("XMPP") ? 20 : 10) }, "\(accounts)")
        // Nobody left or joined: a stuck peer is not a lost one.
        let roster = (events + stuckEvents).filter { ($0.kind == "presence" && $0.from?.hasPrefix(room) == true) || ["JOIN", "PART", "QUIT"].contains($0.command ?? "") }
        #expect(roster.isEmpty, "\(roster)")
        #expect(bridge.logLines(containing: "IRC connection lost").isEmpty)
    }
}
