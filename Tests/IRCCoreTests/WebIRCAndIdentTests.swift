import IRCCore
import Testing

@testable import IRCNIO

@Suite("WEBIRC and the ident server's answers")
struct WebIRCAndIdentTests {
    @Test("WEBIRC goes first, with the local address when none is configured")
    func webircFirst() {
        var registration = IRCRegistration(
            nick: "alice", username: "x1a2b3c4d", realname: "Alice", password: "serverpass",
            webirc: IRCWebIRC(password: "gw-secret", gateway: "shadowbridge", hostname: "1a2b3c4d.irc.example.org"))
        let lines = registration.start(localAddress: "::ffff:192.0.2.7").compactMap { action -> String? in
            guard case .send(let message) = action else { return nil }
            return message.command + " " + message.parameters.joined(separator: " ")
        }
        #expect(lines.first == "WEBIRC gw-secret shadowbridge 1a2b3c4d.irc.example.org 192.0.2.7")
        #expect(lines.dropFirst().first == "CAP LS 302")
        #expect(lines.contains("PASS serverpass"))
    }

    @Test("no WEBIRC without an address, or with a field that is not one word")
    func webircRefusesBadFields() {
        let good = IRCWebIRC(password: "p", gateway: "g", hostname: "h.example")
        #expect(good.message(localAddress: nil) == nil)
        #expect(good.message(localAddress: "2001:db8::5")?.parameters.last == "2001:db8::5")
        #expect(IRCWebIRC(password: "p w", gateway: "g", hostname: "h").message(localAddress: "192.0.2.1") == nil)
        #expect(IRCWebIRC(password: ":p", gateway: "g", hostname: "h").message(localAddress: "192.0.2.1") == nil)
        #expect(IRCWebIRC(password: "p", gateway: "g", hostname: "h\r\nQUIT").message(localAddress: "192.0.2.1") == nil)
        #expect(IRCWebIRC(password: "p", gateway: "g", hostname: "h", address: "198.51.100.2").message(localAddress: "192.0.2.1")?.parameters.last == "198.51.100.2")
    }

    @Test("an IPv6 address starting with a colon gets a leading 0, as the WEBIRC spec says")
    func webircLeadingColon() {
        #expect(IRCWebIRC(password: "p", gateway: "g", hostname: "h").message(localAddress: "::1")?.parameters.last == "0::1")
    }

    @Test("ident answers: ours, not ours, asked by a stranger, malformed, out of range")
    func identAnswers() {
        let table = IdentTable()
        let server = "192.0.2.50"
        func key(_ local: String, _ port: Int, to remote: String = server) -> IdentTable.Key {
            IdentTable.Key(localAddress: local, localPort: port, remoteAddress: remote, remotePort: 6667)
        }
        table.add(key("127.0.0.1", 40000), user: "xdeadbeef")
        table.add(key("127.77.0.9", 40001), user: "x00c0ffee")
        table.add(key("127.77.0.10", 40001), user: "x12345678")
        // The same local port towards another network: a different connection.
        table.add(key("127.0.0.1", 40000, to: "198.51.100.9"), user: "xotherone")
        func ask(_ line: String, on local: String, from querier: String = server) -> String? {
            IdentServer.answer(to: line, table: table, localAddress: local, querier: querier)
        }
        #expect(ask("40000 , 6667\r", on: "127.0.0.1") == "40000 , 6667 : USERID : UNIX : xdeadbeef")
        #expect(ask("40000,6667", on: "::ffff:127.0.0.1", from: "::ffff:192.0.2.50") == "40000 , 6667 : USERID : UNIX : xdeadbeef")
        #expect(ask("40000 , 6667", on: "127.0.0.1", from: "198.51.100.9") == "40000 , 6667 : USERID : UNIX : xotherone")
        // Only the server a connection goes to may ask about it.
        #expect(ask("40000 , 6667", on: "127.0.0.1", from: "203.0.113.7") == "40000 , 6667 : ERROR : NO-USER")
        // Asked on another local address: the only entry with those ports still answers.
        #expect(ask("40000, 6667", on: "10.0.0.1") == "40000 , 6667 : USERID : UNIX : xdeadbeef")
        // Two puppets on two bind addresses share a port: only the exact address answers.
        #expect(ask("40001 , 6667", on: "127.77.0.10") == "40001 , 6667 : USERID : UNIX : x12345678")
        #expect(ask("40001 , 6667", on: "10.0.0.1") == "40001 , 6667 : ERROR : NO-USER")
        #expect(ask("40002 , 6667", on: "127.0.0.1") == "40002 , 6667 : ERROR : NO-USER")
        #expect(ask("0 , 6667", on: "127.0.0.1") == "0 , 6667 : ERROR : INVALID-PORT")
        #expect(ask("GET / HTTP/1.0", on: "127.0.0.1") == nil)
        table.remove(key("127.0.0.1", 40000))
        #expect(ask("40000 , 6667", on: "127.0.0.1") == "40000 , 6667 : ERROR : NO-USER")
        #expect(table.count == 3)
    }
}
