import IRCCore
import Testing

@Suite("IRC registration and capability negotiation")
struct IRCRegistrationTests {
    static func line(_ text: String) -> IRCMessage { try! IRCMessage(parsing: Array(text.utf8)) }

    static func sent(_ actions: [IRCRegistration.Action]) -> [String] {
        actions.compactMap { if case .send(let m) = $0 { m.description } else { nil } }
    }

    @Test("CAP LS 302 goes first, then NICK and USER")
    func start() {
        var registration = IRCRegistration(nick: "bridge", username: "sb", realname: "Shadow Bridge", password: "pw")
        #expect(Self.sent(registration.start()) == ["CAP LS 302", "PASS pw", "NICK bridge", "USER sb 0 * :Shadow Bridge"])
    }

    @Test("a multi-line LS is collected, only wanted caps are requested, END follows the ACK")
    func negotiation() {
        var r = IRCRegistration(nick: "bridge", username: "sb", realname: "x")
        _ = r.start()
        #expect(r.receive(Self.line(":srv CAP * LS * :multi-prefix sasl=PLAIN,EXTERNAL inspircd.org/poison")).isEmpty)
        #expect(Self.sent(r.receive(Self.line(":srv CAP * LS :server-time away-notify"))) == ["CAP REQ :away-notify multi-prefix server-time"])
        #expect(r.offeredCapabilities["sasl"] == "PLAIN,EXTERNAL")
        let ack = r.receive(Self.line(":srv CAP * ACK :away-notify multi-prefix server-time"))
        #expect(ack.contains(.capabilitiesChanged(["away-notify", "multi-prefix", "server-time"])))
        #expect(Self.sent(ack) == ["CAP END"])
        #expect(r.receive(Self.line(":srv 001 bridge :Welcome")) == [.registered(nick: "bridge")])
        #expect(r.isRegistered)
    }

    @Test("NAK ends negotiation without the caps; nothing wanted ends it at once")
    func nakAndNothing() {
        var r = IRCRegistration(nick: "b", username: "u", realname: "r")
        _ = r.start()
        _ = r.receive(Self.line(":srv CAP * LS :batch"))
        #expect(Self.sent(r.receive(Self.line(":srv CAP * NAK :batch"))) == ["CAP END"])
        #expect(r.enabled.isEmpty)
        var none = IRCRegistration(nick: "b", username: "u", realname: "r")
        _ = none.start()
        #expect(Self.sent(none.receive(Self.line(":srv CAP * LS :inspircd.org/poison"))) == ["CAP END"])
    }

    @Test("malformed capability lists do not crash: empty names are skipped (found in review)")
    func malformedCapabilities() {
        var r = IRCRegistration(nick: "b", username: "u", realname: "r")
        _ = r.start()
        #expect(Self.sent(r.receive(Self.line(":srv CAP * LS := =x batch"))) == ["CAP REQ batch"])
        _ = r.receive(Self.line(":srv CAP * ACK :batch"))
        _ = r.receive(Self.line(":srv 001 b :hi"))
        #expect(r.receive(Self.line(":srv CAP b NEW :=")).isEmpty)
    }

    @Test("a server without CAP registers anyway")
    func noCAP() {
        var r = IRCRegistration(nick: "b", username: "u", realname: "r")
        _ = r.start()
        #expect(r.receive(Self.line(":srv 421 * CAP :Unknown command")).isEmpty)
        #expect(r.receive(Self.line(":srv 001 b :Welcome")) == [.registered(nick: "b")])
    }

    @Test("deaf puppets: the deaf mode RPL_MYINFO names is set once, +d on InspIRCd, +D on solanum; nothing on ngircd or when not asked")
    func deafMode() {
        func modesSent(deaf: Bool, myInfo: String) -> [String] {
            var r = IRCRegistration(nick: "xena", username: "u", realname: "r", deaf: deaf)
            _ = r.start()
            _ = r.receive(Self.line(":srv 421 * CAP :Unknown command"))
            _ = r.receive(Self.line(":srv 001 xena :Welcome"))
            return Self.sent(r.receive(Self.line(myInfo)) + r.receive(Self.line(myInfo)))
        }
        #expect(modesSent(deaf: true, myInfo: ":irc.test 004 xena irc.test InspIRCd-3 BDHIRSTcdghiklorswxz ACDFGHIJKLMNOPQRSTUXYZabcdefhijklmnopqrstuvwz") == ["MODE xena +d"])
        #expect(modesSent(deaf: true, myInfo: ":irc.test 004 xena irc.test solanum-1.0-dev DGIMQRSZaghilopsuwz CFILMPQRSTbcefgijklmnopqrstuvz") == ["MODE xena +D"])
        #expect(modesSent(deaf: true, myInfo: ":irc.test 004 xena irc.test ngircd-26.1 abBcCFiIoqrRswx abBcCeiIklmMnoOPqQrRstvVz").isEmpty)
        #expect(modesSent(deaf: true, myInfo: ":irc.test 004 xena irc.test InspIRCd-3 BHIRSTcghiklorswxz abc").isEmpty, "no deaf module loaded")
        #expect(modesSent(deaf: false, myInfo: ":irc.test 004 xena irc.test InspIRCd-3 BDHIRSTcdghiklorswxz abc").isEmpty)
        #expect(modesSent(deaf: true, myInfo: ":irc.test 004 xena").isEmpty, "a short RPL_MYINFO is ignored")
    }

    @Test("cap-notify: NEW is requested when wanted, DEL removes")
    func capNotify() {
        var r = IRCRegistration(nick: "b", username: "u", realname: "r")
        _ = r.start()
        _ = r.receive(Self.line(":srv CAP * LS :cap-notify"))
        _ = r.receive(Self.line(":srv CAP * ACK :cap-notify"))
        _ = r.receive(Self.line(":srv 001 b :hi"))
        #expect(Self.sent(r.receive(Self.line(":srv CAP b NEW :account-notify unknown-cap"))) == ["CAP REQ account-notify"])
        _ = r.receive(Self.line(":srv CAP b ACK :account-notify"))
        #expect(r.enabled == ["cap-notify", "account-notify"])
        #expect(r.receive(Self.line(":srv CAP b DEL :account-notify")) == [.capabilitiesChanged(["cap-notify"])])
    }

    @Test("a nick in use is retried within NICKLEN")
    func nickInUse() {
        var r = IRCRegistration(nick: "shadowbri", username: "u", realname: "r")
        _ = r.start()
        #expect(Self.sent(r.receive(Self.line(":srv 433 * shadowbri :Nickname is already in use"))) == ["NICK shadowbr_"])
        #expect(Self.sent(r.receive(Self.line(":srv 433 * shadowbr_ :in use"))) == ["NICK shadowb__"])
        #expect(Self.sent(r.receive(Self.line(":srv 433 * shadowb__ :in use"))) == ["NICK shadowb_3"])
        _ = r.receive(Self.line(":srv 001 shadowb_3 :Welcome"))
        #expect(r.receive(Self.line(":srv 433 * x :in use")).isEmpty)
    }

    @Test("ISUPPORT: casemapping, lengths, channel types, prefixes, LINELEN, UTF8ONLY, BOT")
    func isupport() {
        var r = IRCRegistration(nick: "b", username: "u", realname: "r")
        let actions = r.receive(Self.line(":srv 005 b CASEMAPPING=ascii NICKLEN=30 CHANNELLEN=64 CHANTYPES=# PREFIX=(qaohv)~&@%+ LINELEN=1024 UTF8ONLY BOT=B :are supported"))
        #expect(actions.count == 1)
        let s = r.isupport
        #expect(s.caseMapping == .ascii && s.nickLength == 30 && s.channelLength == 64 && s.channelTypes == ["#"])
        #expect(s.prefixes.map(\.mode) == ["q", "a", "o", "h", "v"] && s.prefixCharacters == ["~", "&", "@", "%", "+"])
        #expect(s.lineLength == 1024 && s.utf8Only && s.botMode == "B")
        #expect(s.isChannel("#x") && !s.isChannel("&x"))
    }
}

@Suite("IRC flood control")
struct IRCFloodControlTests {
    @Test("a burst, then one line per interval")
    func bucket() {
        var flood = IRCFloodControl(burst: 3, linesPerSecond: 2)
        var taken: [Bool] = []
        for _ in 0..<4 { taken.append(flood.take(now: 100)) }
        #expect(taken == [true, true, true, false])
        let delay = flood.delay(now: 100)
        #expect(abs(delay - 0.5) < 1e-9)
        let early = flood.take(now: 100.4)
        let onTime = flood.take(now: 100.5)
        #expect(!early && onTime)
        taken = []
        for _ in 0..<4 { taken.append(flood.take(now: 110)) }
        #expect(taken == [true, true, true, false], "the bucket refills to the burst, not beyond")
    }

    @Test("PING and PONG outrank conversation; PART and NICK keep their place after the lines before them (found in review)")
    func priorities() {
        #expect(IRCLinePriority.of(IRCMessage(command: "PONG", "x")) == .urgent)
        #expect(IRCLinePriority.of(IRCMessage(command: "PING", "x")) == .urgent)
        for command in ["PART", "NICK", "TOPIC", "JOIN", "PRIVMSG", "QUIT"] {
            #expect(IRCLinePriority.of(IRCMessage(command: command, "#x")) == .normal)
        }
    }
}

@Suite("IRC mode changes")
struct IRCModeChangeTests {
    @Test("prefix modes and list/key modes take arguments, limits only when set, flags never")
    func parse() {
        var isupport = ISupport()
        isupport.apply(["PREFIX=(qaohv)~&@%+", "CHANMODES=beI,k,l,imnpst"])
        let changes = IRCModeChange.parse("+ooo-v+bl-l+k-k+nt", arguments: ["a", "b", "c", "d", "*!*@spam", "10", "key", "key"], isupport: isupport)
        #expect(changes == [
            .init(adding: true, mode: "o", argument: "a"), .init(adding: true, mode: "o", argument: "b"), .init(adding: true, mode: "o", argument: "c"),
            .init(adding: false, mode: "v", argument: "d"), .init(adding: true, mode: "b", argument: "*!*@spam"), .init(adding: true, mode: "l", argument: "10"),
            .init(adding: false, mode: "l", argument: nil), .init(adding: true, mode: "k", argument: "key"), .init(adding: false, mode: "k", argument: "key"),
            .init(adding: true, mode: "n", argument: nil), .init(adding: true, mode: "t", argument: nil),
        ])
        #expect(IRCModeChange.parse("+oo", arguments: ["only"], isupport: isupport).count == 1, "a mode missing its argument is dropped")
    }
}
