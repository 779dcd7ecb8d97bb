import Foundation
import Lab
import Testing

/// Issue 5 against the IRCv3 server of the lab: InspIRCd 3 with Atheme services, through
/// Prosody. SASL, TLS, and every capability InspIRCd offers switched on at once.
@Suite("IRC connections through InspIRCd with Atheme: SASL, TLS, IRCv3", .serialized, .labServersWithInspIRCd)
struct IRCv3ServerTests {
    @Test("SASL PLAIN with a good password, echo-message and away-notify on: one line each way, exactly once, and the bridge is marked a bot; another Shadowbridge's puppet (extended-join realname) is no occupant")
    func saslAndEveryCapability() throws {
        let servers = try LabServers.require()
        let inspircd = try #require(servers.inspircd)
        try inspircd.registerAccount("sbacct", password: "bridge-secret")
        let secrets = try Lab.makeTemporaryDirectory(prefix: "secrets")
        defer { Lab.removeUnlessKept(secrets) }
        let passwordFile = secrets.appendingPathComponent("sasl-password")
        try "bridge-secret\n".write(to: passwordFile, atomically: true, encoding: .utf8)

        let r = try BridgedRoom(
            servers: servers, name: "v3sasl", ircUsers: ["carol", "dave"], xmppUsers: [("v3x", "xena")], ircPort: inspircd.port,
            networkSettings: "sasl = \"plain\"\nsasl_account = \"sbacct\"\nsasl_password_file = \"\(passwordFile.path)\"\nother_shadowbridges = true")
        defer { r.close() }
        try r.bridge.waitForLog("logged in with SASL", "account=sbacct")
        try r.bridge.waitForLog("IRC capabilities", "echo-message")
        #expect(r.bridge.logLines(containing: "IRC capabilities").last.map { line in
            ["away-notify", "account-tag", "batch", "extended-join", "multi-prefix", "server-time", "userhost-in-names"].allSatisfy(line.contains)
        } == true)
        #expect(!r.bridge.log.contains("bridge-secret"), "the password never reaches the log")

        var mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :hello from InspIRCd")
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "v3x", from: r.occupant("carol"), body: "hello from InspIRCd"), On.ircPrivmsg(to: "dave", from: "carol", channel: r.channel, text: "hello from InspIRCd")],
            since: mark)

        // The puppet's own line comes back to it with echo-message: it must not cross again.
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "v3x", "room": r.room, "body": "hello from XMPP"])
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "v3x", from: r.occupant("xena"), body: "hello from XMPP"),
                On.ircPrivmsg(to: "carol", from: "xena", channel: r.channel, text: "hello from XMPP"),
                On.ircPrivmsg(to: "dave", from: "xena", channel: r.channel, text: "hello from XMPP"),
            ], since: mark)

        // BOT=B in ISUPPORT: the bridge's own connection set +B (WHOIS answers 335).
        mark = r.agent.mark
        r.irc("carol", "WHOIS sbridge")
        try r.agent.waitFor("WHOIS says the bridge is a bot", since: mark) { $0.user == "carol" && $0.command == "335" }
        r.irc("carol", "WHOIS xena")
        try r.agent.waitFor("the end of WHOIS xena", since: mark) { $0.user == "carol" && $0.command == "318" && $0.params.dropFirst().first == "xena" }
        #expect(!r.agent.events(since: mark).contains { $0.user == "carol" && $0.command == "335" && $0.params.dropFirst().first == "xena" }, "puppets are people, not bots")
        // deaf_puppets: InspIRCd's RPL_MYINFO names +d (the deaf module); the puppet set it and
        // the server confirmed, and the bridge's own connection still hears the channel.
        #expect(r.bridge.logLines(containing: "puppet user modes", "puppet=xena", "+d").count == 1, "\(r.bridge.logLines(containing: "puppet user modes"))")
        mark = r.agent.mark
        r.irc("dave", "PRIVMSG \(r.channel) :xena's puppet is deaf")
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "v3x", from: r.occupant("dave"), body: "xena's puppet is deaf"), On.ircPrivmsg(to: "carol", from: "dave", channel: r.channel, text: "xena's puppet is deaf")],
            since: mark)

        // Flow J through extended-join: another Shadowbridge's puppet (its realname says so)
        // joins and speaks; the room sees neither, IRC sees both once.
        r.agent.send(["cmd": "irc_connect", "user": "yann", "port": inspircd.port, "nick": "yann", "realname": "yann (XMPP, via Shadowbridge)"])
        try r.agent.waitFor("yann registered") { $0.user == "yann" && $0.command == "001" }
        mark = r.agent.mark
        r.irc("yann", "JOIN \(r.channel)")
        r.irc("yann", "PRIVMSG \(r.channel) :from another bridge")
        try r.agent.expectExactlyOnce(
            [
                On.irc(to: "carol", "JOIN", from: "yann"), On.irc(to: "dave", "JOIN", from: "yann"), On.irc(to: "yann", "JOIN", from: "yann"),
                On.ircPrivmsg(to: "carol", from: "yann", channel: r.channel, text: "from another bridge"),
                On.ircPrivmsg(to: "dave", from: "yann", channel: r.channel, text: "from another bridge"),
            ], since: mark)
    }

    @Test("replies by msgid (+draft/reply, InspIRCd's client tags): an IRCv3 client's reply to an XMPP user's line is a XEP-0461 reply to it, and an XMPP reply to an IRC line carries that line's msgid; mIRC users see nick: text, each line once")
    func repliesByMsgID() throws {
        let servers = try LabServers.require()
        let inspircd = try #require(servers.inspircd)
        let r = try BridgedRoom(
            servers: servers, name: "v3reply", ircUsers: ["carol", "dave"], xmppUsers: [("v3r", "xena")], ircPort: inspircd.port, ircCaps: ["carol": "message-tags"])
        defer { r.close() }

        // xena's line: carol sees the msgid InspIRCd gave it; the room gave it a stanza-id.
        var mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "v3r", "room": r.room, "body": "lunch at noon?"])
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "v3r", from: r.occupant("xena"), body: "lunch at noon?"),
                On.ircPrivmsg(to: "carol", from: "xena", channel: r.channel, text: "lunch at noon?"),
                On.ircPrivmsg(to: "dave", from: "xena", channel: r.channel, text: "lunch at noon?"),
            ], since: mark)
        let seen = r.agent.events(since: mark)
        let xenaMsgID = try #require(seen.first { $0.user == "carol" && $0.command == "PRIVMSG" }?.ircTag("msgid"))
        let xenaLine = seen.first { $0.user == "v3r" && $0.kind == "message" }
        let xenaStanzaID = try #require(xenaLine?.stanzaID, "\(xenaLine?.xml ?? "no message")")

        // carol (an IRCv3 client) answers it: xena gets a XEP-0461 reply naming her line.
        mark = r.agent.mark
        r.irc("carol", "@+draft/reply=\(xenaMsgID) PRIVMSG \(r.channel) :yes, at the usual place")
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "v3r", from: r.occupant("carol"), body: "yes, at the usual place"),
                On.ircPrivmsg(to: "dave", from: "carol", channel: r.channel, text: "yes, at the usual place"),
            ], since: mark)
        let answer = r.agent.events(since: mark).first { $0.user == "v3r" && $0.kind == "message" }?.xml ?? ""
        #expect(answer.contains("urn:xmpp:reply:0") && answer.contains("id=\"\(xenaStanzaID)\"") && answer.contains("to=\"\(r.occupant("xena"))\""), "\(answer)")

        // dave's line; xena answers it with XEP-0461: carol's client gets +draft/reply with
        // dave's msgid, and both see "dave: " in front.
        mark = r.agent.mark
        r.irc("dave", "PRIVMSG \(r.channel) :who is in?")
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "v3r", from: r.occupant("dave"), body: "who is in?"), On.ircPrivmsg(to: "carol", from: "dave", channel: r.channel, text: "who is in?")],
            since: mark)
        let daveLine = r.agent.events(since: mark)
        let daveMsgID = try #require(daveLine.first { $0.user == "carol" && $0.command == "PRIVMSG" }?.ircTag("msgid"))
        let daveMessage = daveLine.first { $0.user == "v3r" && $0.kind == "message" }
        let daveStanzaID = try #require(daveMessage?.stanzaID, "\(daveMessage?.xml ?? "no message")")
        mark = r.agent.mark
        r.agent.send([
            "cmd": "xmpp_raw", "user": "v3r",
            "xml": "<message to='\(r.room)' type='groupchat' id='rr1'><body>me!</body><reply xmlns='urn:xmpp:reply:0' to='\(r.occupant("dave"))' id='\(daveStanzaID)'/></message>",
        ])
        try r.agent.expectExactlyOnce(
            [
                Expected("xena's reply is reflected") { $0.user == "v3r" && $0.kind == "message" && $0.id == "rr1" },
                On.ircPrivmsg(to: "carol", from: "xena", channel: r.channel, text: "dave: me!"),
                On.ircPrivmsg(to: "dave", from: "xena", channel: r.channel, text: "dave: me!"),
            ], since: mark)
        let toCarol = r.agent.events(since: mark).first { $0.user == "carol" && $0.command == "PRIVMSG" }
        #expect(toCarol?.ircTag("+draft/reply") == daveMsgID, "\(toCarol?.raw ?? "nothing")")
    }

    @Test("away-notify: an IRC user's AWAY is one presence with show away and the message; back is one presence without")
    func awayNotify() throws {
        let servers = try LabServers.require()
        let inspircd = try #require(servers.inspircd)
        let r = try BridgedRoom(servers: servers, name: "v3away", ircUsers: ["carol", "dave"], xmppUsers: [("v3a", "xena")], ircPort: inspircd.port)
        defer { r.close() }
        try r.bridge.waitForLog("IRC capabilities", "away-notify")
        Thread.sleep(forTimeInterval: 0.5)
        var mark = r.agent.mark
        r.irc("carol", "AWAY :\u{2}lunch\u{2}, back at 2")
        try r.agent.expectExactlyOnce([On.xmppPresence(to: "v3a", from: r.occupant("carol"), unavailable: false, status: "lunch, back at 2")], since: mark)
        let away = r.agent.events(since: mark).first { $0.user == "v3a" && $0.kind == "presence" && $0.from == r.occupant("carol") }
        #expect(away?.show == "away")
        mark = r.agent.mark
        r.irc("carol", "AWAY")
        try r.agent.expectExactlyOnce([On.xmppPresence(to: "v3a", from: r.occupant("carol"), unavailable: false)], since: mark)
        let back = r.agent.events(since: mark).first { $0.user == "v3a" && $0.kind == "presence" && $0.from == r.occupant("carol") }
        #expect(back?.show == nil && back?.status == nil, "\(String(describing: back))")
    }

    @Test("A nick held by services: an XMPP user called NickServ gets another IRC nick, which never shows in the room as a nick change")
    func servicesHeldNick() throws {
        let servers = try LabServers.require()
        let inspircd = try #require(servers.inspircd)
        let r = try BridgedRoom(servers: servers, name: "v3held", ircUsers: ["carol"], xmppUsers: [], ircPort: inspircd.port)
        defer { r.close() }
        try r.agent.xmppUserJoins("v3h", prosody: servers.prosody, room: r.room, nick: "NickServ")
        // Atheme's NickServ holds the nick: the puppet registers under an alternative.
        let join = try r.agent.waitFor("the puppet joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick?.hasPrefix("NickServ") == true }
        let ircNick = try #require(join.nick)
        #expect(ircNick != "NickServ", "\(ircNick)")
        Thread.sleep(forTimeInterval: 0.5)
        let mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "v3h", "room": r.room, "body": "not the real NickServ"])
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "v3h", from: r.occupant("NickServ"), body: "not the real NickServ"),
                On.ircPrivmsg(to: "carol", from: ircNick, channel: r.channel, text: "not the real NickServ"),
            ], since: mark)
        #expect(!r.agent.events(since: 0).contains { $0.user == "v3h" && $0.kind == "presence" && $0.codes.contains(303) }, "no nick change in the room")
    }

    @Test("SASL PLAIN with a wrong password: a clear error, no JOIN, and the server is not tried again")
    func saslWrongPassword() throws {
        let servers = try LabServers.require()
        let inspircd = try #require(servers.inspircd)
        try inspircd.registerAccount("sbbad", password: "right-password")
        let directory = try Lab.makeTemporaryDirectory(prefix: "v3bad")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("carol", port: inspircd.port, channel: "#v3bad")
        let mark = agent.mark
        let bridge = try ShadowbridgeProcess(
            servers: servers, directory: directory, channels: [("#v3bad", "v3bad")], server: "irc://127.0.0.1:\(inspircd.port)",
            networkSettings: "sasl = \"plain\"\nsasl_account = \"sbbad\"\nsasl_password = \"wrong-password\"")
        defer { _ = bridge.stop() }
        try bridge.waitForLog("IRC registration failed", "SASL PLAIN failed: 904")
        try bridge.waitForLog("IRC network stopped", "network=lab")
        Thread.sleep(forTimeInterval: 3)
        #expect(bridge.logLines(containing: "IRC server refused the bridge").count == 1, "one attempt, no retry storm")
        #expect(!agent.events(since: mark).contains { $0.user == "carol" && $0.command == "JOIN" }, "nothing joined")
        #expect(!bridge.log.contains("wrong-password"))
        #expect(bridge.process.isRunning, "the rest of the bridge goes on")
    }

    @Test("TLS: a self-signed certificate fails verification; the same certificate as CA file passes; a pinned fingerprint passes, a wrong pin fails")
    func tls() throws {
        let servers = try LabServers.require()
        let inspircd = try #require(servers.inspircd)
        let directory = try Lab.makeTemporaryDirectory(prefix: "v3tls")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        try agent.ircUserJoins("carol", port: inspircd.port, channel: "#tlsca")
        try agent.ircUserJoins("dave", port: inspircd.port, channel: "#tlspin")
        let server = "ircs://127.0.0.1:\(inspircd.tlsPort)"
        let networks: [(name: String, nick: String, settings: String)] = [
            ("tlsnone", "sbnone", ""),
            ("tlsca", "sbca", "tls_ca_file = \"\(inspircd.certificateFile.path)\""),
            ("tlspin", "sbpin", "tls_fingerprint = \"\(inspircd.certificateSHA256)\""),
            ("tlswrong", "sbwrong", "tls_fingerprint = \"\(String(repeating: "00:", count: 31))00\""),
        ]
        var mappings: [String: String] = [:]
        for network in networks {
            mappings["\(network.name).toml"] = ShadowbridgeProcess.mapping(
                network: network.name, server: server, nick: network.nick, channels: [("#\(network.name)", network.name)], networkSettings: network.settings)
        }
        let bridge = try ShadowbridgeProcess(
            directory: directory, config: ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges")),
            mappings: mappings)
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#tlsca%tlsca@")
        try bridge.waitForLog("link federated", "shadow=#tlspin%tlspin@")
        for failing in ["tlsnone", "tlswrong"] {
            try bridge.waitForLog("IRC server refused the bridge", "network=\(failing)", "TLS handshake failed")
        }
        let verifyFailure = bridge.logLines(containing: "network=tlsnone", "TLS handshake failed").first ?? ""
        #expect(verifyFailure.contains("CERTIFICATE_VERIFY_FAILED") || verifyFailure.lowercased().contains("certificate"), "\(verifyFailure)")

        // Puppets connect through TLS too: a line each way across both verified networks. (Two
        // room nicks: both "networks" are the same InspIRCd, where one nick is one user.)
        try agent.xmppUserJoins("tlx", prosody: servers.prosody, room: "tlsca@\(LabServers.masterDomain)", nick: "xena")
        try agent.xmppJoin("tlx", room: "tlspin@\(LabServers.masterDomain)", nick: "xenp")
        try agent.waitFor("xena's puppet joins #tlsca", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xena" }
        try agent.waitFor("xenp's puppet joins #tlspin", timeout: 20) { $0.user == "dave" && $0.command == "JOIN" && $0.nick == "xenp" }
        Thread.sleep(forTimeInterval: 0.5)
        let mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG #tlsca :over TLS, CA file"])
        agent.send(["cmd": "xmpp_say", "user": "tlx", "room": "tlspin@\(LabServers.masterDomain)", "body": "over TLS, pinned"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "tlx", from: "tlsca@\(LabServers.masterDomain)/carol", body: "over TLS, CA file"),
                On.xmppMessage(to: "tlx", from: "tlspin@\(LabServers.masterDomain)/xenp", body: "over TLS, pinned"),
                On.ircPrivmsg(to: "dave", from: "xenp", channel: "#tlspin", text: "over TLS, pinned"),
            ], since: mark)
    }

    @Test("SASL EXTERNAL over TLS with a client certificate whose fingerprint the account holds: logged in before joining, a line crosses once")
    func saslExternal() throws {
        let servers = try LabServers.require()
        let inspircd = try #require(servers.inspircd)
        let client = try inspircd.makeClientCertificate(named: "sbext")
        try inspircd.registerAccount("sbextacct", password: "unused-by-external", certificateFingerprint: client.fingerprint)
        let r = try BridgedRoom(
            servers: servers, name: "v3ext", ircUsers: ["carol"], xmppUsers: [("v3e", "xena")], ircPort: inspircd.port,
            server: "ircs://127.0.0.1:\(inspircd.tlsPort)",
            networkSettings: """
                tls_fingerprint = "\(inspircd.certificateSHA256)"
                tls_certificate = "\(client.certificate.path)"
                tls_key = "\(client.key.path)"
                sasl = "external"
                """)
        defer { r.close() }
        try r.bridge.waitForLog("logged in with SASL", "account=sbextacct")
        let mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :hello over EXTERNAL")
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "v3e", from: r.occupant("carol"), body: "hello over EXTERNAL")], since: mark)
    }

    @Test("two IRC networks in one room (ngircd and InspIRCd): everyone seen once by everyone, each line once everywhere, nicks unique across both")
    func twoNetworksOneRoom() throws {
        let servers = try LabServers.require()
        let inspircd = try #require(servers.inspircd)
        let directory = try Lab.makeTemporaryDirectory(prefix: "two1")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let channel = "#two1", room = "two1@\(LabServers.masterDomain)"
        try agent.ircUserJoins("carol", port: servers.ngircd.port, channel: channel)
        try agent.ircUserJoins("ivy", port: inspircd.port, channel: channel)
        let bridge = try ShadowbridgeProcess(
            directory: directory,
            config: ShadowbridgeProcess.config(xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges")),
            mappings: [
                "lab.toml": ShadowbridgeProcess.mapping(network: "lab", ircPort: servers.ngircd.port, channels: [(channel, "two1")]),
                // Puppets on InspIRCd carry a suffix, so an InspIRCd user may share an ngircd user's nick there.
                "insp.toml": ShadowbridgeProcess.mapping(
                    network: "insp", server: "irc://127.0.0.1:\(inspircd.port)", channels: [(channel, "two1")], networkSettings: "puppet_nick = \"{nick}|n\""),
            ])
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#two1%lab@")
        try bridge.waitForLog("link federated", "shadow=#two1%insp@")
        try agent.xmppUserJoins("twx", prosody: servers.prosody, room: room, nick: "xena")
        try agent.waitFor("carol sees ivy's puppet", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "ivy" }
        try agent.waitFor("carol sees xena's puppet", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xena" }
        try agent.waitFor("ivy sees carol's puppet", timeout: 20) { $0.user == "ivy" && $0.command == "JOIN" && $0.nick == "carol|n" }
        try agent.waitFor("ivy sees xena's puppet", timeout: 20) { $0.user == "ivy" && $0.command == "JOIN" && $0.nick == "xena|n" }
        Thread.sleep(forTimeInterval: 1)
        let roster = agent.events(since: 0).filter { $0.user == "twx" && $0.kind == "presence" && $0.type != "unavailable" }.compactMap(\.from)
        #expect(roster.sorted() == ["\(room)/carol", "\(room)/ivy", "\(room)/xena"], "each user once: \(roster)")
        for watcher in ["carol", "ivy"] {
            let joins = agent.events(since: 0).filter { $0.user == watcher && $0.command == "JOIN" }.compactMap(\.nick)
            #expect(Set(joins).count == joins.count, "\(watcher) saw nobody join twice: \(joins)")
        }

        var mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "PRIVMSG \(channel) :hello from ngircd"])
        try agent.expectExactlyOnce(
            [On.xmppMessage(to: "twx", from: "\(room)/carol", body: "hello from ngircd"), On.ircPrivmsg(to: "ivy", from: "carol|n", channel: channel, text: "hello from ngircd")],
            since: mark)
        mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "ivy", "line": "PRIVMSG \(channel) :hello from InspIRCd"])
        try agent.expectExactlyOnce(
            [On.xmppMessage(to: "twx", from: "\(room)/ivy", body: "hello from InspIRCd"), On.ircPrivmsg(to: "carol", from: "ivy", channel: channel, text: "hello from InspIRCd")],
            since: mark)
        mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "twx", "room": room, "body": "hello from XMPP"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "twx", from: "\(room)/xena", body: "hello from XMPP"),
                On.ircPrivmsg(to: "carol", from: "xena", channel: channel, text: "hello from XMPP"),
                On.ircPrivmsg(to: "ivy", from: "xena|n", channel: channel, text: "hello from XMPP"),
            ], since: mark)

        // Carol on InspIRCd folds like carol on ngircd: one room nick each, the second suffixed.
        mark = agent.mark
        try agent.ircUserJoins("Carol", port: inspircd.port, channel: channel)
        try agent.waitFor("the second Carol is in the room as Carol|irc", since: mark) { $0.user == "twx" && $0.kind == "presence" && $0.from == "\(room)/Carol|irc" }
        try agent.waitFor("the second Carol is told", since: mark) { $0.user == "Carol" && $0.command == "NOTICE" && $0.params.last?.contains("there you are Carol|irc") == true }
        try agent.waitFor("ngircd shows her puppet", since: mark, timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "Carol|irc" }
        mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "Carol", "line": "PRIVMSG \(channel) :the other Carol"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "twx", from: "\(room)/Carol|irc", body: "the other Carol"),
                On.ircPrivmsg(to: "carol", from: "Carol|irc", channel: channel, text: "the other Carol"),
                On.ircPrivmsg(to: "ivy", from: "Carol", channel: channel, text: "the other Carol"),
            ], since: mark)
    }
}
