import Foundation
import Lab
import Testing

/// Issue 9, the first fault: the XMPP server restarts under a bridged room. Its own suite, so
/// the restart disturbs no other scenario's servers.
@Suite("Faults: the XMPP server restarts", .serialized, .labServers)
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
        Thread.sleep(forTimeInterval: 1)

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
