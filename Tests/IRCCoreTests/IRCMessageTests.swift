import IRCCore
import Testing

@Suite("IRC message parsing and encoding")
struct IRCMessageTests {
    @Test("parses tags, source, command and parameters")
    func parsing() throws {
        let m = try IRCMessage(parsing: Array("@time=2026-11-25T10:00:00.000Z;msgid=abc\\sdef;+draft/x :nick!user@host PRIVMSG #chan :hello there\r".utf8))
        #expect(m.tag("time") == "2026-11-25T10:00:00.000Z")
        #expect(m.tag("msgid") == "abc def")
        #expect(m.tag("+draft/x") == "")
        #expect(m.source == "nick!user@host")
        #expect(m.sourceNick == "nick")
        #expect(m.command == "PRIVMSG")
        #expect(m.parameters == ["#chan", "hello there"])
    }

    @Test("parses numerics, lowercase commands, extra spaces and empty trailing")
    func variants() throws {
        #expect(try IRCMessage(parsing: Array(":irc.test 001 me :Welcome".utf8)).parameters == ["me", "Welcome"])
        #expect(try IRCMessage(parsing: Array("ping   token".utf8)).command == "PING")
        #expect(try IRCMessage(parsing: Array("TOPIC #c :".utf8)).parameters == ["#c", ""])
        #expect(try IRCMessage(parsing: Array(":s 353 me = #c :@op +voice plain".utf8)).parameters.last == "@op +voice plain")
    }

    @Test("rejects lines without a command", arguments: ["", ":only.source", "@tags=only", "   ", ":src  "])
    func rejects(line: String) {
        #expect(throws: IRCParseError.self) { try IRCMessage(parsing: Array(line.utf8)) }
    }

    @Test("decodes UTF-8, and cp1252 per parameter when a parameter is not UTF-8")
    func encodings() throws {
        // mIRC on Western Windows: "café €5" in cp1252.
        let bytes: [UInt8] = Array("PRIVMSG #c :caf".utf8) + [0xE9, 0x20, 0x80, 0x35]
        #expect(try IRCMessage(parsing: bytes).parameters.last == "café €5")
        #expect(try IRCMessage(parsing: bytes, fallback: .latin1).parameters.last == "café \u{80}5")
        #expect(try IRCMessage(parsing: Array("PRIVMSG #c :ünï ✓".utf8)).parameters.last == "ünï ✓")
    }

    @Test("every message round-trips through its encoding")
    func roundTrip() throws {
        let messages = [
            IRCMessage(command: "PRIVMSG", "#chan", "hello world"),
            IRCMessage(command: "PRIVMSG", "#chan", ":starts with colon"),
            IRCMessage(command: "PRIVMSG", "#chan", ""),
            IRCMessage(command: "JOIN", "#a"),
            IRCMessage(tags: [("msgid", "a;b c\\d"), ("+x", "")], source: "n!u@h", command: "NOTICE", ["#c", "\u{1}ACTION waves\u{1}"]),
            IRCMessage(command: "USER", "u", "0", "*", "Real Name"),
        ]
        for message in messages {
            #expect(try IRCMessage(parsing: message.encoded()) == message, "\(message)")
        }
    }

    @Test("CR, LF and NUL never reach the wire, whatever the text")
    func injection() throws {
        let hostile = IRCMessage(command: "PRIVMSG", "#c\r\nQUIT", "hi\r\nQUIT :bye\u{0}x")
        let line = hostile.line()
        #expect(line.filter { $0 == 0x0D || $0 == 0x0A }.count == 2)
        #expect(!line.contains(0))
        #expect(Array(line.suffix(2)) == [0x0D, 0x0A])
        let parsed = try IRCMessage(parsing: line)
        #expect(parsed.command == "PRIVMSG")
        #expect(parsed.parameters.count == 2)
        // A middle parameter can carry neither a space nor a leading colon.
        let spaced = try IRCMessage(parsing: IRCMessage(command: "KICK", "#c x", ":bad", "reason").encoded())
        #expect(spaced.parameters == ["#cx", "bad", "reason"])
    }
}

@Suite("IRC case mapping and splitting")
struct IRCTextTests {
    @Test("rfc1459 folds []\\~ to {}|^; ascii folds letters only")
    func caseMapping() {
        #expect(IRCCaseMapping.rfc1459.fold("Nick[A]\\~") == "nick{a}|^")
        #expect(IRCCaseMapping.strictRFC1459.fold("Nick[A]\\~") == "nick{a}|~")
        #expect(IRCCaseMapping.ascii.fold("Nick[A]") == "nick[a]")
    }

    @Test("masks: * and ? under the case mapping; a bare nick from NAMES matches only masks with * user and host")
    func masks() {
        let m = IRCMask("*!~matrix@*.Example.org")
        #expect(m.matches("bob[m]!~matrix@gw1.example.ORG", caseMapping: .rfc1459))
        #expect(!m.matches("bob!~matrixx@gw1.example.org", caseMapping: .rfc1459))
        #expect(!m.matches("bob[m]", caseMapping: .rfc1459), "user and host unknown")
        #expect(IRCMask("*[m]!*@*").matches("Bob{M}", caseMapping: .rfc1459), "[] fold to {}")
        #expect(!IRCMask("*[m]!*@*").matches("Bob{M}", caseMapping: .ascii))
        #expect(IRCMask("x????????!*@*").matches("x1a2b3c4d!~u@h", caseMapping: .ascii))
        #expect(!IRCMask("x????????!*@*").matches("x1a2b3c4!~u@h", caseMapping: .ascii))
        // Backtracking stays linear: a pathological pattern against a long subject returns.
        #expect(!IRCMask(String(repeating: "*a", count: 40) + "!*@*").matches(String(repeating: "a", count: 39) + "!u@h", caseMapping: .ascii))
    }

    @Test("splits under the byte limit, at spaces, never inside a character")
    func splitting() {
        let text = String(repeating: "日本語 ", count: 100) + String(repeating: "é", count: 300)
        let pieces = IRCLineSplitter.split(text, maximumBytes: 100)
        #expect(pieces.allSatisfy { $0.utf8.count <= 100 })
        #expect(pieces.joined().filter { $0 != " " } == text.filter { $0 != " " })
        #expect(IRCLineSplitter.split("one\ntwo\r\n\nthree", maximumBytes: 100) == ["one", "two", "three"])
        #expect(IRCLineSplitter.split("short", maximumBytes: 100) == ["short"])
    }
}
