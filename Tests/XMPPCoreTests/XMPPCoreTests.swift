import Foundation
import Testing
@testable import XMPPCore

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

    /// The printable-ASCII shortcut must decide exactly as the full rules do: the same JID, or
    /// the same refusal, for strings built from the characters that matter.
    @Test("the ASCII shortcut parses as the full rules do (200,000 strings)")
    func asciiShortcut() {
        let alphabet = Array("aZ9@/. :&'\"<>_-%#x")
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200_000 {
            let length = Int.random(in: 0...9, using: &generator)
            let s = String((0..<length).map { _ in alphabet.randomElement(using: &generator)! })
            let fast = Result { () throws(JID.Invalid) in try JID(parsing: s) }
            let full = Result { () throws(JID.Invalid) in try JID(parsingFully: s) }
            switch (fast, full) {
            case (.success(let a), .success(let b)):
                #expect(a == b && a.description == b.description, "\(s)")
            case (.failure(let a), .failure(let b)):
                #expect(a.reason == b.reason, "\(s)")
            default:
                Issue.record("\(s): shortcut \(fast), full rules \(full)")
            }
        }
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

@Suite("Random ids")
struct RandomIDTests {
    @Test("ids drawn across several refills of the per-thread pool are all different and well formed")
    func distinctAcrossRefills() {
        // 12 bytes an id, 2,000 ids: the 4 KiB pool is refilled five times.
        let ids = (0..<2000).map { _ in RandomID.make(bytes: 12) }
        #expect(Set(ids).count == ids.count)
        #expect(ids.allSatisfy { $0.count == 24 && $0.allSatisfy(\.isHexDigit) })
        #expect(!ids.contains(String(repeating: "0", count: 24)))
    }

    @Test("a request over the pooled limit (256 bytes) is served whole")
    func largeRequest() {
        let a = RandomID.bytes(300), b = RandomID.bytes(300)
        #expect(a.count == 300 && a != b)
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

@Suite("MAM queries (XEP-0313 v2 with XEP-0059)")
struct MAMQueryTests {
    static let room = JID("ops@rooms.test")!

    static func query(form: [String: [String]] = [:], set: [XMLElement] = [], flip: Bool = false) -> XMLElement {
        var query = XMLElement("query", namespace: NS.mam, attributes: ["queryid": "q1"])
        if !form.isEmpty {
            query.append(DataForm(type: "submit", formType: NS.mam, fields: form.map { .init($0.key, values: $0.value) }).element)
        }
        if !set.isEmpty { query.append(XMLElement("set", namespace: NS.rsm, children: set.map { .element($0) })) }
        if flip { query.append(XMLElement("flip-page", namespace: NS.mam)) }
        return query
    }

    @Test("filters and paging are read; max is capped; an empty before asks for the last page")
    func parse() throws {
        let q = try MAMQuery(
            Self.query(form: ["with": ["ops@rooms.test/alice"], "start": ["2026-11-25T10:00:00Z"], "after-id": ["a1"]],
                set: [.text("max", namespace: NS.rsm, "500"), XMLElement("before", namespace: NS.rsm)], flip: true),
            archive: Self.room)
        #expect(q.queryID == "q1" && q.withNick == "alice" && q.afterID == "a1" && q.flipPage)
        #expect(q.start == XMPPDateTime.parse("2026-11-25T10:00:00Z"))
        #expect(q.max == MAMQuery.pageLimit && q.page == .before(nil))
        let after = try MAMQuery(Self.query(set: [.text("after", namespace: NS.rsm, "x9")]), archive: Self.room)
        #expect(after.page == .after("x9") && after.withNick == nil)
        #expect(try MAMQuery(Self.query(form: ["with": ["ops@rooms.test"]]), archive: Self.room).withNick == nil)
    }

    @Test("bad queries are refused with the right condition")
    func refusals() {
        func condition(_ query: XMLElement) -> String? {
            do {
                _ = try MAMQuery(query, archive: Self.room)
                return nil
            } catch {
                return error.condition
            }
        }
        #expect(condition(Self.query(form: ["start": ["yesterday"]])) == "bad-request")
        #expect(condition(Self.query(form: ["with": ["other@rooms.test/x"]])) == "item-not-found")
        #expect(condition(Self.query(set: [.text("max", namespace: NS.rsm, "-1")])) == "bad-request")
        #expect(condition(Self.query(set: [.text("index", namespace: NS.rsm, "3")])) == "feature-not-implemented")
    }

    @Test("a result forwards the archived message in the client namespace with its delay; fin carries first, last, count")
    func results() throws {
        let q = try MAMQuery(Self.query(), archive: Self.room)
        let stored = try XMLElement(
            parsing: "<message from='ops@rooms.test/alice' type='groupchat'><body>hi &amp; bye</body></message>", namespace: NS.component)
        let result = q.result(from: Self.room, to: JID("bob@x.test/r")!, id: "s1", date: Date(timeIntervalSince1970: 0), message: stored)
        #expect(result.child("result", namespace: NS.mam)?["queryid"] == "q1" && result.child("result", namespace: NS.mam)?["id"] == "s1")
        let forwarded = try #require(result.child("result", namespace: NS.mam)?.child("forwarded", namespace: NS.forward))
        #expect(forwarded.child("delay", namespace: NS.delay)?["stamp"] == "1970-01-01T00:00:00Z")
        let inner = try #require(forwarded.child("message", namespace: "jabber:client"))
        #expect(inner.child("body", namespace: "jabber:client")?.text == "hi & bye")
        let iq = XMLElement.stanza(.iq, from: JID("bob@x.test/r")!, to: Self.room, type: "set", id: "i1")
        let fin = MAMQuery.fin(iq, first: "s1", last: "s3", count: 3, complete: true).child("fin", namespace: NS.mam)
        #expect(fin?["complete"] == "true" && fin?.child("set", namespace: NS.rsm)?.child("count", namespace: NS.rsm)?.text == "3")
    }

    @Test("parsing one element refuses two, none, and a DTD")
    func parsingOne() {
        #expect(throws: XMLStreamError.self) { try XMLElement(parsing: "<a/><b/>") }
        #expect(throws: XMLStreamError.self) { try XMLElement(parsing: "text only") }
        #expect(throws: XMLStreamError.self) { try XMLElement(parsing: "<!DOCTYPE x><a/>") }
    }
}
