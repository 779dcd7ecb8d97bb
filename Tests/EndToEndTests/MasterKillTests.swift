import Foundation
import Lab
import Testing

/// Issue 9: the master killed with SIGKILL and started again, with the bridge in a process of
/// its own.
extension BridgeRestartTests {
    @Test("the master killed with SIGKILL and started again while lines flow both ways: the bridge re-federates with the new epoch; an XMPP line is delivered once or refused to its sender; an IRC line reaches the room once (live or in the archive), none twice; only lines in flight at the kill may be lost")
    func masterKilled() throws {
        let lab = try RestartLab(prefix: "master-kill")
        defer { lab.close() }
        let (servers, agent) = (lab.servers, lab.agent)
        let channel = "#mkill1", room = "mkill1@\(LabServers.masterDomain)", shadow = "\(channel)%lab@\(LabServers.bridgeDomain)"
        let bridge = try lab.startBridged(
            channel: channel, room: "mkill1", ircUsers: ["carol"], database: lab.directory.appendingPathComponent("bridge-state/bridge.sqlite"),
            xmpp: ("mkalice", "alice"), puppet: "alice")
        defer { _ = bridge.stop() }
        Thread.sleep(forTimeInterval: 1)

        let mark = agent.mark
        let fromXMPP = NumberedStream.xmpp("mkx-", count: 24, interval: 0.25, agent: agent, user: "mkalice", room: room)
        let fromIRC = NumberedStream.irc("mki-", count: 24, interval: 0.25, agent: agent, user: "carol", channel: channel)
        Thread.sleep(forTimeInterval: 1.5)
        let killedAt = Date()
        lab.master.process.signal(SIGKILL)
        #expect(lab.master.process.waitForExit(timeout: 10))
        Thread.sleep(forTimeInterval: 1)
        lab.master = try LinkTests.startMaster(servers, directory: lab.masterDirectory, splitGrace: 30)
        // The new master knows nothing of alice's session (a new epoch): like a client whose
        // self-ping fails (XEP-0410), she joins again.
        try agent.xmppJoin("mkalice", room: room, nick: "alice")
        try lab.master.waitForLog("link federated", "shadow=\(shadow)", timeout: 30)
        try fromXMPP.finish()
        try fromIRC.finish()
        agent.waitForQuiet(seconds: 3, timeout: 60)
        let events = agent.events(since: mark)

        // A line in flight at the kill: sent within half a second of it.
        let inFlight = killedAt.addingTimeInterval(-0.5)...killedAt.addingTimeInterval(0.5)
        let refusedToAlice: (AgentEvent) -> Int? = { event in
            event.user == "mkalice" && event.kind == "message" && event.type == "error" ? fromXMPP.number(event.body) ?? fromXMPP.number(event.id) : nil
        }
        let xmppAccount = LineAccount(
            stream: "XMPP alice -> IRC carol across a master SIGKILL",
            sent: fromXMPP.sent(events: events, refusal: refusedToAlice, inFlight: inFlight),
            received: fromXMPP.received(atIRC: "carol", from: "alice", in: events))
        xmppAccount.check()

        // IRC to XMPP: what alice heard live, then what the archive holds that she did not
        // (said while she was not in the new room yet).
        let live = fromIRC.received(atXMPP: "mkalice", from: "\(room)/carol", in: events)
        let archive = try agent.mam("mkalice", room: room, max: 50)
        let archived = archive.params.compactMap(fromIRC.number)
        #expect(Set(archived).count == archived.count, "the archive holds each IRC line at most once: \(archived)")
        let ircAccount = LineAccount(
            stream: "IRC carol -> the room across a master SIGKILL (live to alice, or in the archive)",
            sent: fromIRC.sent(events: events, inFlight: inFlight),
            received: live + archived.filter { !live.contains($0) })
        ircAccount.check()
        #expect(xmppAccount.deliveredOnceInOrder.count + xmppAccount.refused.count + xmppAccount.lostInFlight.count == 24, "\(xmppAccount)")
        #expect(ircAccount.lostInFlight.count <= 2, "\(ircAccount)")
        #expect(!lab.master.logLines(containing: "link federated", "shadow=\(shadow)").isEmpty)

        // Afterwards: one line each way, once.
        let after = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :after the kill"])
        agent.send(["cmd": "xmpp_say", "user": "mkalice", "room": room, "body": "back too"])
        try agent.waitFor("the lines cross", since: after, timeout: 20) { $0.user == "carol" && $0.params.last == "back too" }
        try agent.waitFor("the lines cross", since: after, timeout: 20) { $0.user == "mkalice" && $0.body == "after the kill" }
        agent.waitForQuiet(seconds: 1, timeout: 20)
        let afterEvents = agent.events(since: after)
        #expect(afterEvents.filter { $0.user == "carol" && $0.params.last == "back too" }.count == 1)
        #expect(afterEvents.filter { $0.user == "mkalice" && $0.body == "after the kill" }.count == 1)
    }
}
