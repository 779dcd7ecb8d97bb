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

    @Test("ident answers: ours, not ours, malformed, out of range")
    func identAnswers() {
        let table = IdentTable()
        table.add(localAddress: "127.0.0.1", localPort: 40000, remotePort: 6667, user: "xdeadbeef")
        table.add(localAddress: "127.77.0.9", localPort: 40001, remotePort: 6667, user: "x00c0ffee")
        table.add(localAddress: "127.77.0.10", localPort: 40001, remotePort: 6667, user: "x12345678")
        #expect(IdentServer.answer(to: "40000 , 6667\r", table: table, localAddress: "127.0.0.1") == "40000 , 6667 : USERID : UNIX : xdeadbeef")
        #expect(IdentServer.answer(to: "40000,6667", table: table, localAddress: "::ffff:127.0.0.1") == "40000 , 6667 : USERID : UNIX : xdeadbeef")
        // Asked on another local address: the only entry with those ports still answers.
        #expect(IdentServer.answer(to: "40000, 6667", table: table, localAddress: "10.0.0.1") == "40000 , 6667 : USERID : UNIX : xdeadbeef")
        // Two puppets on two bind addresses share a port: only the exact address answers.
        #expect(IdentServer.answer(to: "40001 , 6667", table: table, localAddress: "127.77.0.10") == "40001 , 6667 : USERID : UNIX : x12345678")
        #expect(IdentServer.answer(to: "40001 , 6667", table: table, localAddress: "10.0.0.1") == "40001 , 6667 : ERROR : NO-USER")
        #expect(IdentServer.answer(to: "40002 , 6667", table: table, localAddress: "127.0.0.1") == "40002 , 6667 : ERROR : NO-USER")
        #expect(IdentServer.answer(to: "0 , 6667", table: table, localAddress: "127.0.0.1") == "0 , 6667 : ERROR : INVALID-PORT")
        #expect(IdentServer.answer(to: "GET / HTTP/1.0", table: table, localAddress: "127.0.0.1") == nil)
        table.remove(localAddress: "127.0.0.1", localPort: 40000, remotePort: 6667)
        #expect(IdentServer.answer(to: "40000 , 6667", table: table, localAddress: "127.0.0.1") == "40000 , 6667 : ERROR : NO-USER")
        #expect(table.count == 2)
    }
}
