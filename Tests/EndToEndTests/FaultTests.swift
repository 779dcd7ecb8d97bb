import Foundation
import Lab
import Testing

/// Issue 9: the XMPP server restarts under a bridged room (its own suite, so the restart
/// disturbs no other scenario's servers), and senders flood the room (FloodTests.swift).
@Suite("Faults: the XMPP server restarts, senders flood", .serialized, .labServers)
struct FaultTests {
    @Test(
        "Prosody restarted (cleanly, or killed so nobody hears its clients leave): components reconnect, the shadow re-federates, a ghost leaves with 333, the client rejoins, lines cross once",
        arguments: [false, true])
    func prosodyRestart(crash: Bool) throws {
        let servers = try LabServers.require()
        let name = crash ? "fault2" : "fault1"
        let r = try BridgedRoom(servers: servers, name: name, ircUsers: ["carol"], xmppUsers: [("fx\(name)", "xia")])
        let user = "fx\(name)"
        defer { r.close() }
        let agent = r.agent
        var mark = agent.mark
        // Numbered lines from both sides all through the fault, accounted for at the end.
        let fromIRC = NumberedStream.irc("irc\(name)-", count: 30, interval: 0.2, agent: agent, user: "carol", channel: r.channel)
        let fromXMPP = NumberedStream.xmpp("xmpp\(name)-", count: 30, interval: 0.2, agent: agent, user: user, room: r.room)
        Thread.sleep(forTimeInterval: 0.5)
        try servers.prosody.restart(crash: crash)
        try agent.waitFor("xia is cut off", since: mark) { $0.user == user && $0.kind == "disconnected" }
        if crash {
            // Nobody told the master xia left: after the reconnect it asks, and removes the ghost.
            try r.bridge.waitForLog("stream reconnected; checking local occupants", "occupants=1", timeout: 30)
        }
        try agent.waitFor("xia's puppet leaves IRC once her ghost is removed", since: mark, timeout: 30) {
            $0.user == "carol" && $0.command == "QUIT" && $0.nick == "xia"
        }
        // Both components come back with backoff.
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, r.bridge.logLines(containing: "component connected").count < 4 { Thread.sleep(forTimeInterval: 0.1) }
        Thread.sleep(forTimeInterval: 1)  // the shadow re-federates (quietly: nothing to see on either side)
        let reconnects = r.bridge.logLines(containing: "component connected")
        #expect(reconnects.filter { $0.contains("[master]") }.count == 2 && reconnects.filter { $0.contains("[bridge]") }.count == 2, "\(reconnects)")
        if crash {
            #expect(r.bridge.logLines(containing: "bounced: service-unavailable").count == 1, "the ghost was removed by the ping's error")
        }

        // xia comes back (a new session, a new resource) and takes her nick again.
        mark = agent.mark
        agent.send(["cmd": "xmpp_connect", "user": user, "jid": "\(user)@\(servers.prosody.domain)", "password": "pw-\(user)", "port": servers.prosody.c2sPort])
        try agent.waitFor("xia is back online", since: mark) { $0.user == user && $0.kind == "online" }
        try agent.xmppJoin(user, room: r.room, nick: "xia")
        try agent.waitFor("xia sees carol again", since: mark) { $0.user == user && $0.kind == "presence" && $0.from == r.occupant("carol") }
        try agent.waitFor("xia's puppet joins again", since: mark, timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xia" }
        try fromIRC.finish()
        try fromXMPP.finish()
        // The lines queued for xia's puppet while it reconnected go out at the network's
        // flood rate: wait until nothing has arrived for two seconds.
        agent.waitForQuiet(seconds: 2, timeout: 30)

        // The account. IRC to XMPP: the room's archive holds what the room accepted; xia,
        // cut off for a while, may have missed some live, but never gets one twice.
        let events = agent.events(since: 0)
        let archive = try agent.mam(user, room: r.room, max: 20)
        let archived = (archive.params).compactMap(fromIRC.number)
        let ircSent = fromIRC.sent(events: events, down: { $0.user == "carol" && $0.kind == "irc_closed" })
        LineAccount(stream: "IRC carol -> the room (its archive), Prosody \(crash ? "killed" : "restarted")", sent: ircSent, received: archived).check()
        // (History on rejoin repeats lines she saw before, with <delay>, as XEP-0045 says.)
        let seenByXia = events.filter { $0.user == user && $0.kind == "message" && $0.type == "groupchat" && !($0.xml ?? "").contains("urn:xmpp:delay") }
            .compactMap { fromIRC.number($0.body) }
        #expect(Set(seenByXia).count == seenByXia.count, "xia got a line twice live: \(seenByXia)")
        // XMPP to IRC: what xia said while cut off, or before she was back in the room (the
        // room refuses it and tells her), is counted apart; everything else reaches carol once.
        let xmppSent = fromXMPP.sent(
            events: events, down: { $0.user == user && $0.kind == "disconnected" }, up: { $0.user == user && $0.kind == "online" },
            refusal: { $0.user == user && $0.kind == "message" && $0.type == "error" ? fromXMPP.number($0.body) : nil })
        let atCarol = fromXMPP.received(atIRC: "carol", from: "xia", in: events)
        LineAccount(stream: "XMPP xia -> IRC carol, Prosody \(crash ? "killed" : "restarted")", sent: xmppSent, received: atCarol).check()

        mark = agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :welcome back")
        agent.send(["cmd": "xmpp_say", "user": user, "room": r.room, "body": "glad to be back"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: user, from: r.occupant("carol"), body: "welcome back"),
                On.xmppMessage(to: user, from: r.occupant("xia"), body: "glad to be back"),
                On.ircPrivmsg(to: "carol", from: "xia", channel: r.channel, text: "glad to be back"),
            ],
            since: mark)
        #expect(r.bridge.process.isRunning)
    }
}
