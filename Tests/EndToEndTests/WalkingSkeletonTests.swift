import Foundation
import Lab
import Testing

/// The thinnest complete path (issue 2): one IRC channel and one DMUC room talking through
/// the master and the shadow, on real Prosody and ngircd, with slixmpp and raw IRC users.
@Suite("Walking skeleton: IRC channel <-> DMUC room, through real Prosody and ngircd", .serialized, .labServers)
struct WalkingSkeletonTests {
    @Test(
        "three IRC users and two XMPP users share one conversation, each line exactly once, through one federation",
        arguments: [ShadowbridgeProcess.LinkTransport.memory, .server])
    func ircAndXMPPUsersShareOneRoom(link: ShadowbridgeProcess.LinkTransport) throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "walk")
        defer { Lab.removeUnlessKept(directory) }
        let name = link == .memory ? "walk1" : "walk2"
        let channel = "#\(name)"
        let room = "\(name)@\(LabServers.masterDomain)"
        let shadow = "\(channel)%lab@\(LabServers.bridgeDomain)"
        let (wanna, wbert) = link == .memory ? ("wanna", "wbert") : ("wanna2", "wbert2")
        for user in [wanna, wbert] { try servers.prosody.register(user: user, password: "pw-\(user)") }

        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let port = servers.ngircd.port

        // carol is in the channel before the bridge comes (the bridge learns her from NAMES).
        agent.send(["cmd": "irc_connect", "user": "carol", "port": port, "nick": "carol"])
        try agent.waitFor("carol registered") { $0.user == "carol" && $0.command == "001" }
        agent.send(["cmd": "irc_send", "user": "carol", "line": "JOIN \(channel)"])
        try agent.waitFor("carol in \(channel)") { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "carol" }

        let bridge = try ShadowbridgeProcess(servers: servers, directory: directory, channels: [(channel, name)], link: link)
        defer { _ = bridge.stop() }
        try agent.waitFor("the bridge joins \(channel)", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "sbridge" }
        try bridge.waitForLog("link federated", "shadow=\(shadow)")

        // dave and erin come after the bridge (it learns them from JOIN).
        for nick in ["dave", "erin"] {
            agent.send(["cmd": "irc_connect", "user": nick, "port": port, "nick": nick])
            try agent.waitFor("\(nick) registered") { $0.user == nick && $0.command == "001" }
            agent.send(["cmd": "irc_send", "user": nick, "line": "JOIN \(channel)"])
            try agent.waitFor("\(nick) in \(channel)") { $0.user == nick && $0.command == "JOIN" && $0.nick == nick }
        }

        // Two XMPP users join the master room with a stock MUC join.
        for (user, nick) in [(wanna, "xanna"), (wbert, "xbert")] {
            agent.send(["cmd": "xmpp_connect", "user": user, "jid": "\(user)@\(servers.prosody.domain)", "password": "pw-\(user)", "port": servers.prosody.c2sPort])
            try agent.waitFor("\(user) online") { $0.user == user && $0.kind == "online" }
            agent.send(["cmd": "xmpp_join", "user": user, "room": room, "nick": nick])
            try agent.waitFor("\(user) self-presence with 110") { $0.user == user && $0.kind == "presence" && $0.from == "\(room)/\(nick)" && $0.codes.contains(110) }
            try agent.waitFor("\(user) gets the subject closing the join") { $0.user == user && $0.kind == "message" && $0.subject != nil && $0.from?.hasPrefix(room) == true }
        }

        // Every IRC user is an occupant for each XMPP user; the bridge's own nick is not.
        for user in [wanna, wbert] {
            for nick in ["carol", "dave", "erin", "xanna", "xbert"] {
                try agent.waitFor("\(user) sees \(nick) in the room") { $0.user == user && $0.kind == "presence" && $0.from == "\(room)/\(nick)" && $0.type != "unavailable" }
            }
        }
        // Each XMPP user is on IRC under a puppet nick.
        for nick in ["xanna", "xbert"] {
            try agent.waitFor("the puppet \(nick) joins \(channel)", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == nick }
        }
        let namesMark = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "NAMES \(channel)"])
        let names = try agent.waitFor("NAMES", since: namesMark) { $0.user == "carol" && $0.command == "353" }
        let nicks = Set((names.params.last ?? "").split(separator: " ").map { String($0.drop(while: { "@+%".contains($0) })) })
        #expect(nicks == ["carol", "dave", "erin", "sbridge", "xanna", "xbert"], "NAMES: \(nicks)")

        let everyone = agent.events(since: 0)
        #expect(!everyone.contains { $0.kind == "presence" && $0.from == "\(room)/sbridge" }, "the bridge's own nick became an occupant")
        Thread.sleep(forTimeInterval: 1)  // let join traffic settle before counting

        // A UTF-8 line from IRC arrives once at every receiver, and nothing else arrives.
        let ircLine = "héllo from IRC ✓ — ünïcödé"
        var mark = agent.mark
        let linkBefore = bridge.logLines(containing: "link out", "kind=message", "shadow=\(shadow)").count
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :\(ircLine)"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: wanna, from: "\(room)/carol", body: ircLine),
                On.xmppMessage(to: wbert, from: "\(room)/carol", body: ircLine),
                On.ircPrivmsg(to: "dave", from: "carol", channel: channel, text: ircLine),
                On.ircPrivmsg(to: "erin", from: "carol", channel: channel, text: ircLine),
            ], since: mark)
        // DMUC, not N joins: one master->shadow stanza for the line, whatever the IRC users.
        let linkAfterIRC = bridge.logLines(containing: "link out", "kind=message", "shadow=\(shadow)").count
        #expect(linkAfterIRC - linkBefore == 1, "master->shadow messages for one IRC line: \(linkAfterIRC - linkBefore)")

        // A UTF-8 line from XMPP: reflected to both XMPP users, once to each IRC user from the puppet.
        let xmppLine = "grüße aus XMPP ☃ 日本語"
        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": wanna, "room": room, "body": xmppLine])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: wanna, from: "\(room)/xanna", body: xmppLine),
                On.xmppMessage(to: wbert, from: "\(room)/xanna", body: xmppLine),
                On.ircPrivmsg(to: "carol", from: "xanna", channel: channel, text: xmppLine),
                On.ircPrivmsg(to: "dave", from: "xanna", channel: channel, text: xmppLine),
                On.ircPrivmsg(to: "erin", from: "xanna", channel: channel, text: xmppLine),
            ], since: mark)
        let linkAfterXMPP = bridge.logLines(containing: "link out", "kind=message", "shadow=\(shadow)").count
        #expect(linkAfterXMPP - linkAfterIRC == 1, "master->shadow messages for one XMPP line: \(linkAfterXMPP - linkAfterIRC)")

        // A PART on IRC shows on XMPP as one unavailable with the reason.
        mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "erin", "line": "PART \(channel) :see you"])
        try agent.expectExactlyOnce(
            [
                On.xmppPresence(to: wanna, from: "\(room)/erin", unavailable: true, status: "see you"),
                On.xmppPresence(to: wbert, from: "\(room)/erin", unavailable: true, status: "see you"),
                On.irc(to: "erin", "PART", from: "erin"),
                On.irc(to: "carol", "PART", from: "erin"),
                On.irc(to: "dave", "PART", from: "erin"),
            ], since: mark)

        // A leave on XMPP shows on IRC: the puppet goes (QUIT: it was its last channel).
        mark = agent.mark
        agent.send(["cmd": "xmpp_leave", "user": wbert, "room": room, "nick": "xbert", "status": "off to lunch"])
        try agent.expectExactlyOnce(
            [
                On.xmppPresence(to: wanna, from: "\(room)/xbert", unavailable: true),
                On.xmppPresence(to: wbert, from: "\(room)/xbert", unavailable: true),
                On.irc(to: "carol", "QUIT", from: "xbert"),
                On.irc(to: "dave", "QUIT", from: "xbert"),
            ], since: mark)

        // One federation for the shadow room over the whole scenario.
        #expect(bridge.logLines(containing: "link federated", "shadow=\(shadow)").count == 1)

        // SIGTERM: the XMPP user left in the room is told the service went down (332), and
        // the IRC users see the puppet and the bridge QUIT.
        mark = agent.mark
        #expect(bridge.stop() == 0, "shadowbridge did not exit cleanly: \(bridge.log.suffix(2000))")
        try agent.waitFor("wanna gets 332", since: mark) { $0.user == wanna && $0.kind == "presence" && $0.from == "\(room)/xanna" && $0.type == "unavailable" && $0.codes.contains(332) }
        try agent.waitFor("the puppet quits", since: mark) { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "xanna" }
        try agent.waitFor("the bridge quits", since: mark) { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "sbridge" }
    }
}
