import Foundation
import Lab
import Testing

/// Issue 9's rate limits, end to end: a flooding XMPP client and a flooding IRC user against a
/// master whose limits are set low, so a few lines are enough.
extension FaultTests {
    @Test("floods: a client beyond occupant_burst gets a wait error for each refused line, which reaches nobody; an IRC user beyond shadow_burst hears it once by NOTICE; everyone else is unaffected and every accepted line crosses once, in order")
    func floods() throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(
            servers: servers, name: "flood1", ircUsers: ["carol"], xmppUsers: [("flalice", "alice"), ("flbob", "bob")],
            masterSettings: "occupant_rate = 0.5\noccupant_burst = 5\nshadow_rate = 0.2\nshadow_burst = 3")
        defer { r.close() }
        let agent = r.agent

        // alice sends 20 lines at once. Her join took one token: about four pass.
        var mark = agent.mark
        let fromAlice = NumberedStream.xmpp("fa-", count: 20, interval: 0.02, agent: agent, user: "flalice", room: r.room)
        try fromAlice.finish()
        // bob, meanwhile, is not limited by alice's rate.
        agent.send(["cmd": "xmpp_say", "user": "flbob", "room": r.room, "body": "bob is fine"])
        try agent.waitFor("bob's line reaches carol", since: mark, timeout: 20) { $0.user == "carol" && $0.command == "PRIVMSG" && $0.params.last == "bob is fine" }
        agent.waitForQuiet(seconds: 2, timeout: 30)
        var events = agent.events(since: mark)
        let refusedToAlice = events.filter { $0.user == "flalice" && $0.kind == "message" && $0.type == "error" }
        #expect(!refusedToAlice.isEmpty && refusedToAlice.allSatisfy { $0.xml?.contains("policy-violation") == true && $0.xml?.contains("type=\"wait\"") == true }, "\(refusedToAlice)")
        let sentByAlice = fromAlice.sent(events: events, refusal: { event in
            event.user == "flalice" && event.kind == "message" && event.type == "error" ? fromAlice.number(event.body) : nil
        })
        let atBob = LineAccount(stream: "alice's flood at bob", sent: sentByAlice, received: fromAlice.received(atXMPP: "flbob", from: r.occupant("alice"), in: events))
        let atCarol = LineAccount(stream: "alice's flood at carol (IRC)", sent: sentByAlice, received: fromAlice.received(atIRC: "carol", from: "alice", in: events))
        let echoed = LineAccount(stream: "alice's flood reflected to alice", sent: sentByAlice, received: fromAlice.received(atXMPP: "flalice", from: r.occupant("alice"), in: events))
        for account in [atBob, atCarol, echoed] { account.check() }
        #expect((3...8).contains(atBob.deliveredOnceInOrder.count), "\(atBob)")
        #expect(atBob.deliveredOnceInOrder.count + atBob.refused.count == 20, "every line either crossed or was refused to alice: \(atBob)")
        #expect(atCarol.deliveredOnceInOrder == atBob.deliveredOnceInOrder && echoed.deliveredOnceInOrder == atBob.deliveredOnceInOrder)
        #expect(events.filter { $0.user == "flbob" && $0.kind == "message" && $0.body == "bob is fine" }.count == 1)
        #expect(events.filter { $0.user == "flalice" && $0.kind == "message" && $0.body == "bob is fine" }.count == 1)

        // carol sends 10 lines as fast as ngircd takes them; the bridge may submit 3 at once
        // and one every 5 s after.
        mark = agent.mark
        let fromCarol = NumberedStream.irc("fc-", count: 10, interval: 0.05, agent: agent, user: "carol", channel: r.channel)
        try fromCarol.finish()
        agent.waitForQuiet(seconds: 3, timeout: 40)
        events = agent.events(since: mark)
        let refusedLog = r.bridge.logLines(containing: "the room refused a line from an IRC user", "nick=carol")
        let sentByCarol = fromCarol.sent(events: events)
        let carolAtAlice = LineAccount(stream: "carol's flood at alice", sent: sentByCarol, received: fromCarol.received(atXMPP: "flalice", from: r.occupant("carol"), in: events))
        let carolAtBob = fromCarol.received(atXMPP: "flbob", from: r.occupant("carol"), in: events)
        // The bridge logs each refused line but not its text: the refused ones are counted.
        print("line account: carol's flood at alice: \(carolAtAlice.deliveredOnceInOrder.count) delivered once in order, \(carolAtAlice.duplicated.count) doubled, "
            + "\(carolAtAlice.outOfOrder.count) out of order, \(refusedLog.count) refused by the room (bridge log), \(10 - carolAtAlice.deliveredOnceInOrder.count - refusedLog.count) unaccounted")
        #expect(carolAtAlice.duplicated.isEmpty && carolAtAlice.outOfOrder.isEmpty)
        #expect(carolAtBob == carolAtAlice.deliveredOnceInOrder)
        #expect(carolAtAlice.deliveredOnceInOrder.count >= 3 && refusedLog.count >= 1)
        #expect(carolAtAlice.deliveredOnceInOrder.count + refusedLog.count == 10, "every line either crossed or was refused: \(carolAtAlice)")
        // One NOTICE for the whole flood, quoting the first line refused.
        let firstRefused = (1...10).first { !carolAtAlice.deliveredOnceInOrder.contains($0) }
        let notices = events.filter { $0.user == "carol" && $0.command == "NOTICE" && $0.nick == "sbridge" }
        // (A second one only if ngircd spread the refused lines over more than 10 s.)
        #expect((1...2).contains(notices.count) && notices.first?.params.last?.contains("too fast") == true, "\(notices)")
        #expect(notices.first?.params.last?.hasSuffix("\"fc-\(firstRefused ?? 0)\"") == true, "\(notices)")
        // Nothing else: no presence, no line from anyone else, nothing echoed back to IRC.
        let other = events.filter { $0.isTraffic && !($0.kind == "message" && fromCarol.number($0.body) != nil) && !($0.command == "NOTICE" && $0.user == "carol") }
        #expect(other.isEmpty, "\(other)")
    }
}
