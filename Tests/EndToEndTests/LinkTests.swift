import Foundation
import Lab
import Testing
import XMLCore

/// The master/shadow link end to end (PROTOCOL.md §3 A-D, G): a master-only `shadowbridge`
/// on the lab's Prosody, a stock client (slixmpp), and a shadow node scripted by hand over its
/// own component connection; then a real bridge in its own process, frozen with SIGSTOP.
@Suite("The link: federation, resync, splits", .serialized, .labServers)
struct LinkTests {
    static let masterDomain = LabServers.masterDomain

    /// A master alone, its keepalive every second, shadows allowed from the bridge domain and
    /// the scripted one; a split node's users leave two seconds after the split.
    /// `splitGrace`: how long a split node's users stay (`master.split_grace`).
    static func startMaster(_ servers: LabServers, directory: URL, splitGrace: Int = 2) throws -> ShadowbridgeProcess {
        let config = ShadowbridgeProcess.config(
            xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges"), bridge: false,
            masterSettings: "split_grace = \(splitGrace)")
            .replacingOccurrences(
                of: "allowed_shadows = [\"\(LabServers.bridgeDomain)\"]",
                with: "allowed_shadows = [\"\(LabServers.bridgeDomain)\", \"\(LabServers.scriptedDomain)\"]")
        let master = try ShadowbridgeProcess(directory: directory, config: config, mappings: [:])
        try master.waitForLog("[master] component connected")
        return master
    }

    @Test("a scripted shadow federates, gets a replay of what it missed (or <full/>), is split away when it stops answering pings, is refused, and federates again")
    func scriptedShadow() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "link-scripted")
        defer { Lab.removeUnlessKept(directory) }
        let master = try Self.startMaster(servers, directory: directory)
        defer { _ = master.stop() }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let shadow = try ScriptedShadow(port: servers.prosody.componentPort)
        defer { shadow.close() }

        let room = "link1@\(Self.masterDomain)"
        let node = "#link1%net@\(shadow.domain)"
        let real = "u1%net@\(shadow.domain)/irc"
        let federate = """
            <presence from='\(node)/carol' to='\(room)/carol'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x>\
            <fmuc xmlns='http://isode.com/protocol/fmuc' from='\(real)'/><link xmlns='urn:shadowbridge:dmuc-link:0' version='0' mode='primary-replica'/></presence>
            """

        // Flow A: the burst is carol's own presence (her ack), closed by the subject with <sync/>.
        var mark = shadow.mark
        try shadow.send(federate)
        let sync = try shadow.waitFor("the burst's closing subject", since: mark) { $0.child("sync", namespace: XMLElement.linkNamespace) != nil }
        let epoch = try #require(sync.child("sync", namespace: XMLElement.linkNamespace)?["epoch"])
        #expect(shadow.stanzas(since: mark).filter { $0.name == "presence" }.map { $0["from"] } == ["\(room)/carol"])

        // A stock client joins and speaks three lines; the node gets each once, numbered in a row.
        try agent.xmppUserOnline("lalice", prosody: servers.prosody)
        mark = shadow.mark
        try agent.xmppJoin("lalice", room: room, nick: "alice")
        try agent.waitFor("alice sees carol") { $0.user == "lalice" && $0.kind == "presence" && $0.from == "\(room)/carol" }
        for n in 1...3 { agent.send(["cmd": "xmpp_say", "user": "lalice", "room": room, "body": "line \(n)"]) }
        try shadow.waitFor("line 3", since: mark) { $0.bodyText == "line 3" }
        let numbered = shadow.stanzas(since: mark).filter { $0.linkSeq != nil }
        #expect(numbered.map(\.name) == ["presence", "message", "message", "message"], "\(numbered.map { $0.serialized(parentNamespace: ScriptedShadow.namespace) })")
        let seqs = numbered.compactMap(\.linkSeq)
        #expect(seqs == Array(seqs[0]...(seqs[0] + 3)), "one number per room stanza, in a row: \(seqs)")
        let last = seqs.last!

        // Flow D: resync from the second line on: lines 2 and 3 again with their first numbers
        // and times, then <replay count='2'/>.
        mark = shadow.mark
        try shadow.send("<iq type='set' id='rs1' from='\(node)' to='\(room)'><resync xmlns='urn:shadowbridge:dmuc-link:0' epoch='\(epoch)' from-seq='\(last - 1)'/></iq>")
        let answer = try shadow.waitFor("the resync answer", since: mark) { $0["id"] == "rs1" }
        #expect(answer["type"] == "result" && answer.child("replay", namespace: XMLElement.linkNamespace)?["count"] == "2")
        let replayed = shadow.stanzas(since: mark).filter { $0.name == "message" }
        #expect(replayed.map(\.bodyText) == ["line 2", "line 3"] && replayed.map(\.linkSeq) == [last - 1, last])
        #expect(replayed.allSatisfy { $0.child("delay", namespace: "urn:xmpp:delay")?["stamp"] != nil })
        mark = shadow.mark
        try shadow.send("<iq type='set' id='rs2' from='\(node)' to='\(room)'><resync xmlns='urn:shadowbridge:dmuc-link:0' epoch='not-this-one' from-seq='1'/></iq>")
        let full = try shadow.waitFor("the resync answer for another epoch", since: mark) { $0["id"] == "rs2" }
        #expect(full.child("full", namespace: XMLElement.linkNamespace) != nil)

        // Flow G: the master pings the idle node; silent, it is split away: once the split
        // grace is over, alice sees carol leave with 333 and a netsplit-style status, once.
        let pingsBefore = shadow.pingsReceived
        Thread.sleep(forTimeInterval: 2.5)
        #expect(shadow.pingsReceived > pingsBefore, "an idle node is pinged")
        #expect(master.logLines(containing: "link split").isEmpty, "answered pings keep the node")
        var agentMark = agent.mark
        shadow.answerPings(false)
        try master.waitForLog("link split", "shadow=\(node)", timeout: 15)
        try agent.expectExactlyOnce(
            [On.xmppPresence(to: "lalice", from: "\(room)/carol", unavailable: true, status: "\(Self.masterDomain) \(shadow.domain)")],
            since: agentMark)
        let gone = agent.events(since: agentMark).first { $0.from == "\(room)/carol" }
        #expect(gone?.codes.contains(333) == true, "\(String(describing: gone))")

        // A line from the split node is refused with <split/>; nothing reaches alice.
        agentMark = agent.mark
        mark = shadow.mark
        try shadow.send("<message type='groupchat' id='s1' from='\(node)/carol' to='\(room)'><body>during the split</body><fmuc xmlns='http://isode.com/protocol/fmuc' from='\(real)'/></message>")
        let refused = try shadow.waitFor("the refusal", since: mark) { $0["id"] == "s1" }
        #expect(refused["type"] == "error" && refused.serialized(parentNamespace: ScriptedShadow.namespace).contains("<split xmlns='urn:shadowbridge:dmuc-link:0'/>"))

        // It federates again (with what it last saw): a new burst; alice sees carol come back,
        // once; lines cross once each way.
        shadow.answerPings(true)
        mark = shadow.mark
        try shadow.send(federate.replacingOccurrences(of: "mode='primary-replica'/>", with: "mode='primary-replica' epoch='\(epoch)' last-seq='\(last)'/>"))
        try shadow.waitFor("the new burst", since: mark) { $0.child("sync", namespace: XMLElement.linkNamespace) != nil }
        try agent.expectExactlyOnce([On.xmppPresence(to: "lalice", from: "\(room)/carol", unavailable: false)], since: agentMark)
        agentMark = agent.mark
        mark = shadow.mark
        try shadow.send("<message type='groupchat' id='s2' from='\(node)/carol' to='\(room)'><body>back again</body><fmuc xmlns='http://isode.com/protocol/fmuc' from='\(real)'/></message>")
        agent.send(["cmd": "xmpp_say", "user": "lalice", "room": room, "body": "welcome back"])
        try agent.expectExactlyOnce(
            [On.xmppMessage(to: "lalice", from: "\(room)/carol", body: "back again"), On.xmppMessage(to: "lalice", from: "\(room)/alice", body: "welcome back")],
            since: agentMark)
        try shadow.waitFor("alice's line", since: mark) { $0.bodyText == "welcome back" }
        Thread.sleep(forTimeInterval: 0.5)
        let after = shadow.stanzas(since: mark).filter { $0.name == "message" }
        // The two lines race to the master from two sides, so either order is right.
        #expect(after.compactMap(\.bodyText).sorted() == ["back again", "welcome back"], "the echo and alice's line, once each")

        // No link element ever reached the client.
        #expect(!agent.events(since: 0).contains { ($0.xml ?? "").contains("dmuc-link") || ($0.xml ?? "").contains("isode.com/protocol/fmuc") })
    }

    @Test("a bridge frozen (SIGSTOP) past three pings and the split grace is split away: its IRC users leave with 333 and come back once, and lines said on both sides meanwhile cross once each")
    func frozenBridge() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "link-frozen")
        defer { Lab.removeUnlessKept(directory) }
        let masterDirectory = directory.appendingPathComponent("master"), bridgeDirectory = directory.appendingPathComponent("bridge")
        for d in [masterDirectory, bridgeDirectory] { try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true) }
        let master = try Self.startMaster(servers, directory: masterDirectory)
        defer { _ = master.stop() }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let channel = "#frozen1", room = "frozen1@\(Self.masterDomain)", shadow = "\(channel)%lab@\(LabServers.bridgeDomain)"
        try agent.ircUserJoins("carol", port: servers.ngircd.port, channel: channel)

        // The bridge in a process of its own: the link goes through Prosody.
        let bridge = try ShadowbridgeProcess(
            directory: bridgeDirectory,
            config: ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: bridgeDirectory.appendingPathComponent("bridges"), master: false),
            mappings: ["lab.toml": ShadowbridgeProcess.mapping(network: "lab", ircPort: servers.ngircd.port, channels: [(channel, "frozen1")])])
        defer {
            bridge.process.signal(SIGCONT)
            _ = bridge.stop()
        }
        try master.waitForLog("link federated", "shadow=\(shadow)", timeout: 20)
        try agent.xmppUserJoins("fzalice", prosody: servers.prosody, room: room, nick: "alice")
        try agent.waitFor("alice's puppet joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "alice" }
        Thread.sleep(forTimeInterval: 1)

        let mark = agent.mark
        bridge.process.signal(SIGSTOP)
        try master.waitForLog("link split", "shadow=\(shadow)", timeout: 20)
        try agent.waitFor("alice sees carol split away", since: mark) { $0.user == "fzalice" && $0.from == "\(room)/carol" && $0.type == "unavailable" }
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :irc during the split"])
        agent.send(["cmd": "xmpp_say", "user": "fzalice", "room": room, "body": "xmpp during the split"])
        Thread.sleep(forTimeInterval: 1)
        bridge.process.signal(SIGCONT)
        try agent.expectExactlyOnce(
            [
                On.xmppPresence(to: "fzalice", from: "\(room)/carol", unavailable: true, status: "\(Self.masterDomain) \(LabServers.bridgeDomain)"),
                On.xmppPresence(to: "fzalice", from: "\(room)/carol", unavailable: false),
                On.xmppMessage(to: "fzalice", from: "\(room)/alice", body: "xmpp during the split"),
                On.xmppMessage(to: "fzalice", from: "\(room)/carol", body: "irc during the split"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "xmpp during the split"),
            ],
            since: mark, quiet: 2, timeout: 30)
        let gone = agent.events(since: mark).first { $0.from == "\(room)/carol" && $0.type == "unavailable" }
        #expect(gone?.codes.contains(333) == true)
        #expect(master.logLines(containing: "link split").count == 1)
        #expect(bridge.logLines(containing: "link to the master split").count == 1, "\(bridge.logLines(containing: "split"))")
        #expect(bridge.logLines(containing: "link resync answered", "answer=replay").count == 1, "the missed line came from the replay buffer")

        // And the link is whole again: a line each way, once.
        let after = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :all good"])
        agent.send(["cmd": "xmpp_say", "user": "fzalice", "room": room, "body": "indeed"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "fzalice", from: "\(room)/carol", body: "all good"),
                On.xmppMessage(to: "fzalice", from: "\(room)/alice", body: "indeed"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "indeed"),
            ],
            since: after)
    }
}

/// Bridge restarts (issues 6 and 9): the master in one process, the bridge in another,
/// stopped with SIGTERM and killed with SIGKILL, each time started again on the same
/// `bridge.database`.
@Suite("Bridge restarts", .serialized, .labServers)
struct BridgeRestartTests {
    /// What each restart scenario starts from: its directory, the master in a process of its
    /// own (split grace 30 s, so a restart within it shows nothing), and the agent.
    final class RestartLab {
        let servers: LabServers
        let directory: URL
        /// Replaced when a scenario kills the master and starts it again.
        var master: ShadowbridgeProcess
        let agent: LabAgent
        var masterDirectory: URL { directory.appendingPathComponent("master") }

        init(prefix: String) throws {
            servers = try LabServers.require()
            directory = try Lab.makeTemporaryDirectory(prefix: prefix)
            let masterDirectory = directory.appendingPathComponent("master")
            do {
                try FileManager.default.createDirectory(at: masterDirectory, withIntermediateDirectories: true)
                master = try LinkTests.startMaster(servers, directory: masterDirectory, splitGrace: 30)
            } catch {
                Lab.removeUnlessKept(directory)
                throw error
            }
            do {
                agent = try LabAgent(directory: directory)
            } catch {
                _ = master.stop()
                Lab.removeUnlessKept(directory)
                throw error
            }
        }

        func close() {
            agent.stop()
            _ = master.stop()
            Lab.removeUnlessKept(directory)
        }

        /// Each scenario's opening: `ircUsers` join `channel`, the first bridge (in `bridge1`,
        /// on `database`) federates it into `room`, and the XMPP user joins, their puppet seen
        /// on IRC as `puppet`. The caller stops the bridge it gets.
        func startBridged(
            channel: String, room: String, ircUsers: [String], database: URL, xmpp: (user: String, nick: String), puppet: String
        ) throws -> ShadowbridgeProcess {
            for nick in ircUsers { try agent.ircUserJoins(nick, port: servers.ngircd.port, channel: channel) }
            let bridge = try BridgeRestartTests.startBridge(servers, directory: directory.appendingPathComponent("bridge1"), database: database, channel: channel, room: room)
            do {
                try master.waitForLog("link federated", "shadow=\(channel)%lab@\(LabServers.bridgeDomain)", timeout: 20)
                try agent.xmppUserJoins(xmpp.user, prosody: servers.prosody, room: "\(room)@\(LabServers.masterDomain)", nick: xmpp.nick)
                try agent.waitFor("\(xmpp.nick)'s puppet joins as \(puppet)", timeout: 20) {
                    $0.user == ircUsers[0] && $0.command == "JOIN" && $0.nick == puppet
                }
            } catch {
                _ = bridge.stop()
                throw error
            }
            return bridge
        }
    }

    /// A bridge process for `#channel`, in a directory of its own, on the shared database.
    static func startBridge(
        _ servers: LabServers, directory: URL, database: URL, channel: String, room: String, network: String = "lab", ircPort: Int? = nil
    ) throws -> ShadowbridgeProcess {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try ShadowbridgeProcess(
            directory: directory,
            config: ShadowbridgeProcess.config(
                xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges"), master: false,
                bridgeSettings: "database = \"\(database.path)\""),
            mappings: ["\(network).toml": ShadowbridgeProcess.mapping(network: network, ircPort: ircPort ?? servers.ngircd.port, channels: [(channel, room)])])
    }

    @Test("a bridge restarted with SIGTERM, then killed with SIGKILL and started again: the room sees nobody leave but the IRC user who left meanwhile, and each XMPP line said while it was away reaches IRC once, none twice")
    func restartWithoutStorms() throws {
        let lab = try RestartLab(prefix: "bridge-restart")
        defer { lab.close() }
        let (servers, directory, master, agent) = (lab.servers, lab.directory, lab.master, lab.agent)
        let channel = "#restart1", room = "restart1@\(LabServers.masterDomain)", shadow = "\(channel)%lab@\(LabServers.bridgeDomain)"
        let database = directory.appendingPathComponent("bridge-state/bridge.sqlite")
        var bridge = try lab.startBridged(
            channel: channel, room: "restart1", ircUsers: ["carol", "dave"], database: database, xmpp: ("rsalice", "alice"), puppet: "alice")
        defer { _ = bridge.stop() }
        Thread.sleep(forTimeInterval: 1)

        // SIGTERM. While the bridge is away, alice speaks and dave leaves the channel.
        var mark = agent.mark
        #expect(bridge.stop() == 0)
        try agent.waitFor("dave sees the bridge go", since: mark) { $0.user == "dave" && $0.command == "QUIT" && $0.nick == "sbridge" }
        agent.send(["cmd": "xmpp_say", "user": "rsalice", "room": room, "body": "while you were away"])
        agent.send(["cmd": "irc_send", "user": "dave", "line": "PART \(channel) :lunch"])
        try agent.waitFor("dave left", since: mark) { $0.user == "carol" && $0.command == "PART" && $0.nick == "dave" }
        try master.waitForLog("link split", "shadow=\(shadow)", timeout: 10)
        bridge = try Self.startBridge(servers, directory: directory.appendingPathComponent("bridge2"), database: database, channel: channel, room: "restart1")
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "rsalice", from: "\(room)/alice", body: "while you were away"),
                On.xmppPresence(to: "rsalice", from: "\(room)/dave", unavailable: true, status: "Left the IRC channel"),
                On.irc(to: "carol", "QUIT", from: "alice"), On.irc(to: "carol", "QUIT", from: "sbridge"),
                On.irc(to: "dave", "QUIT", from: "alice"), On.irc(to: "dave", "QUIT", from: "sbridge"),
                On.irc(to: "carol", "PART", from: "dave"), On.irc(to: "dave", "PART", from: "dave"),
                On.irc(to: "carol", "JOIN", from: "sbridge"), On.irc(to: "carol", "JOIN", from: "alice"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "while you were away"),
            ],
            since: mark, quiet: 2, timeout: 30)
        #expect(bridge.logLines(containing: "shadow resumes from its stored position").count == 1)

        // A line relayed just before a SIGKILL is not relayed again afterwards; the line said
        // while the bridge is dead arrives once. carol's IRC line said meanwhile is lost: no
        // bridge connection was in the channel to hear it (ngircd has no chathistory).
        agent.send(["cmd": "xmpp_say", "user": "rsalice", "room": room, "body": "just before the kill"])
        try agent.waitFor("carol has it", since: mark) { $0.user == "carol" && $0.params.last == "just before the kill" }
        mark = agent.mark
        bridge.process.signal(SIGKILL)
        #expect(bridge.process.waitForExit(timeout: 10))
        try agent.waitFor("carol sees the bridge's connection drop", since: mark) { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "sbridge" }
        agent.send(["cmd": "xmpp_say", "user": "rsalice", "room": room, "body": "while you were dead"])
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :nobody is listening"])
        try master.waitForLog("link split", "shadow=\(shadow)", timeout: 10)
        bridge = try Self.startBridge(servers, directory: directory.appendingPathComponent("bridge3"), database: database, channel: channel, room: "restart1")
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "rsalice", from: "\(room)/alice", body: "while you were dead"),
                On.irc(to: "carol", "QUIT", from: "alice"), On.irc(to: "carol", "QUIT", from: "sbridge"),
                On.irc(to: "carol", "JOIN", from: "sbridge"), On.irc(to: "carol", "JOIN", from: "alice"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "while you were dead"),
            ],
            since: mark, quiet: 2, timeout: 30)
        #expect(master.logLines(containing: "link split").count == 2)

        // Issue 9's account across another SIGKILL: numbered lines from both sides all
        // through it. XMPP lines the master accepted while the bridge was dead come from its
        // replay once the bridge is back; IRC lines said while no bridge connection was in
        // the channel are counted apart (nothing on IRC keeps them).
        mark = agent.mark
        let fromXMPP = NumberedStream.xmpp("killx-", count: 24, interval: 0.25, agent: agent, user: "rsalice", room: room)
        let fromIRC = NumberedStream.irc("killi-", count: 24, interval: 0.25, agent: agent, user: "carol", channel: channel)
        Thread.sleep(forTimeInterval: 1.5)
        let killedAt = Date()
        bridge.process.signal(SIGKILL)
        #expect(bridge.process.waitForExit(timeout: 10))
        Thread.sleep(forTimeInterval: 1)
        bridge = try Self.startBridge(servers, directory: directory.appendingPathComponent("bridge4"), database: database, channel: channel, room: "restart1")
        try fromXMPP.finish()
        try fromIRC.finish()
        agent.waitForQuiet(seconds: 3, timeout: 60)
        let events = agent.events(since: 0)
        let bridgeGone: (AgentEvent) -> Bool = { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "sbridge" }
        let bridgeBack: (AgentEvent) -> Bool = { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "sbridge" }
        LineAccount(
            stream: "XMPP alice -> IRC carol across a bridge SIGKILL",
            sent: fromXMPP.sent(
                events: events,
                inFlight: killedAt.addingTimeInterval(-0.3)...killedAt.addingTimeInterval(0.3)),
            received: fromXMPP.received(atIRC: "carol", from: "alice", in: events)
        ).check()
        LineAccount(
            stream: "IRC carol -> XMPP alice across a bridge SIGKILL",
            sent: fromIRC.sent(
                events: events, down: bridgeGone, up: bridgeBack, refusal: { _ in nil },
                inFlight: killedAt.addingTimeInterval(-0.3)...killedAt.addingTimeInterval(0.3)),
            received: fromIRC.received(atXMPP: "rsalice", from: "\(room)/carol", in: events)
        ).check()
        let noise = agent.events(since: mark).filter { $0.isTraffic && $0.kind == "presence" }
        #expect(noise.isEmpty, "the room saw no presence across the kill: \(noise)")

        // And the link is whole again: a line each way, once.
        let after = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :back"])
        agent.send(["cmd": "xmpp_say", "user": "rsalice", "room": room, "body": "welcome"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "rsalice", from: "\(room)/carol", body: "back"),
                On.xmppMessage(to: "rsalice", from: "\(room)/alice", body: "welcome"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "welcome"),
            ],
            since: after)
    }

    @Test("a live restart (SIGUSR2): the bridge's and the puppets' IRC connections go on in the new process, so IRC sees nobody leave or come back and the room sees nobody leave; an occupant who left meanwhile QUITs once; lines said during it cross once each way")
    func liveRestart() throws {
        let lab = try RestartLab(prefix: "bridge-live")
        defer { lab.close() }
        let (servers, agent) = (lab.servers, lab.agent)
        let channel = "#live1", room = "live1@\(LabServers.masterDomain)"
        let bridge = try lab.startBridged(
            channel: channel, room: "live1", ircUsers: ["carol", "dave"], database: lab.directory.appendingPathComponent("bridge.sqlite"),
            xmpp: ("lvalice", "alice"), puppet: "alice")
        defer { _ = bridge.stop() }
        try agent.xmppUserJoins("lvbob", prosody: servers.prosody, room: room, nick: "bob")
        try agent.waitFor("bob's puppet joins") { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "bob" }
        agent.waitForQuiet(seconds: 1, timeout: 10)

        // While the bridge restarts: a line each way, and bob leaves the room.
        let mark = agent.mark
        let pid = bridge.process.pid
        bridge.process.signal(SIGUSR2)
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :during the restart"])
        agent.send(["cmd": "xmpp_leave", "user": "lvbob", "room": room, "nick": "bob"])
        // bob is out before alice speaks, so the room does not send him her line.
        try agent.waitFor("bob's own leave", since: mark) { $0.user == "lvbob" && $0.kind == "presence" && $0.type == "unavailable" }
        agent.send(["cmd": "xmpp_say", "user": "lvalice", "room": room, "body": "while restarting"])
        try bridge.waitForLog("IRC bridge connection taken over from the process before", timeout: 20)
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "lvalice", from: "\(room)/carol", body: "during the restart"),
                On.ircPrivmsg(to: "dave", from: "carol", channel: channel, text: "during the restart"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "while restarting"),
                On.ircPrivmsg(to: "dave", from: "alice", channel: channel, text: "while restarting"),
                On.xmppMessage(to: "lvalice", from: "\(room)/alice", body: "while restarting"),
                Expected("bob's own leave") { $0.user == "lvbob" && $0.kind == "presence" && $0.type == "unavailable" },
                On.xmppPresence(to: "lvalice", from: "\(room)/bob", unavailable: true),
                On.irc(to: "carol", "QUIT", from: "bob"), On.irc(to: "dave", "QUIT", from: "bob"),
            ],
            since: mark, quiet: 3, timeout: 30)
        #expect(bridge.process.isRunning && bridge.process.pid == pid, "the same process goes on")
        #expect(bridge.logLines(containing: "IRC connections handed over", "bridge=1").count == 1)
        #expect(bridge.logLines(containing: "live restart: taking up what the process before handed over", "networks=1").count == 1)

        // And everything works as before: a line each way, once.
        let after = agent.mark
        agent.send(["cmd": "irc_send", "user": "dave", "line": "PRIVMSG \(channel) :still here"])
        agent.send(["cmd": "xmpp_say", "user": "lvalice", "room": room, "body": "me too"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "lvalice", from: "\(room)/dave", body: "still here"),
                On.ircPrivmsg(to: "carol", from: "dave", channel: channel, text: "still here"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "me too"),
                On.ircPrivmsg(to: "dave", from: "alice", channel: channel, text: "me too"),
                On.xmppMessage(to: "lvalice", from: "\(room)/alice", body: "me too"),
            ],
            since: after)
    }

    @Test("a live restart (SIGUSR2) of the shipped one-process setup, master and bridge together: the rooms go on in the new process with their occupants, so XMPP clients see no 332 and nobody leave, and IRC sees nobody leave or come back; lines said during it cross once each way or are refused to their sender, never lost or doubled")
    func liveRestartOneProcess() throws {
        let servers = try LabServers.require()
        let bridged = try BridgedRoom(
            servers: servers, name: "live2", ircUsers: ["carol", "dave"], xmppUsers: [("l2alice", "alice"), ("l2bob", "bob")],
            // Retention off as well: the master used to stop at start with it (found in review).
            masterSettings: "archive_retention_days = 0", bridgeSettings: "database = \"state/bridge.sqlite\"")
        defer { bridged.close() }
        let (agent, bridge, channel, room) = (bridged.agent, bridged.bridge, bridged.channel, bridged.room)
        agent.waitForQuiet(seconds: 1, timeout: 10)

        // While the process restarts: a line each way.
        let mark = agent.mark
        let pid = bridge.process.pid
        bridge.process.signal(SIGUSR2)
        bridged.irc("carol", "PRIVMSG \(channel) :during the restart")
        agent.send(["cmd": "xmpp_say", "user": "l2alice", "room": room, "body": "while restarting", "id": "gap-1"])
        try bridge.waitForLog("live restart: rooms taken up from the process before", timeout: 20)
        try bridge.waitForLog("IRC bridge connection taken over from the process before", timeout: 20)
        // alice's line reached the master before it stopped (then it crosses once, replayed to
        // the new bridge), or the XMPP server refused it to her while no master was connected.
        let alices = try agent.gapLine(
            user: "l2alice", id: "gap-1", text: "while restarting", ircWatcher: "carol", since: mark,
            crossed: [
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "while restarting"),
                On.ircPrivmsg(to: "dave", from: "alice", channel: channel, text: "while restarting"),
                On.xmppMessage(to: "l2alice", from: "\(room)/alice", body: "while restarting"),
                On.xmppMessage(to: "l2bob", from: "\(room)/alice", body: "while restarting"),
            ])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "l2alice", from: "\(room)/carol", body: "during the restart"),
                On.xmppMessage(to: "l2bob", from: "\(room)/carol", body: "during the restart"),
                On.ircPrivmsg(to: "dave", from: "carol", channel: channel, text: "during the restart"),
            ] + alices,
            since: mark, quiet: 3, timeout: 30)
        #expect(bridge.process.isRunning && bridge.process.pid == pid, "the same process goes on")
        #expect(bridge.logLines(containing: "rooms handed over", "occupants=4").count == 1)
        #expect(bridge.logLines(containing: "IRC connections handed over", "bridge=1").count == 1)
        #expect(bridge.logLines(containing: "live restart: taking up what the process before handed over", "networks=1", "rooms=1").count == 1)

        // The new process knows the room as it was: bob leaves once on both sides, and a line
        // each way crosses once.
        let after = agent.mark
        agent.send(["cmd": "xmpp_leave", "user": "l2bob", "room": room, "nick": "bob"])
        try agent.waitFor("bob's own leave", since: after) { $0.user == "l2bob" && $0.kind == "presence" && $0.type == "unavailable" }
        bridged.irc("dave", "PRIVMSG \(channel) :still here")
        agent.send(["cmd": "xmpp_say", "user": "l2alice", "room": room, "body": "me too"])
        try agent.expectExactlyOnce(
            [
                Expected("bob's own leave") { $0.user == "l2bob" && $0.kind == "presence" && $0.type == "unavailable" },
                On.xmppPresence(to: "l2alice", from: "\(room)/bob", unavailable: true),
                On.irc(to: "carol", "QUIT", from: "bob"), On.irc(to: "dave", "QUIT", from: "bob"),
                On.xmppMessage(to: "l2alice", from: "\(room)/dave", body: "still here"),
                On.ircPrivmsg(to: "carol", from: "dave", channel: channel, text: "still here"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "me too"),
                On.ircPrivmsg(to: "dave", from: "alice", channel: channel, text: "me too"),
                On.xmppMessage(to: "l2alice", from: "\(room)/alice", body: "me too"),
            ],
            since: after)
    }

    @Test("a live restart (SIGUSR2) of a master in a process of its own: the room goes on with its occupants and the bridge's link resyncs, so nobody leaves on either side; a line said during it crosses once each way or is refused to its sender")
    func liveRestartMaster() throws {
        let lab = try RestartLab(prefix: "master-live")
        defer { lab.close() }
        let agent = lab.agent
        let channel = "#live3", room = "live3@\(LabServers.masterDomain)"
        let bridge = try lab.startBridged(
            channel: channel, room: "live3", ircUsers: ["carol", "dave"], database: lab.directory.appendingPathComponent("bridge.sqlite"),
            xmpp: ("l3alice", "alice"), puppet: "alice")
        defer { _ = bridge.stop() }
        agent.waitForQuiet(seconds: 1, timeout: 10)

        let mark = agent.mark
        let pid = lab.master.process.pid
        lab.master.process.signal(SIGUSR2)
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :during the restart"])
        agent.send(["cmd": "xmpp_say", "user": "l3alice", "room": room, "body": "while restarting", "id": "gap-3"])
        try lab.master.waitForLog("live restart: rooms taken up from the process before", timeout: 20)
        let alices = try agent.gapLine(
            user: "l3alice", id: "gap-3", text: "while restarting", ircWatcher: "carol", since: mark,
            crossed: [
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "while restarting"),
                On.ircPrivmsg(to: "dave", from: "alice", channel: channel, text: "while restarting"),
                On.xmppMessage(to: "l3alice", from: "\(room)/alice", body: "while restarting"),
            ])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "l3alice", from: "\(room)/carol", body: "during the restart"),
                On.ircPrivmsg(to: "dave", from: "carol", channel: channel, text: "during the restart"),
            ] + alices,
            since: mark, quiet: 3, timeout: 30)
        #expect(lab.master.process.isRunning && lab.master.process.pid == pid, "the same process goes on")
        #expect(lab.master.logLines(containing: "rooms handed over", "occupants=3").count == 1)

        let after = agent.mark
        agent.send(["cmd": "irc_send", "user": "dave", "line": "PRIVMSG \(channel) :still here"])
        agent.send(["cmd": "xmpp_say", "user": "l3alice", "room": room, "body": "me too"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "l3alice", from: "\(room)/dave", body: "still here"),
                On.ircPrivmsg(to: "carol", from: "dave", channel: channel, text: "still here"),
                On.ircPrivmsg(to: "carol", from: "alice", channel: channel, text: "me too"),
                On.ircPrivmsg(to: "dave", from: "alice", channel: channel, text: "me too"),
                On.xmppMessage(to: "l3alice", from: "\(room)/alice", body: "me too"),
            ],
            since: after)
    }

    @Test("a puppet keeps its IRC nick across a restart: Jürgen, who got Jurgen_ because an IRC user had Jurgen, comes back as Jurgen_ after that user left")
    func puppetNickStable() throws {
        let lab = try RestartLab(prefix: "bridge-nicks")
        defer { lab.close() }
        let (servers, directory, master, agent) = (lab.servers, lab.directory, lab.master, lab.agent)
        let channel = "#restart2", room = "restart2@\(LabServers.masterDomain)", shadow = "\(channel)%lab@\(LabServers.bridgeDomain)"
        let database = directory.appendingPathComponent("bridge.sqlite")
        var bridge = try lab.startBridged(
            channel: channel, room: "restart2", ircUsers: ["carol", "Jurgen"], database: database, xmpp: ("rsjuergen", "Jürgen"), puppet: "Jurgen_")
        defer { _ = bridge.stop() }
        agent.send(["cmd": "irc_send", "user": "Jurgen", "line": "QUIT :bye"])
        try agent.waitFor("the IRC Jurgen left") { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "Jurgen" }

        let mark = agent.mark
        #expect(bridge.stop() == 0)
        try master.waitForLog("link split", "shadow=\(shadow)", timeout: 10)
        bridge = try Self.startBridge(servers, directory: directory.appendingPathComponent("bridge2"), database: database, channel: channel, room: "restart2")
        agent.send(["cmd": "xmpp_say", "user": "rsjuergen", "room": room, "body": "still me"])
        try agent.expectExactlyOnce(
            [
                On.irc(to: "carol", "QUIT", from: "Jurgen_"), On.irc(to: "carol", "QUIT", from: "sbridge"),
                On.irc(to: "carol", "JOIN", from: "sbridge"), On.irc(to: "carol", "JOIN", from: "Jurgen_"),
                On.ircPrivmsg(to: "carol", from: "Jurgen_", channel: channel, text: "still me"),
                On.xmppMessage(to: "rsjuergen", from: "\(room)/Jürgen", body: "still me"),
            ],
            since: mark, quiet: 2, timeout: 30)
    }

    @Test("draft/chathistory across a restart (scripted IRC peer): the restarted bridge asks for the lines after the last one it relayed, and each said while it was down reaches the room once")
    func chathistoryAcrossRestart() throws {
        let lab = try RestartLab(prefix: "bridge-history")
        defer { lab.close() }
        let (servers, directory, master, agent) = (lab.servers, lab.directory, lab.master, lab.agent)
        agent.send(["cmd": "scripted_irc_server", "user": "chr", "names": ["carol"], "caps": "batch message-tags server-time draft/chathistory"])
        let port = try #require(try agent.waitFor("the scripted IRC server") { $0.kind == "scripted_irc_listening" }.port)
        let channel = "#chr", room = "chr1@\(LabServers.masterDomain)", shadow = "\(channel)%scripted@\(LabServers.bridgeDomain)"
        let database = directory.appendingPathComponent("bridge.sqlite")

        var bridge = try Self.startBridge(
            servers, directory: directory.appendingPathComponent("bridge1"), database: database, channel: channel, room: "chr1", network: "scripted", ircPort: port)
        defer { _ = bridge.stop() }
        try master.waitForLog("link federated", "shadow=\(shadow)", timeout: 20)
        try agent.xmppUserJoins("chrx", prosody: servers.prosody, room: room, nick: "xena")
        Thread.sleep(forTimeInterval: 0.5)
        let before = "@time=2026-11-25T10:00:00.000Z;msgid=r1 :carol!u@h PRIVMSG #chr :before the restart"
        var mark = agent.mark
        agent.scriptedIRCSend("chr", channel: channel, line: before)
        try agent.expectExactlyOnce([On.xmppMessage(to: "chrx", from: "\(room)/carol", body: "before the restart")], since: mark)

        mark = agent.mark
        #expect(bridge.stop() == 0)
        try master.waitForLog("link split", "shadow=\(shadow)", timeout: 10)
        agent.send([
            "cmd": "scripted_irc_history", "user": "chr",
            "lines": [before, "@time=2026-11-25T10:00:07.000Z;msgid=r2 :carol!u@h PRIVMSG #chr :said while the bridge was down"],
        ])
        bridge = try Self.startBridge(
            servers, directory: directory.appendingPathComponent("bridge2"), database: database, channel: channel, room: "chr1", network: "scripted", ircPort: port)
        try agent.waitFor("the catch-up request", since: mark, timeout: 30) { $0.kind == "scripted_irc_received" && $0.command == "CHATHISTORY" }
        #expect(agent.events(since: mark).first { $0.kind == "scripted_irc_received" && $0.command == "CHATHISTORY" }?.raw == "CHATHISTORY AFTER #chr msgid=r1 100")
        try agent.expectExactlyOnce([On.xmppMessage(to: "chrx", from: "\(room)/carol", body: "said while the bridge was down")], since: mark, quiet: 2, timeout: 30)
    }
}
