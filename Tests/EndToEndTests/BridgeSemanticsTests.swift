import Foundation
import Lab
import Testing

/// Issue 6: what mIRC users and XMPP users see of each other. Every scenario but the netsplit
/// (two linked ngircd) runs once against ngircd and once against InspIRCd.
@Suite("Bridge semantics through Prosody, and ngircd or InspIRCd", .serialized, .labServersWithInspIRCd)
struct BridgeSemanticsTests {
    @Test("nick change both ways: one 303 nick change in the room, one NICK on IRC, never a leave and a join", arguments: IRCServerKind.allCases)
    func nickChangeBothWays(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "nick1", ircUsers: ["carol", "dave"], xmppUsers: [("nxa", "xanna")])
        defer { r.close() }
        var mark = r.agent.mark
        r.irc("carol", "NICK caro")
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna sees carol leave with 303 to caro") {
                    $0.user == "nxa" && $0.kind == "presence" && $0.from == r.occupant("carol") && $0.type == "unavailable" && $0.codes == [303]
                },
                On.xmppPresence(to: "nxa", from: r.occupant("caro"), unavailable: false),
                On.irc(to: "carol", "NICK", from: "carol"),
                On.irc(to: "dave", "NICK", from: "carol"),
            ], since: mark)

        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_join", "user": "nxa", "room": r.room, "nick": "xan"])
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna's own 303") { $0.user == "nxa" && $0.kind == "presence" && $0.from == r.occupant("xanna") && $0.type == "unavailable" && $0.codes.contains(303) },
                Expected("xanna's new self-presence") { $0.user == "nxa" && $0.kind == "presence" && $0.from == r.occupant("xan") && $0.codes.contains(110) },
                Expected("caro sees NICK xanna -> xan") { $0.user == "carol" && $0.command == "NICK" && $0.nick == "xanna" && $0.params.last == "xan" },
                Expected("dave sees NICK xanna -> xan") { $0.user == "dave" && $0.command == "NICK" && $0.nick == "xanna" && $0.params.last == "xan" },
            ], since: mark)

        // And the renamed users still talk, under their new names, once each.
        mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :still me")
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "nxa", from: r.occupant("caro"), body: "still me"), On.ircPrivmsg(to: "dave", from: "caro", channel: r.channel, text: "still me")],
            since: mark)
    }

    @Test("a KICK on IRC is 307 in the room, with the kicker and the reason", arguments: IRCServerKind.allCases)
    func ircKick(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "kick1", ircUsers: ["carol", "dave"], xmppUsers: [("kxa", "xanna")])
        defer { r.close() }
        let mark = r.agent.mark
        r.irc("carol", "KICK \(r.channel) dave :off-topic")
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna sees dave kicked by carol: off-topic") {
                    $0.user == "kxa" && $0.kind == "presence" && $0.from == r.occupant("dave") && $0.type == "unavailable" && $0.codes == [307]
                },
                On.irc(to: "carol", "KICK", from: "carol"),
                On.irc(to: "dave", "KICK", from: "carol"),
            ], since: mark)
        let kicked = r.agent.events(since: mark).first { $0.user == "kxa" && $0.codes == [307] }
        #expect(kicked?.xml?.contains("<actor nick=\"carol\"") == true || kicked?.xml?.contains("<actor nick='carol'") == true, "\(kicked?.xml ?? "")")
        #expect(kicked?.xml?.contains("off-topic") == true)
    }

    @Test("topic both ways: TOPIC is the room subject, a subject is the channel topic", arguments: IRCServerKind.allCases)
    func topicBothWays(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "topic1", ircUsers: ["carol", "dave"], xmppUsers: [("txa", "xanna")])
        defer { r.close() }
        // Puppets have no channel operator status: lift +t if the server set it.
        let modesMark = r.agent.mark
        r.irc("carol", "MODE \(r.channel)")
        let modes = try r.agent.waitFor("the channel modes", since: modesMark) { $0.user == "carol" && $0.command == "324" }
        if modes.params.count > 2, modes.params[2].contains("t") {
            r.irc("carol", "MODE \(r.channel) -t")
            try r.agent.waitFor("-t", since: modesMark) { $0.user == "dave" && $0.command == "MODE" }
        }
        Thread.sleep(forTimeInterval: 0.3)
        var mark = r.agent.mark
        r.irc("carol", "TOPIC \(r.channel) :Release day — ünïcode ✓")
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna gets the subject from carol") { $0.user == "txa" && $0.kind == "message" && $0.from == r.occupant("carol") && $0.subject == "Release day — ünïcode ✓" },
                On.irc(to: "carol", "TOPIC", from: "carol"),
                On.irc(to: "dave", "TOPIC", from: "carol"),
            ], since: mark)

        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_subject", "user": "txa", "room": r.room, "subject": "Set from XMPP"])
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna's subject reflected") { $0.user == "txa" && $0.kind == "message" && $0.from == r.occupant("xanna") && $0.subject == "Set from XMPP" },
                Expected("carol sees TOPIC from xanna") { $0.user == "carol" && $0.command == "TOPIC" && $0.nick == "xanna" && $0.params.last == "Set from XMPP" },
                Expected("dave sees TOPIC from xanna") { $0.user == "dave" && $0.command == "TOPIC" && $0.nick == "xanna" && $0.params.last == "Set from XMPP" },
            ], since: mark)
    }

    @Test("/me both ways: CTCP ACTION is a /me body, a /me body is CTCP ACTION; a NOTICE is marked in the room, a CTCP reply stays on IRC", arguments: IRCServerKind.allCases)
    func meBothWays(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "me1", ircUsers: ["carol", "dave"], xmppUsers: [("mxa", "xanna")])
        defer { r.close() }
        var mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :\u{1}ACTION waves at everyone\u{1}")
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "mxa", from: r.occupant("carol"), body: "/me waves at everyone"),
                On.ircPrivmsg(to: "dave", from: "carol", channel: r.channel, text: "\u{1}ACTION waves at everyone\u{1}"),
            ], since: mark)
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "mxa", "room": r.room, "body": "/me waves back"])
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "mxa", from: r.occupant("xanna"), body: "/me waves back"),
                On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "\u{1}ACTION waves back\u{1}"),
                On.ircPrivmsg(to: "dave", from: "xanna", channel: r.channel, text: "\u{1}ACTION waves back\u{1}"),
            ], since: mark)

        // A NOTICE to the channel is marked in the room; a CTCP reply is not relayed at all.
        mark = r.agent.mark
        r.irc("carol", "NOTICE \(r.channel) :the build is green")
        r.irc("carol", "NOTICE \(r.channel) :\u{1}VERSION mIRC v7.77\u{1}")
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "mxa", from: r.occupant("carol"), body: "[notice] the build is green"),
                Expected("dave gets carol's NOTICE") { $0.user == "dave" && $0.command == "NOTICE" && $0.nick == "carol" && $0.params.last == "the build is green" },
                Expected("dave gets carol's CTCP reply, on IRC only") { $0.user == "dave" && $0.command == "NOTICE" && $0.nick == "carol" && $0.params.last?.hasPrefix("\u{1}VERSION") == true },
            ], since: mark)
    }

    @Test("cp1252 and mIRC formatting both ways: café, €, “quotes” as UTF-8; bold and italic as XEP-0393, colours dropped; XEP-0393 from XMPP as mIRC codes", arguments: IRCServerKind.allCases)
    func cp1252(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "cp1", ircUsers: ["carol"], xmppUsers: [("cxa", "xanna")])
        defer { r.close() }
        let mark = r.agent.mark
        // "caf\xe9 \x80 \x93 \x93quotes\x94" in Windows-1252, as mIRC sends it.
        let bytes: [UInt8] = Array("PRIVMSG \(r.channel) :caf".utf8) + [0xE9, 0x20, 0x80, 0x35, 0x20, 0x93] + Array("quotes".utf8) + [0x94]
        r.agent.send(["cmd": "irc_send", "user": "carol", "hex": bytes.map { String(format: "%02x", $0) }.joined()])
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "cxa", from: r.occupant("carol"), body: "café €5 “quotes”")], since: mark)

        // mIRC colours and bold: styling where XMPP has it, no stray colour digits.
        let styled = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :\u{2}important\u{2}: the \u{3}04,01build\u{3} is \u{1D}red\u{1D}")
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "cxa", from: r.occupant("carol"), body: "*important*: the build is _red_")], since: styled)

        // And back: XEP-0393 styling from XMPP as mIRC bold and italic around the directives;
        // snake_case stays as written.
        let back = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "cxa", "room": r.room, "body": "*fixed* in build_42, _probably_"])
        try r.agent.expectExactlyOnce(
            [
                On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "\u{2}*fixed*\u{2} in build_42, \u{1D}_probably_\u{1D}"),
                On.xmppMessage(to: "cxa", from: r.occupant("xanna"), body: "*fixed* in build_42, _probably_"),
            ], since: back)
    }

    @Test("private messages both ways, and CTCP VERSION, PING and TIME to a puppet answered by the bridge, never relayed", arguments: IRCServerKind.allCases)
    func privateMessagesBothWays(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "pm1", ircUsers: ["carol", "dave"], xmppUsers: [("pxa", "xanna"), ("pxb", "xbert")])
        defer { r.close() }
        var mark = r.agent.mark
        r.irc("carol", "PRIVMSG xanna :just between us ✓")
        try r.agent.expectExactlyOnce(
            [Expected("xanna gets carol's private message") { $0.user == "pxa" && $0.kind == "message" && $0.type == "chat" && $0.from == r.occupant("carol") && $0.body == "just between us ✓" }],
            since: mark)

        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_pm", "user": "pxa", "room": r.room, "nick": "carol", "body": "got it ✓"])
        try r.agent.expectExactlyOnce(
            [Expected("carol gets xanna's private message") { $0.user == "carol" && $0.command == "PRIVMSG" && $0.nick == "xanna" && $0.params == ["carol", "got it ✓"] }],
            since: mark)

        mark = r.agent.mark
        r.irc("dave", "PRIVMSG xbert :\u{1}VERSION\u{1}")
        try r.agent.expectExactlyOnce(
            [Expected("dave gets a CTCP VERSION reply from xbert") { $0.user == "dave" && $0.command == "NOTICE" && $0.nick == "xbert" && ($0.params.last ?? "").hasPrefix("\u{1}VERSION Shadowbridge") }],
            since: mark)

        // PING is echoed, TIME answered; neither reaches the XMPP user as text.
        mark = r.agent.mark
        r.irc("dave", "PRIVMSG xbert :\u{1}PING 1764150000\u{1}")
        r.irc("dave", "PRIVMSG xbert :\u{1}TIME\u{1}")
        try r.agent.expectExactlyOnce(
            [
                Expected("dave gets xbert's PING echoed") { $0.user == "dave" && $0.command == "NOTICE" && $0.nick == "xbert" && $0.params.last == "\u{1}PING 1764150000\u{1}" },
                Expected("dave gets xbert's TIME") { $0.user == "dave" && $0.command == "NOTICE" && $0.nick == "xbert" && ($0.params.last ?? "").hasPrefix("\u{1}TIME 20") },
            ], since: mark)
    }

    @Test("an XMPP user can join a mapped room before anyone is on IRC; the first IRC user then meets them", arguments: IRCServerKind.allCases)
    func xmppFirst(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "early1")
        defer { Lab.removeUnlessKept(directory) }
        let room = "early1@\(LabServers.masterDomain)"
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let bridge = try ShadowbridgeProcess(servers: servers, directory: directory, channels: [("#early1", "early1")], server: "irc://127.0.0.1:\(try irc.port(servers))")
        defer { _ = bridge.stop() }
        try bridge.waitForLog("IRC bridge connection registered")
        try bridge.waitForLog("component connected", "domain=\(LabServers.masterDomain)")
        // Joined means a self-presence with 110, not item-not-found.
        try agent.xmppUserJoins("exa", prosody: servers.prosody, room: room, nick: "xanna")
        try agent.ircUserJoins("carol", port: try irc.port(servers), channel: "#early1")
        try agent.waitFor("exa sees carol") { $0.user == "exa" && $0.kind == "presence" && $0.from == "\(room)/carol" }
        try agent.waitFor("carol sees the puppet", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xanna" }
        Thread.sleep(forTimeInterval: 0.5)
        let mark = agent.mark
        agent.send(["cmd": "xmpp_say", "user": "exa", "room": room, "body": "I was here first"])
        try agent.expectExactlyOnce(
            [On.xmppMessage(to: "exa", from: "\(room)/xanna", body: "I was here first"), On.ircPrivmsg(to: "carol", from: "xanna", channel: "#early1", text: "I was here first")],
            since: mark)
    }

    @Test("away from XMPP: <show>away</show> (and dnd) is the puppet's AWAY with the status, available again clears it", arguments: IRCServerKind.allCases)
    func awayFromXMPP(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "away1", ircUsers: ["carol"], xmppUsers: [("axa", "xanna")])
        defer { r.close() }
        var mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_show", "user": "axa", "room": r.room, "nick": "xanna", "show": "away", "status": "at lunch"])
        // One presence in the room; AWAY is not channel traffic, so IRC users see nothing.
        try r.agent.expectExactlyOnce(
            [Expected("xanna's presence update reflected") { $0.user == "axa" && $0.kind == "presence" && $0.from == r.occupant("xanna") && ($0.xml ?? "").contains("<show>away</show>") }],
            since: mark)
        let deadline = Date().addingTimeInterval(10)
        var away: AgentEvent?
        while away == nil && Date() < deadline {
            let mark = r.agent.mark
            r.irc("carol", "WHOIS xanna")
            let end = try r.agent.waitFor("end of WHOIS", since: mark) { $0.user == "carol" && $0.command == "318" }
            away = r.agent.events(since: mark).first { $0.user == "carol" && $0.command == "301" && $0.index < end.index }
            if away == nil { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(away?.params.last == "at lunch", "WHOIS shows no away message")

        // dnd (and xa) are away on IRC too, with their status.
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_show", "user": "axa", "room": r.room, "nick": "xanna", "show": "dnd", "status": "in a meeting"])
        try r.agent.expectExactlyOnce(
            [Expected("xanna's dnd reflected") { $0.user == "axa" && $0.kind == "presence" && $0.from == r.occupant("xanna") && ($0.xml ?? "").contains("<show>dnd</show>") }],
            since: mark)
        let dndDeadline = Date().addingTimeInterval(10)
        var busy: AgentEvent?
        while busy?.params.last != "in a meeting" && Date() < dndDeadline {
            let whois = r.agent.mark
            r.irc("carol", "WHOIS xanna")
            let end = try r.agent.waitFor("end of WHOIS", since: whois) { $0.user == "carol" && $0.command == "318" }
            busy = r.agent.events(since: whois).first { $0.user == "carol" && $0.command == "301" && $0.index < end.index }
            if busy?.params.last != "in a meeting" { Thread.sleep(forTimeInterval: 0.2) }
        }
        #expect(busy?.params.last == "in a meeting", "WHOIS shows \(busy?.params.last ?? "no away message") for dnd")

        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_show", "user": "axa", "room": r.room, "nick": "xanna"])
        try r.agent.expectExactlyOnce(
            [Expected("xanna's return reflected") { $0.user == "axa" && $0.kind == "presence" && $0.from == r.occupant("xanna") && !($0.xml ?? "").contains("<show>") }],
            since: mark)
        mark = r.agent.mark
        r.irc("carol", "WHOIS xanna")
        let end = try r.agent.waitFor("end of WHOIS", since: mark) { $0.user == "carol" && $0.command == "318" }
        #expect(!r.agent.events(since: mark).contains { $0.user == "carol" && $0.command == "301" && $0.index < end.index }, "still away after coming back")
    }

    @Test("channel modes are room roles: @ is moderator, +o and -o change it, +v changes nothing, +oo changes two; never affiliations", arguments: IRCServerKind.allCases)
    func modesToRoles(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "modes1", ircUsers: ["carol", "dave", "erin"], xmppUsers: [("oxa", "xanna")])
        defer { r.close() }
        // carol created the channel on ngircd, so she is @carol: a moderator in the room.
        let carol = r.agent.events(since: 0).last { $0.user == "oxa" && $0.kind == "presence" && $0.from == r.occupant("carol") }
        #expect(carol?.role == "moderator", "\(String(describing: carol))")
        let daveAtJoin = r.agent.events(since: 0).last { $0.user == "oxa" && $0.kind == "presence" && $0.from == r.occupant("dave") }
        #expect(daveAtJoin?.role == "participant")

        var mark = r.agent.mark
        r.irc("carol", "MODE \(r.channel) +o dave")
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna sees dave become a moderator") { $0.user == "oxa" && $0.kind == "presence" && $0.from == r.occupant("dave") && $0.role == "moderator" && $0.type != "unavailable" },
                On.irc(to: "carol", "MODE", from: "carol"),
                On.irc(to: "dave", "MODE", from: "carol"),
                On.irc(to: "erin", "MODE", from: "carol"),
            ], since: mark)
        mark = r.agent.mark
        r.irc("carol", "MODE \(r.channel) -o+v dave dave")
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna sees dave back to participant") { $0.user == "oxa" && $0.kind == "presence" && $0.from == r.occupant("dave") && $0.role == "participant" && $0.type != "unavailable" },
                On.irc(to: "carol", "MODE", from: "carol"),
                On.irc(to: "dave", "MODE", from: "carol"),
                On.irc(to: "erin", "MODE", from: "carol"),
            ], since: mark)

        // One MODE with several targets: one role change for each.
        mark = r.agent.mark
        r.irc("carol", "MODE \(r.channel) +oo dave erin")
        try r.agent.expectExactlyOnce(
            ["dave", "erin"].map { nick in
                Expected("xanna sees \(nick) become a moderator") { $0.user == "oxa" && $0.kind == "presence" && $0.from == r.occupant(nick) && $0.role == "moderator" && $0.type != "unavailable" }
            } + [On.irc(to: "carol", "MODE", from: "carol"), On.irc(to: "dave", "MODE", from: "carol"), On.irc(to: "erin", "MODE", from: "carol")],
            since: mark)
        #expect(!r.agent.events(since: 0).contains { $0.kind == "presence" && ($0.xml ?? "").contains("affiliation=\"owner\"") || ($0.xml ?? "").contains("affiliation=\"admin\"") })
    }

    @Test("an XMPP user in two bridged rooms leaves one: their puppet PARTs that channel with the status, and QUITs only when leaving the last", arguments: IRCServerKind.allCases)
    func leaveOneOfTwoRooms(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "two1")
        defer { Lab.removeUnlessKept(directory) }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let port = try irc.port(servers)
        try agent.ircUserJoins("carol", port: port, channel: "#two1a")
        agent.send(["cmd": "irc_send", "user": "carol", "line": "JOIN #two1b"])
        try agent.waitFor("carol joined #two1b") { $0.user == "carol" && $0.command == "JOIN" && $0.params.first == "#two1b" }
        let bridge = try ShadowbridgeProcess(
            servers: servers, directory: directory, channels: [("#two1a", "two1a"), ("#two1b", "two1b")], server: "irc://127.0.0.1:\(port)")
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#two1a%lab@")
        try bridge.waitForLog("link federated", "shadow=#two1b%lab@")
        let roomA = "two1a@\(LabServers.masterDomain)", roomB = "two1b@\(LabServers.masterDomain)"
        try agent.xmppUserJoins("twx", prosody: servers.prosody, room: roomA, nick: "xanna")
        try agent.xmppJoin("twx", room: roomB, nick: "xanna")
        for channel in ["#two1a", "#two1b"] {
            try agent.waitFor("the puppet joins \(channel)", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xanna" && $0.params.first == channel }
        }
        Thread.sleep(forTimeInterval: 0.5)

        var mark = agent.mark
        agent.send(["cmd": "xmpp_leave", "user": "twx", "room": roomA, "nick": "xanna", "status": "enough of a"])
        try agent.expectExactlyOnce(
            [
                Expected("carol sees xanna PART #two1a with her status") {
                    $0.user == "carol" && $0.command == "PART" && $0.nick == "xanna" && $0.params.first == "#two1a" && $0.params.last == "enough of a"
                },
                Expected("xanna's own leave from a") { $0.user == "twx" && $0.kind == "presence" && $0.from == "\(roomA)/xanna" && $0.type == "unavailable" },
            ], since: mark)

        mark = agent.mark
        agent.send(["cmd": "xmpp_leave", "user": "twx", "room": roomB, "nick": "xanna", "status": "bye now"])
        try agent.expectExactlyOnce(
            [
                Expected("carol sees xanna QUIT with her status") { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "xanna" && ($0.params.last ?? "").contains("bye now") },
                Expected("xanna's own leave from b") { $0.user == "twx" && $0.kind == "presence" && $0.from == "\(roomB)/xanna" && $0.type == "unavailable" },
            ], since: mark)
    }

    @Test("the only IRC user cycles (PART and JOIN at once): the room sees her leave and return, and still hears her", arguments: IRCServerKind.allCases)
    func quickCycle(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "cycle1", ircUsers: ["carol"], xmppUsers: [("yxa", "xanna")])
        defer { r.close() }
        let mark = r.agent.mark
        r.irc("carol", "PART \(r.channel) :brb\r\nJOIN \(r.channel)")
        try r.agent.expectExactlyOnce(
            [
                On.xmppPresence(to: "yxa", from: r.occupant("carol"), unavailable: true, status: "brb"),
                On.xmppPresence(to: "yxa", from: r.occupant("carol"), unavailable: false),
                On.irc(to: "carol", "PART", from: "carol"), On.irc(to: "carol", "JOIN", from: "carol"),
            ], since: mark)
        let after = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :back again")
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "yxa", from: r.occupant("carol"), body: "back again")], since: after)
        let quietAfter = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "yxa", "room": r.room, "body": "welcome back"])
        try r.agent.expectExactlyOnce(
            [On.xmppMessage(to: "yxa", from: r.occupant("xanna"), body: "welcome back"), On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "welcome back")],
            since: quietAfter)
    }

    @Test("nick translation: XMPP nicks IRC cannot carry are transliterated for the puppet (Jürgen -> Jurgen, Дмитрий -> Dmitrij), both ways", arguments: IRCServerKind.allCases)
    func nickTransliteration(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(servers: servers, irc: irc, name: "translit1", ircUsers: ["carol"], xmppUsers: [])
        defer { r.close() }
        var mark = r.agent.mark
        try r.agent.xmppUserJoins("jue1", prosody: servers.prosody, room: r.room, nick: "Jürgen")
        try r.agent.xmppUserJoins("dmi1", prosody: servers.prosody, room: r.room, nick: "Дмитрий")
        try r.agent.waitFor("the puppet Jurgen joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "Jurgen" }
        try r.agent.waitFor("the puppet Dmitrij joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "Dmitrij" }
        Thread.sleep(forTimeInterval: 0.5)
        let joins = r.agent.events(since: mark).filter { $0.user == "carol" && $0.command == "JOIN" }
        #expect(joins.map { $0.nick ?? "" }.sorted() == ["Dmitrij", "Jurgen"], "\(joins)")

        // Lines cross under the translated nick on IRC and the real one in the room.
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "jue1", "room": r.room, "body": "Grüße aus München"])
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "jue1", from: r.occupant("Jürgen"), body: "Grüße aus München"),
                On.xmppMessage(to: "dmi1", from: r.occupant("Jürgen"), body: "Grüße aus München"),
                On.ircPrivmsg(to: "carol", from: "Jurgen", channel: r.channel, text: "Grüße aus München"),
            ], since: mark)
        mark = r.agent.mark
        r.irc("carol", "PRIVMSG Dmitrij :привет from IRC")
        try r.agent.expectExactlyOnce(
            [Expected("Дмитрий gets carol's private message") { $0.user == "dmi1" && $0.kind == "message" && $0.from == r.occupant("carol") && $0.body == "привет from IRC" }],
            since: mark)
    }

    @Test("nick collision: an IRC user whose nick an XMPP user has is in the room once as dave|irc and told so; an XMPP user taking an IRC user's nick gets 409 saying why", arguments: IRCServerKind.allCases)
    func nickCollision(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        // Puppets show as dave[x] on IRC, so the IRC user dave can exist beside the XMPP dave.
        let r = try BridgedRoom(servers: servers, irc: irc, name: "coll1", ircUsers: ["carol"], xmppUsers: [], networkSettings: "puppet_nick = \"{nick}[x]\"")
        defer { r.close() }
        try r.agent.xmppUserJoins("cxa", prosody: servers.prosody, room: r.room, nick: "dave")
        try r.agent.waitFor("the puppet dave[x] joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "dave[x]" }
        Thread.sleep(forTimeInterval: 0.5)

        var mark = r.agent.mark
        try r.agent.ircUserJoins("Dave", port: try irc.port(servers), channel: r.channel)
        try r.agent.waitFor("Dave is told his room nick", since: mark) { $0.user == "Dave" && $0.command == "NOTICE" && $0.nick == "sbridge" }
        try r.agent.waitFor("dave's XMPP user sees Dave|irc", since: mark) { $0.user == "cxa" && $0.kind == "presence" && $0.from == r.occupant("Dave|irc") }
        Thread.sleep(forTimeInterval: 1)
        let seen = r.agent.events(since: mark)
        let notices = seen.filter { $0.user == "Dave" && $0.command == "NOTICE" && $0.nick == "sbridge" }
        #expect(notices.count == 1 && notices.first?.params.last?.contains("there you are Dave|irc") == true, "\(notices)")
        let roomPresences = seen.filter { $0.user == "cxa" && $0.kind == "presence" }
        #expect(roomPresences.map { $0.from ?? "" } == [r.occupant("Dave|irc")], "one presence, under the suffixed nick: \(roomPresences)")

        mark = r.agent.mark
        r.irc("Dave", "PRIVMSG \(r.channel) :two daves now")
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "cxa", from: r.occupant("Dave|irc"), body: "two daves now"),
                On.ircPrivmsg(to: "carol", from: "Dave", channel: r.channel, text: "two daves now"),
            ], since: mark)

        // The other way: the master refuses an XMPP user the IRC user's nick, and says why.
        try r.agent.xmppUserOnline("cxb", prosody: servers.prosody)
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_join", "user": "cxb", "room": r.room, "nick": "CAROL"])
        try r.agent.expectExactlyOnce(
            [Expected("CAROL is refused with conflict") { $0.user == "cxb" && $0.kind == "presence" && $0.type == "error" && $0.error == "conflict" }],
            since: mark)
        let refusal = r.agent.events(since: mark).first { $0.user == "cxb" && $0.error == "conflict" }
        #expect(refusal?.xml?.contains("already in use in this room (as carol) by an IRC user") == true, "\(refusal?.xml ?? "")")
    }

    @Test("a refused IRC user: his nick and the suffixed one are both taken in the room, so he is told once (never a room nick he does not have), and nothing he says reaches the room", arguments: IRCServerKind.allCases)
    func refusedIRCUser(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(servers: servers, irc: irc, name: "refuse1", ircUsers: ["carol"], xmppUsers: [], networkSettings: "puppet_nick = \"{nick}[x]\"")
        defer { r.close() }
        // Short nicks: the puppets ed[x] and ed|irc[x] fit ngircd's NICKLEN of 9.
        try r.agent.xmppUserJoins("rfa", prosody: servers.prosody, room: r.room, nick: "ed")
        try r.agent.xmppUserJoins("rfb", prosody: servers.prosody, room: r.room, nick: "ed|irc")
        for puppet in ["ed[x]", "ed|irc[x]"] {
            try r.agent.waitFor("the puppet \(puppet) joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == puppet }
        }
        Thread.sleep(forTimeInterval: 0.5)

        r.agent.send(["cmd": "irc_connect", "user": "ed", "port": try irc.port(servers), "nick": "ed"])
        try r.agent.waitFor("ed registered") { $0.user == "ed" && $0.command == "001" }
        var mark = r.agent.mark
        r.irc("ed", "JOIN \(r.channel)")
        try r.agent.expectExactlyOnce(
            [
                Expected("ed is told the room refused him and he is not relayed") {
                    $0.user == "ed" && $0.command == "NOTICE" && $0.nick == "sbridge" && ($0.params.last ?? "").contains("your messages are not relayed")
                },
                // His JOIN on IRC: the channel's own traffic.
                On.irc(to: "carol", "JOIN", from: "ed"), On.irc(to: "ed", "JOIN", from: "ed"),
            ], since: mark, quiet: 2)

        mark = r.agent.mark
        r.irc("ed", "PRIVMSG \(r.channel) :can the room hear me?")
        try r.agent.expectExactlyOnce([On.ircPrivmsg(to: "carol", from: "ed", channel: r.channel, text: "can the room hear me?")], since: mark, quiet: 2)
    }

    @Test("512-byte lines: a long XMPP message of 2-, 3- and 4-byte characters reaches IRC in pieces that fit a line with the sender's prefix, split at spaces, never inside a character, once each; the room has it whole", arguments: IRCServerKind.allCases)
    func longMultibyteMessage(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "long1", ircUsers: ["carol"], xmppUsers: [("lgx", "xanna")])
        defer { r.close() }
        // About 2,900 bytes in one line, in words of mixed widths.
        let text = (1...60).map { "Grüße-\($0) 日本語のテキスト 🙂🙃 Ελληνικά" }.joined(separator: " ")
        let unspaced = text.filter { $0 != " " }
        let words = Set(text.split(separator: " "))
        let mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "lgx", "room": r.room, "body": text])
        func received() -> [AgentEvent] {
            r.agent.events(since: mark).filter { $0.user == "carol" && $0.command == "PRIVMSG" && $0.nick == "xanna" }
        }
        let deadline = Date().addingTimeInterval(15)
        while received().map({ $0.params.last ?? "" }).joined().filter({ $0 != " " }).count < unspaced.count, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.2)
        }
        let lines = received()
        let pieces = lines.map { $0.params.last ?? "" }
        #expect(pieces.joined().filter { $0 != " " } == unspaced, "nothing lost or cut inside a character: \(pieces)")
        #expect(pieces.count >= 6, "\(text.utf8.count) bytes need at least six lines: \(pieces.count)")
        for line in lines {
            // What carol received, sender prefix included, fits IRC's 512 bytes with CR LF.
            #expect((line.raw ?? "").utf8.count <= 510, "\(line.raw ?? "")")
            #expect(!(line.raw ?? "").contains("\u{FFFD}"), "split inside a character: \(line.raw ?? "")")
            #expect((line.params.last ?? "").split(separator: " ").allSatisfy(words.contains), "split at spaces, no word cut: \(line.params.last ?? "")")
        }
        try r.agent.expectExactlyOnce(
            pieces.map { On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: $0) } + [On.xmppMessage(to: "lgx", from: r.occupant("xanna"), body: text)],
            since: mark)
    }

    @Test("an IRC operator kicks a puppet: the XMPP user stays in the room and is told once; what they say then reaches IRC through the bridge, once", arguments: IRCServerKind.allCases)
    func puppetKickedOnIRC(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "pkick1", ircUsers: ["carol", "dave"], xmppUsers: [("pkx", "xanna")])
        defer { r.close() }
        var mark = r.agent.mark
        r.irc("carol", "KICK \(r.channel) xanna :behave")
        try r.agent.expectExactlyOnce(
            [
                On.irc(to: "carol", "KICK", from: "carol"), On.irc(to: "dave", "KICK", from: "carol"),
                Expected("xanna is told, from the channel's address") {
                    $0.user == "pkx" && $0.kind == "message" && $0.type == "chat" && $0.from?.hasSuffix("@\(LabServers.bridgeDomain)") == true
                        && $0.body?.contains("no longer in \(r.channel) (kicked by carol: behave)") == true
                },
            ], since: mark)
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "pkx", "room": r.room, "body": "sorry"])
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "pkx", from: r.occupant("xanna"), body: "sorry"),
                On.ircPrivmsg(to: "carol", from: "sbridge", channel: r.channel, text: "<xanna> sorry"),
                On.ircPrivmsg(to: "dave", from: "sbridge", channel: r.channel, text: "<xanna> sorry"),
            ], since: mark)
    }

    @Test("relay mode: no puppets; XMPP users' joins, lines, /me, private messages both ways and leaves come from the bridge once each, nicks kept from highlighting; IRC lines reach the room once", arguments: IRCServerKind.allCases)
    func relayMode(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(
            servers: servers, irc: irc, name: "relay1", ircUsers: ["carol"], xmppUsers: [],
            networkSettings: "xmpp_users = \"relay\"\nrelay_announce_joins = true\nrelay_zero_width_space = true")
        defer { r.close() }
        try r.agent.xmppUserOnline("rxa", prosody: servers.prosody)
        var mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_join", "user": "rxa", "room": r.room, "nick": "xanna"])
        let announce = Expected("carol is told xanna joined") {
            $0.user == "carol" && $0.command == "NOTICE" && $0.nick == "sbridge" && $0.params == [r.channel, "xanna joined the XMPP room"]
        }
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna's self-presence") { $0.user == "rxa" && $0.kind == "presence" && $0.from == r.occupant("xanna") },
                Expected("xanna gets the room's subject") { $0.user == "rxa" && $0.kind == "message" && $0.subject != nil },
                On.xmppPresence(to: "rxa", from: r.occupant("carol"), unavailable: false), announce,
            ], since: mark, timeout: 20)

        let shown = "x\u{200B}anna"
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "rxa", "room": r.room, "body": "hello from xmpp"])
        r.agent.send(["cmd": "xmpp_say", "user": "rxa", "room": r.room, "body": "/me waves"])
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "rxa", from: r.occupant("xanna"), body: "hello from xmpp"),
                On.xmppMessage(to: "rxa", from: r.occupant("xanna"), body: "/me waves"),
                On.ircPrivmsg(to: "carol", from: "sbridge", channel: r.channel, text: "<\(shown)> hello from xmpp"),
                On.ircPrivmsg(to: "carol", from: "sbridge", channel: r.channel, text: "* \(shown) waves"),
            ], since: mark)

        mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :hi xanna")
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "rxa", from: r.occupant("carol"), body: "hi xanna")], since: mark)

        // Private messages both ways through the bridge's nick.
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_pm", "user": "rxa", "room": r.room, "nick": "carol", "body": "psst, carol"])
        try r.agent.expectExactlyOnce(
            [
                Expected("carol gets xanna's private line from the bridge") { $0.user == "carol" && $0.command == "PRIVMSG" && $0.nick == "sbridge" && $0.params == ["carol", "<\(shown)> psst, carol"] },
                Expected("carol is told how to answer, once") {
                    $0.user == "carol" && $0.command == "NOTICE" && $0.nick == "sbridge" && $0.params == ["carol", "xanna is an XMPP user; to answer privately: /msg sbridge xanna: your text"]
                },
            ], since: mark)
        mark = r.agent.mark
        r.irc("carol", "PRIVMSG sbridge :xanna: got it")
        r.irc("carol", "PRIVMSG sbridge :hello?")
        r.agent.send(["cmd": "xmpp_pm", "user": "rxa", "room": r.room, "nick": "carol", "body": "good"])
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna gets carol's answer") { $0.user == "rxa" && $0.kind == "message" && $0.type == "chat" && $0.from == r.occupant("carol") && $0.body == "got it" },
                Expected("carol is told how to write privately") {
                    $0.user == "carol" && $0.command == "NOTICE" && $0.nick == "sbridge" && $0.params == ["carol", "I relay XMPP users' lines. To write to one privately: /msg sbridge nick: your text"]
                },
                Expected("carol gets xanna's second line, without the hint") { $0.user == "carol" && $0.command == "PRIVMSG" && $0.nick == "sbridge" && $0.params == ["carol", "<\(shown)> good"] },
            ], since: mark)

        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_leave", "user": "rxa", "room": r.room, "nick": "xanna", "status": "lunch"])
        try r.agent.expectExactlyOnce(
            [
                Expected("xanna's own leave") { $0.user == "rxa" && $0.kind == "presence" && $0.type == "unavailable" },
                Expected("carol is told xanna left") {
                    $0.user == "carol" && $0.command == "NOTICE" && $0.nick == "sbridge" && $0.params == [r.channel, "xanna left the XMPP room (lunch)"]
                },
            ], since: mark)
        #expect(!r.agent.events(since: 0).contains { $0.user == "carol" && $0.command == "JOIN" && !["carol", "sbridge"].contains($0.nick ?? "") }, "no puppet ever joined")
    }

    @Test("lazy puppet joins: an XMPP occupant is on IRC only once they speak; an IRC user who joins meanwhile is told who is in the room; a private message wakes a puppet too", arguments: IRCServerKind.allCases)
    func lazyPuppetJoins(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(servers: servers, irc: irc, name: "lazy1", ircUsers: ["carol"], xmppUsers: [], networkSettings: "puppet_joins = \"lazy\"")
        defer { r.close() }
        var mark = r.agent.mark
        try r.agent.xmppUserJoins("lzx", prosody: servers.prosody, room: r.room, nick: "xanna")
        try r.agent.xmppUserJoins("lzy", prosody: servers.prosody, room: r.room, nick: "yuri")
        r.agent.waitForQuiet(seconds: 2, timeout: 20)
        let early = r.agent.events(since: mark).filter { $0.user == "carol" && $0.isTraffic }
        #expect(early.isEmpty, "nothing on IRC while they are silent: \(early)")

        r.agent.send(["cmd": "irc_connect", "user": "dave", "port": try irc.port(servers), "nick": "dave"])
        try r.agent.waitFor("dave registered") { $0.user == "dave" && $0.command == "001" }
        Thread.sleep(forTimeInterval: 0.5)
        mark = r.agent.mark
        r.irc("dave", "JOIN \(r.channel)")
        try r.agent.expectExactlyOnce(
            [
                Expected("dave is told who is in the room") {
                    $0.user == "dave" && $0.command == "NOTICE" && $0.nick == "sbridge"
                        && $0.params == ["dave", "Also in the XMPP room (they join IRC when they speak): xanna, yuri"]
                },
                On.irc(to: "carol", "JOIN", from: "dave"), On.irc(to: "dave", "JOIN", from: "dave"),
                On.xmppPresence(to: "lzx", from: r.occupant("dave"), unavailable: false),
                On.xmppPresence(to: "lzy", from: r.occupant("dave"), unavailable: false),
            ], since: mark)

        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "lzx", "room": r.room, "body": "first words"])
        try r.agent.expectExactlyOnce(
            [
                On.irc(to: "carol", "JOIN", from: "xanna"), On.irc(to: "dave", "JOIN", from: "xanna"),
                On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "first words"),
                On.ircPrivmsg(to: "dave", from: "xanna", channel: r.channel, text: "first words"),
                On.xmppMessage(to: "lzx", from: r.occupant("xanna"), body: "first words"),
                On.xmppMessage(to: "lzy", from: r.occupant("xanna"), body: "first words"),
            ], since: mark, timeout: 20)
        let order = r.agent.events(since: mark).filter { $0.user == "carol" && ["JOIN", "PRIVMSG"].contains($0.command ?? "") }.map { $0.command ?? "" }
        #expect(order == ["JOIN", "PRIVMSG"], "the puppet joins before it speaks")

        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_pm", "user": "lzy", "room": r.room, "nick": "dave", "body": "psst"])
        try r.agent.expectExactlyOnce(
            [
                On.irc(to: "carol", "JOIN", from: "yuri"), On.irc(to: "dave", "JOIN", from: "yuri"),
                Expected("dave gets yuri's private message") { $0.user == "dave" && $0.command == "PRIVMSG" && $0.nick == "yuri" && $0.params == ["dave", "psst"] },
            ], since: mark, timeout: 20)

        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_leave", "user": "lzx", "room": r.room, "nick": "xanna", "status": "bye"])
        try r.agent.expectExactlyOnce(
            [
                On.irc(to: "carol", "QUIT", from: "xanna"), On.irc(to: "dave", "QUIT", from: "xanna"),
                Expected("xanna's own leave") { $0.user == "lzx" && $0.kind == "presence" && $0.type == "unavailable" && $0.from == r.occupant("xanna") },
                On.xmppPresence(to: "lzy", from: r.occupant("xanna"), unavailable: true),
            ], since: mark)
    }

    @Test("no loops: another bridge's puppets (other_bridge_masks) never become occupants and their lines are not relayed, from NAMES or a later JOIN, through a nick change; real IRC users still are", arguments: IRCServerKind.allCases)
    func otherBridgePuppets(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(
            servers: servers, irc: irc, name: "loop1", ircUsers: ["carol"], xmppUsers: [("lpx", "xanna")],
            networkSettings: "other_bridge_masks = [\"*[m]!*@*\", \"*!*matrix@*\"]", notOccupants: ["bob[m]"])
        defer { r.close() }
        var mark = r.agent.mark
        r.agent.send(["cmd": "irc_connect", "user": "dora", "port": try irc.port(servers), "nick": "dora", "username": "matrix"])
        try r.agent.waitFor("dora registered") { $0.user == "dora" && $0.command == "001" }
        r.irc("dora", "JOIN \(r.channel)")
        try r.agent.waitFor("carol sees dora join", since: mark) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "dora" }
        r.irc("bob[m]", "PRIVMSG \(r.channel) :said on matrix")
        r.irc("dora", "PRIVMSG \(r.channel) :also from matrix")
        r.irc("dora", "NICK dora[m]")
        r.irc("carol", "PRIVMSG \(r.channel) :hi all")
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "lpx", from: r.occupant("carol"), body: "hi all"),
                On.ircPrivmsg(to: "carol", from: "bob[m]", channel: r.channel, text: "said on matrix"),
                On.ircPrivmsg(to: "carol", from: "dora", channel: r.channel, text: "also from matrix"),
                On.ircPrivmsg(to: "dora", from: "bob[m]", channel: r.channel, text: "said on matrix"),
                On.ircPrivmsg(to: "bob[m]", from: "dora", channel: r.channel, text: "also from matrix"),
                On.ircPrivmsg(to: "dora", from: "carol", channel: r.channel, text: "hi all"),
                On.ircPrivmsg(to: "bob[m]", from: "carol", channel: r.channel, text: "hi all"),
                On.irc(to: "carol", "JOIN", from: "dora"), On.irc(to: "dora", "JOIN", from: "dora"), On.irc(to: "bob[m]", "JOIN", from: "dora"),
                On.irc(to: "carol", "NICK", from: "dora"), On.irc(to: "dora", "NICK", from: "dora"), On.irc(to: "bob[m]", "NICK", from: "dora"),
            ], since: mark)
        let occupants = r.agent.events(since: 0).filter { $0.user == "lpx" && $0.kind == "presence" }.compactMap(\.from)
        #expect(!occupants.contains { $0.hasSuffix("[m]") || $0.hasSuffix("/dora") }, "\(occupants)")

        // The XMPP side reaches all of them once; they leave without the room noticing.
        mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "lpx", "room": r.room, "body": "hello everyone"])
        try r.agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "lpx", from: r.occupant("xanna"), body: "hello everyone"),
                On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "hello everyone"),
                On.ircPrivmsg(to: "bob[m]", from: "xanna", channel: r.channel, text: "hello everyone"),
                On.ircPrivmsg(to: "dora", from: "xanna", channel: r.channel, text: "hello everyone"),
            ], since: mark)
        mark = r.agent.mark
        r.irc("dora", "PART \(r.channel) :gone")
        r.irc("bob[m]", "QUIT :gone")
        try r.agent.expectExactlyOnce(
            [
                On.irc(to: "carol", "PART", from: "dora[m]"), On.irc(to: "dora", "PART", from: "dora[m]"), On.irc(to: "bob[m]", "PART", from: "dora[m]"),
                On.irc(to: "carol", "QUIT", from: "bob[m]"),
            ] + (irc == .ngircd
                ? [Expected("ngircd's statistics for bob[m] as he quits") { $0.user == "bob[m]" && $0.command == "NOTICE" && ($0.params.last ?? "").hasPrefix("Connection statistics") }]
                : []), since: mark)

        // A real IRC user is still an occupant.
        mark = r.agent.mark
        try r.agent.ircUserJoins("erin", port: try irc.port(servers), channel: r.channel)
        try r.agent.waitFor("xanna sees erin", since: mark) { $0.user == "lpx" && $0.kind == "presence" && $0.from == r.occupant("erin") }
    }

    @Test("max_lines: a ten-line XMPP message becomes three IRC lines and a note that the rest is in the room, once each; the room has it whole", arguments: IRCServerKind.allCases)
    func lineLimit(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "cut1", ircUsers: ["carol"], xmppUsers: [("cux", "xanna")], networkSettings: "max_lines = 4")
        defer { r.close() }
        let paste = (1...10).map { "line \($0) of the paste" }.joined(separator: "\n")
        let mark = r.agent.mark
        r.agent.send(["cmd": "xmpp_say", "user": "cux", "room": r.room, "body": paste])
        try r.agent.expectExactlyOnce(
            (1...3).map { On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "line \($0) of the paste") } + [
                On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: "[7 more lines not relayed: the whole message is in the XMPP room]"),
                On.xmppMessage(to: "cux", from: r.occupant("xanna"), body: paste),
            ], since: mark)
    }

    @Test("a reply, a correction, a reaction and a shared file from an XMPP client each reach IRC as one line: nick: prefix, (correction), /me reacted, the URL", arguments: IRCServerKind.allCases)
    func modernClientLines(_ irc: IRCServerKind) throws {
        let r = try BridgedRoom(servers: try LabServers.require(), irc: irc, name: "modern1", ircUsers: ["carol"], xmppUsers: [("mxa", "xanna")])
        defer { r.close() }
        var mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :lunch at noon?")
        let seen = try r.agent.waitFor("xanna gets carol's line", since: mark) { $0.user == "mxa" && $0.kind == "message" && $0.body == "lunch at noon?" }
        let stanzaID = try #require(seen.stanzaID, "\(seen.xml ?? "no XML")")
        Thread.sleep(forTimeInterval: 1)

        func say(_ id: String, _ inner: String, irc: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let mark = r.agent.mark
            r.agent.send(["cmd": "xmpp_raw", "user": "mxa", "xml": "<message to='\(r.room)' type='groupchat' id='\(id)'>\(inner)</message>"])
            try r.agent.expectExactlyOnce(
                [
                    Expected("xanna's \(id) is reflected") { $0.user == "mxa" && $0.kind == "message" && $0.id == id },
                    On.ircPrivmsg(to: "carol", from: "xanna", channel: r.channel, text: irc),
                ], since: mark, sourceLocation: sourceLocation)
        }
        // XEP-0461, with the quote fallback older clients show ("> lunch at noon?\n": 17 scalars).
        try say(
            "r1",
            "<body>&gt; lunch at noon?\nyes, at the usual place</body><reply xmlns='urn:xmpp:reply:0' to='\(r.occupant("carol"))' id='\(stanzaID)'/>"
                + "<fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reply:0'><body start='0' end='17'/></fallback>",
            irc: "carol: yes, at the usual place")
        // XEP-0308.
        try say("r2", "<body>yes, at the new place</body><replace xmlns='urn:xmpp:message-correct:0' id='r1'/>", irc: "(correction) yes, at the new place")
        // XEP-0444: its body is a fallback, not a line.
        try say(
            "r3", "<body>👍</body><reactions xmlns='urn:xmpp:reactions:0' id='\(stanzaID)'><reaction>👍</reaction></reactions><fallback xmlns='urn:xmpp:fallback:0' for='urn:xmpp:reactions:0'/>",
            irc: "\u{1}ACTION reacted 👍 to carol: “lunch at noon?”\u{1}")
        // XEP-0363 uploads are shared as XEP-0066 links.
        try say("r4", "<body>the menu</body><x xmlns='jabber:x:oob'><url>https://files.example/menu.pdf</url></x>", irc: "the menu https://files.example/menu.pdf")

        mark = r.agent.mark
        r.irc("carol", "PRIVMSG \(r.channel) :thanks")
        try r.agent.expectExactlyOnce([On.xmppMessage(to: "mxa", from: r.occupant("carol"), body: "thanks")], since: mark)
    }

    @Test("roles as modes (configured, the bridge holding ops): a participant's puppet gets +v, a moderator's +o, a role change is one MODE; IRC never echoes them back into the room", arguments: IRCServerKind.allCases)
    func rolesAsModes(_ irc: IRCServerKind) throws {
        let servers = try LabServers.require()
        let r = try BridgedRoom(
            servers: servers, irc: irc, name: "roles1", ircUsers: [], xmppUsers: [], extraConfig: "\n[admin]\njids = [\"radmin@\(servers.prosody.domain)\"]\n",
            networkSettings: "roles_as_modes = true")
        defer { r.close() }
        try r.agent.ircUserJoins("carol", port: try irc.port(servers), channel: r.channel)
        try r.agent.xmppUserJoins("radmin", prosody: servers.prosody, room: r.room, nick: "boss")
        try r.agent.waitFor("boss gets +o", timeout: 20) { $0.user == "carol" && $0.command == "MODE" && $0.params == [r.channel, "+o", "boss"] }
        var mark = r.agent.mark
        try r.agent.xmppUserJoins("rxb", prosody: servers.prosody, room: r.room, nick: "xanna")
        try r.agent.waitFor("xanna gets +v", since: mark, timeout: 20) { $0.user == "carol" && $0.command == "MODE" && $0.params == [r.channel, "+v", "xanna"] }
        Thread.sleep(forTimeInterval: 1)

        mark = r.agent.mark
        #expect(try r.agent.iq("radmin", to: r.room, type: "set", MUCServiceTests.admin(["nick": "xanna", "role": "moderator"])).type == "result")
        try r.agent.expectExactlyOnce(
            [
                Expected("carol sees xanna -v+o") { $0.user == "carol" && $0.command == "MODE" && $0.nick == "sbridge" && $0.params == [r.channel, "-v+o", "xanna", "xanna"] },
                Expected("boss sees xanna become moderator") { $0.user == "radmin" && $0.kind == "presence" && $0.from == r.occupant("xanna") && $0.role == "moderator" },
                Expected("xanna sees herself become moderator") { $0.user == "rxb" && $0.kind == "presence" && $0.from == r.occupant("xanna") && $0.role == "moderator" },
            ], since: mark)
    }

    @Test("a netsplit between two linked ngircd: users behind it stay in the room through the netjoin (nothing shown); whoever is not back after the grace leaves once with 333 and the servers as status")
    func netsplit() throws {
        let servers = try LabServers.require()
        let directory = try Lab.makeTemporaryDirectory(prefix: "split1")
        defer { Lab.removeUnlessKept(directory) }
        let b = try NgircdServer.start(in: directory.appendingPathComponent("b"), options: .init(serverName: "b.irc.test", peer: ("a.irc.test", nil)))
        defer { b.stop() }
        let a = try NgircdServer.start(
            in: directory.appendingPathComponent("a"), options: .init(serverName: "a.irc.test", peer: ("b.irc.test", b.port), operatorPassword: "oper-pw"))
        defer { a.stop() }
        let agent = try LabAgent(directory: directory)
        defer { agent.stop() }
        let channel = "#split1", room = "split1@\(LabServers.masterDomain)"
        try agent.ircUserJoins("dave", port: b.port, channel: channel)
        try agent.ircUserJoins("erin", port: b.port, channel: channel)
        // carol is on the bridge's server; she sees dave once the servers are linked.
        agent.send(["cmd": "irc_connect", "user": "carol", "port": a.port, "nick": "carol"])
        try agent.waitFor("carol registered") { $0.user == "carol" && $0.command == "001" }
        let linked = Date().addingTimeInterval(20)
        while !agent.events(since: 0).contains(where: { $0.user == "carol" && $0.command == "353" && $0.params.last?.contains("dave") == true }) {
            guard Date() < linked else { throw LabError("a.irc.test and b.irc.test did not link") }
            agent.send(["cmd": "irc_send", "user": "carol", "line": "NAMES \(channel)"])
            Thread.sleep(forTimeInterval: 0.5)
        }
        agent.send(["cmd": "irc_send", "user": "carol", "line": "JOIN \(channel)"])
        agent.send(["cmd": "irc_send", "user": "carol", "line": "OPER oper oper-pw"])
        try agent.waitFor("carol is an operator") { $0.user == "carol" && $0.command == "381" }

        let bridge = try ShadowbridgeProcess(
            servers: servers, directory: directory, channels: [(channel, "split1")], server: "irc://127.0.0.1:\(a.port)", networkSettings: "netsplit_grace = 8")
        defer { _ = bridge.stop() }
        try bridge.waitForLog("link federated", "shadow=#split1%lab@")
        try agent.xmppUserJoins("spx", prosody: servers.prosody, room: room, nick: "xanna")
        for nick in ["carol", "dave", "erin"] {
            try agent.waitFor("xanna sees \(nick)") { $0.user == "spx" && $0.kind == "presence" && $0.from == "\(room)/\(nick)" }
        }
        try agent.waitFor("xanna's puppet joins", timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "xanna" }
        Thread.sleep(forTimeInterval: 1)

        // A split healed within the grace period: the room sees nothing at all.
        var mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "carol", "line": "SQUIT b.irc.test :lab netsplit"])
        let quit = try agent.waitFor("carol sees dave quit in the split", since: mark) { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "dave" }
        try agent.waitFor("the netjoin: carol sees dave again", since: mark, timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "dave" }
        try agent.waitFor("the netjoin: carol sees erin again", since: mark, timeout: 20) { $0.user == "carol" && $0.command == "JOIN" && $0.nick == "erin" }
        try bridge.waitForLog("IRC netsplit", "servers=\(quit.params.first ?? "?")")
        Thread.sleep(forTimeInterval: 9)
        #expect(!agent.events(since: mark).contains { $0.user == "spx" && $0.kind == "presence" }, "no leave, no join in the room: \(agent.events(since: mark).filter { $0.user == "spx" })")
        mark = agent.mark
        agent.send(["cmd": "irc_send", "user": "dave", "line": "PRIVMSG \(channel) :back from the split"])
        try agent.expectExactlyOnce(
            [
                On.xmppMessage(to: "spx", from: "\(room)/dave", body: "back from the split"),
                On.ircPrivmsg(to: "carol", from: "dave", channel: channel, text: "back from the split"),
                On.ircPrivmsg(to: "erin", from: "dave", channel: channel, text: "back from the split"),
            ], since: mark)

        // A split that lasts (b.irc.test dies; a clean stop would quit its users one by one):
        // after the grace, dave and erin leave once each, with 333.
        mark = agent.mark
        b.kill()
        let servers333 = "a.irc.test b.irc.test"
        try agent.expectExactlyOnce(
            [
                Expected("carol sees dave quit") { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "dave" },
                Expected("carol sees erin quit") { $0.user == "carol" && $0.command == "QUIT" && $0.nick == "erin" },
                Expected("xanna sees dave leave with 333") { $0.user == "spx" && $0.from == "\(room)/dave" && $0.type == "unavailable" && $0.codes == [333] && $0.status == servers333 },
                Expected("xanna sees erin leave with 333") { $0.user == "spx" && $0.from == "\(room)/erin" && $0.type == "unavailable" && $0.codes == [333] && $0.status == servers333 },
            ], since: mark, timeout: 20)
    }
}
