import Testing
import XMPPCore

@Suite("JID")
struct JIDTests {
    @Test("parses local, domain and resource (RFC 7622 §3.1)")
    func parsing() throws {
        let jid = try JID(parsing: "Room@Rooms.Example.org/Nick/With/Slashes")
        #expect(jid.local == "room")
        #expect(jid.domain == "rooms.example.org")
        #expect(jid.resource == "Nick/With/Slashes")
        #expect(jid.bare.description == "room@rooms.example.org")
        #expect(try JID(parsing: "#ops%example@irc.example.org").local == "#ops%example")
        #expect(try JID(parsing: "example.org").local == nil)
        #expect(try JID(parsing: "a@b/c@d").resource == "c@d")
    }

    @Test("rejects malformed addresses", arguments: ["", "@domain", "a@", "a@b/", "a b@c", "a@b c", "a'b@c", "a@b\u{0}/x", "x@y/\n"])
    func rejects(input: String) {
        #expect(JID(input) == nil)
    }

    @Test("prepares every part: nodeprep, nameprep, resourceprep")
    func stringprep() throws {
        let jid = try JID(parsing: "ÄLICE@Ｅxample.ORG/Jürgen Ⅻ")
        #expect(jid.local == "älice" && jid.domain == "example.org" && jid.resource == "Jürgen XII")
        #expect(JID("a\u{05D0}b@example.org") == nil)
        #expect(JID("room@example.org/bad\u{7}nick") == nil)
        #expect(JID("room@example.org/😀") != nil)
    }

    @Test("compares local and domain without case, the resource exactly")
    func equality() {
        #expect(JID("Alice@Example.org/Phone") == JID("alice@example.org/Phone"))
        #expect(JID("alice@example.org/phone") != JID("alice@example.org/Phone"))
    }
}

@Suite("XEP-0114 handshake")
struct HandshakeTests {
    @Test("the digest is lowercase hex SHA-1 of id + secret")
    func digest() {
        // Checked against Python's hashlib.sha1(b"3BF96D32sNRtgm9i").hexdigest().
        #expect(ComponentHandshake.digest(streamID: "3BF96D32", secret: "sNRtgm9i") == "1f68d8cafb567d0a5c559ee30e37c240767fbe54")
        #expect(ComponentHandshake.digest(streamID: "", secret: "") == "da39a3ee5e6b4b0d3255bfef95601890afd80709")
    }
}

@Suite("Stanza helpers")
struct StanzaTests {
    @Test("an error reply swaps addresses and carries the condition (RFC 6120 §8.3)")
    func errorReply() {
        let presence = XMLElement.stanza(.presence, from: JID("a@b/c")!, to: JID("r@s/n")!)
        let reply = presence.errorReply(type: "cancel", condition: "conflict", text: "taken")
        #expect(reply["from"] == "r@s/n")
        #expect(reply["to"] == "a@b/c")
        #expect(reply["type"] == "error")
        #expect(reply.errorCondition == "conflict")
    }
}
