import IRCCore
import Testing

/// SASL 3.1 inside CAP negotiation (ircv3.net/specs/extensions/sasl-3.1): every transition.
@Suite("IRC SASL during registration")
struct IRCSASLTests {
    static let line = IRCRegistrationTests.line
    static let sent = IRCRegistrationTests.sent

    static func failures(_ actions: [IRCRegistration.Action]) -> [String] {
        actions.compactMap { if case .failed(let reason, _) = $0 { reason } else { nil } }
    }

    static func started(_ sasl: IRCSASL = .plain(account: "alice", password: "secret")) -> IRCRegistration {
        var r = IRCRegistration(nick: "bridge", username: "sb", realname: "x", sasl: sasl)
        _ = r.start()
        return r
    }

    @Test("PLAIN: sasl is requested, AUTHENTICATE after the ACK, credentials on +, CAP END only after 903")
    func plainSuccess() {
        var r = Self.started()
        #expect(Self.sent(r.receive(Self.line(":srv CAP * LS :multi-prefix sasl=PLAIN,EXTERNAL"))) == ["CAP REQ :multi-prefix sasl"])
        #expect(Self.sent(r.receive(Self.line(":srv CAP * ACK :multi-prefix sasl"))) == ["AUTHENTICATE PLAIN"])
        // base64("alice\0alice\0secret")
        #expect(Self.sent(r.receive(Self.line("AUTHENTICATE +"))) == ["AUTHENTICATE YWxpY2UAYWxpY2UAc2VjcmV0"])
        #expect(r.receive(Self.line(":srv 900 bridge bridge!sb@h alice :You are now logged in as alice")) == [.authenticated(account: "alice")])
        #expect(Self.sent(r.receive(Self.line(":srv 903 bridge :SASL authentication successful"))) == ["CAP END"])
        #expect(r.receive(Self.line(":srv 001 bridge :Welcome")) == [.registered(nick: "bridge")])
    }

    @Test("InspIRCd's `AUTHENTICATE :+` is the same prompt")
    func trailingPlus() {
        var r = Self.started()
        _ = r.receive(Self.line(":srv CAP * LS :sasl"))
        _ = r.receive(Self.line(":srv CAP * ACK :sasl"))
        #expect(Self.sent(r.receive(Self.line("AUTHENTICATE :+"))).count == 1)
    }

    @Test("a wrong password (904) fails the connection with the server's text and no password")
    func badPassword() {
        var r = Self.started()
        _ = r.receive(Self.line(":srv CAP * LS :sasl=PLAIN"))
        _ = r.receive(Self.line(":srv CAP * ACK :sasl"))
        _ = r.receive(Self.line("AUTHENTICATE +"))
        let failed = Self.failures(r.receive(Self.line(":srv 904 bridge :SASL authentication failed")))
        #expect(failed == ["SASL PLAIN failed: 904 SASL authentication failed"])
        #expect(!failed.joined().contains("secret"))
        // Nothing after a failure: no CAP END, no registration.
        #expect(r.receive(Self.line(":srv 001 bridge :Welcome")).isEmpty)
        #expect(!r.isRegistered)
    }

    @Test("902, 905, 906 and 907 end it too; 908 only lists mechanisms")
    func otherEnds() {
        for numeric in ["902", "905", "906", "907"] {
            var r = Self.started()
            _ = r.receive(Self.line(":srv CAP * LS :sasl"))
            _ = r.receive(Self.line(":srv CAP * ACK :sasl"))
            #expect(Self.failures(r.receive(Self.line(":srv \(numeric) bridge :no"))).count == 1, "\(numeric)")
        }
        var r = Self.started()
        _ = r.receive(Self.line(":srv CAP * LS :sasl"))
        _ = r.receive(Self.line(":srv CAP * ACK :sasl"))
        #expect(r.receive(Self.line(":srv 908 bridge PLAIN :are available SASL mechanisms")).isEmpty)
    }

    @Test("only refused credentials (904, 902) are permanent; SASL missing for now (services unlinked, a NAK, an ACK without sasl) is retried later")
    func permanence() {
        func permanent(_ actions: [IRCRegistration.Action]) -> Bool? {
            actions.compactMap { if case .failed(_, let permanent) = $0 { permanent } else { nil } }.first
        }
        var wrong = Self.started()
        _ = wrong.receive(Self.line(":srv CAP * LS :sasl"))
        _ = wrong.receive(Self.line(":srv CAP * ACK :sasl"))
        #expect(permanent(wrong.receive(Self.line(":srv 904 bridge :SASL authentication failed"))) == true)
        var aborted = Self.started()
        _ = aborted.receive(Self.line(":srv CAP * LS :sasl"))
        _ = aborted.receive(Self.line(":srv CAP * ACK :sasl"))
        #expect(permanent(aborted.receive(Self.line(":srv 906 bridge :aborted"))) == false)
        var unlinked = Self.started()
        #expect(permanent(unlinked.receive(Self.line(":srv CAP * LS :multi-prefix"))) == false)
        var partial = Self.started()
        _ = partial.receive(Self.line(":srv CAP * LS :multi-prefix sasl"))
        let acked = partial.receive(Self.line(":srv CAP * ACK :multi-prefix"))
        #expect(permanent(acked) == false, "every REQ answered, sasl never on: \(acked)")
        #expect(!Self.sent(acked).contains("CAP END"))
    }

    @Test("no sasl offered, the wrong mechanism, a NAK or no CAP at all: a clear failure, never an unauthenticated join")
    func notOffered() {
        var none = Self.started()
        #expect(Self.failures(none.receive(Self.line(":srv CAP * LS :multi-prefix"))).first?.contains("offers no SASL") == true)
        var wrong = Self.started(.external)
        #expect(Self.failures(wrong.receive(Self.line(":srv CAP * LS :sasl=PLAIN"))) == ["the server offers SASL PLAIN, not EXTERNAL"])
        var nak = Self.started()
        _ = nak.receive(Self.line(":srv CAP * LS :sasl"))
        #expect(Self.failures(nak.receive(Self.line(":srv CAP * NAK :sasl"))).count == 1)
        var noCAP = Self.started()
        #expect(Self.failures(noCAP.receive(Self.line(":srv 421 * CAP :Unknown command"))).count == 1)
        var early = Self.started()
        _ = early.receive(Self.line(":srv CAP * LS :sasl"))
        #expect(Self.failures(early.receive(Self.line(":srv 001 bridge :Welcome"))).count == 1)
    }

    @Test("EXTERNAL answers the prompt with an empty response")
    func external() {
        var r = Self.started(.external)
        _ = r.receive(Self.line(":srv CAP * LS :sasl=EXTERNAL"))
        #expect(Self.sent(r.receive(Self.line(":srv CAP * ACK :sasl"))) == ["AUTHENTICATE EXTERNAL"])
        #expect(Self.sent(r.receive(Self.line("AUTHENTICATE +"))) == ["AUTHENTICATE +"])
    }

    @Test("long credentials go in 400-byte chunks, with + after an exact multiple of 400")
    func chunking() {
        // 3 + 2 NULs + 295 = 300 bytes -> exactly 400 base64 characters.
        var r = Self.started(.plain(account: "bob", password: String(repeating: "p", count: 292)))
        _ = r.receive(Self.line(":srv CAP * LS :sasl"))
        _ = r.receive(Self.line(":srv CAP * ACK :sasl"))
        let lines = Self.sent(r.receive(Self.line("AUTHENTICATE +")))
        #expect(lines.count == 2 && lines[0].utf8.count == "AUTHENTICATE ".utf8.count + 400 && lines[1] == "AUTHENTICATE +")
        var longer = Self.started(.plain(account: "bob", password: String(repeating: "p", count: 500)))
        _ = longer.receive(Self.line(":srv CAP * LS :sasl"))
        _ = longer.receive(Self.line(":srv CAP * ACK :sasl"))
        let chunks = Self.sent(longer.receive(Self.line("AUTHENTICATE +")))
        #expect(chunks.count == 2 && chunks[1] != "AUTHENTICATE +")
    }

    @Test("the bot mode is set once on the bridge's own connection, when ISUPPORT names it")
    func botMode() {
        var r = IRCRegistration(nick: "bridge", username: "sb", realname: "x", markAsBot: true)
        _ = r.start()
        _ = r.receive(Self.line(":srv CAP * LS :batch"))
        _ = r.receive(Self.line(":srv CAP * ACK :batch"))
        _ = r.receive(Self.line(":srv 001 bridge :Welcome"))
        #expect(Self.sent(r.receive(Self.line(":srv 005 bridge BOT=B NICKLEN=30 :are supported"))) == ["MODE bridge +B"])
        #expect(Self.sent(r.receive(Self.line(":srv 005 bridge CHANTYPES=# :are supported"))).isEmpty)
        var puppet = IRCRegistration(nick: "p", username: "u", realname: "r")
        _ = puppet.start()
        _ = puppet.receive(Self.line(":srv 001 p :Welcome"))
        #expect(Self.sent(puppet.receive(Self.line(":srv 005 p BOT=B :are supported"))).isEmpty)
    }
}

@Suite("IRC disconnect reasons")
struct IRCDisconnectTests {
    @Test("ERROR texts of the big IRCds are sorted into throttles, bans, limits and plain losses")
    func classify() {
        let cases: [(String, IRCDisconnect.Kind)] = [
            ("Closing Link: 127.0.0.1 (Throttled: Reconnecting too fast)", .throttled),  // charybdis, UnrealIRCd
            ("Closing link: (x@127.0.0.1) [Z-Lined: Your IP range has been attempting to connect too many times in too short a duration.]", .throttled),  // InspIRCd connectban
            ("Closing Link: host (K-Lined)", .banned),
            ("Closing link: (u@h) [G-Lined: spam]", .banned),
            ("You are banned from this server- Flooding", .banned),  // 465
            ("Closing Link: user[1.2.3.4] (AKILL ID: 123)", .banned),
            ("Connection refused, too many connections from your IP address", .connectionLimit),  // ngircd
            ("Closing link: (u@h) [No more connections allowed from your host via this connect class (local)]", .connectionLimit),  // InspIRCd
            ("Closing Link: host (Ping timeout: 240 seconds)", .lost),
            ("Server shutting down", .lost),
            ("Closing Link: host (Killed (oper (stop it or you get a kline)))", .lost),
        ]
        for (text, kind) in cases {
            #expect(IRCDisconnect.classify(errorText: text).kind == kind, "\(text)")
        }
        #expect(IRCDisconnect(.banned, "x").isPermanent && IRCDisconnect(.tlsFailed, "x").isPermanent)
        #expect(!IRCDisconnect(.throttled, "x").isPermanent && !IRCDisconnect(.lost, "x").isPermanent)
    }
}
