import Testing
@testable import XMLCore

/// The stream reader under every chunking: the same bytes give the same events whatever
/// way the network splits them (STYLE 7).
@Suite("XML stream parser")
struct XMLStreamParserTests {
    static let header = "<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' from='xmpp.test' id='abc123'>"

    static let fixtures: [String] = [
        "<handshake/>",
        "<message from='a@b/c' to='room@rooms.test' type='groupchat' id='1'><body>hello</body></message>",
        "<message to='x@y'><body>caf\u{E9} \u{2603} \u{1F600} &amp; &lt;tag&gt; &#x263A; &#38;</body></message>",
        "<presence from='a@b/c' to='r@s/nick'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x><status xml:lang='en'>away &amp; out</status></presence>",
        "<iq type='get' id='q1' to='rooms.test' from='u@h/r'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        "<message a='&apos;&quot;&amp;&lt;&gt;' b='tab&#9;lf&#10;cr&#13;'><body>mixed <b xmlns='urn:x'>bold</b> tail</body></message>",
        "<message><body><![CDATA[raw <cdata> & stuff]]></body></message>",
        "<a xmlns='urn:deep'><b><c><d><e><f>deep</f></e></d></c></b></a>",
    ]

    static func parseAll(_ chunks: [[UInt8]]) throws -> [XMLStreamEvent] {
        let parser = XMLStreamParser()
        var events: [XMLStreamEvent] = []
        for chunk in chunks { events += try parser.feed(chunk) }
        return events
    }

    static var document: [UInt8] {
        Array((header + fixtures.joined(separator: " \n") + "</stream:stream>").utf8)
    }

    @Test("one chunk gives a header, every element, then the end")
    func wholeDocument() throws {
        let events = try Self.parseAll([Self.document])
        #expect(events.count == Self.fixtures.count + 2)
        guard case .streamOpened(let root) = events.first else {
            Issue.record("no stream header")
            return
        }
        #expect(root.name == "stream" && root.namespace == "http://etherx.jabber.org/streams")
        #expect(root["id"] == "abc123")
        #expect(events.last == .streamClosed)
    }

    @Test("any chunking gives the same events", arguments: [1, 2, 3, 7, 64, 0])
    func rechunking(seed: UInt64) throws {
        let expected = try Self.parseAll([Self.document])
        var generator = SplitMix(seed: seed)
        let bytes = Self.document
        for _ in 0..<25 {
            var chunks: [[UInt8]] = []
            var i = 0
            while i < bytes.count {
                let size = seed == 1 ? 1 : Int(generator.next() % 40) + 1
                chunks.append(Array(bytes[i..<min(bytes.count, i + size)]))
                i += size
            }
            #expect(try Self.parseAll(chunks) == expected)
        }
    }

    @Test("text, entities, character references and CDATA are decoded")
    func decoding() throws {
        let events = try Self.parseAll([Self.document])
        guard case .element(let message) = events[3] else { return }
        #expect(message.child("body", namespace: "jabber:component:accept")?.text == "caf\u{E9} \u{2603} \u{1F600} & <tag> \u{263A} &")
        guard case .element(let attrs) = events[6] else { return }
        #expect(attrs["a"] == "'\"&<>")
        #expect(attrs["b"] == "tab\tlf\ncr\r")
        guard case .element(let cdata) = events[7] else { return }
        #expect(cdata.elements.first?.text == "raw <cdata> & stuff")
        guard case .element(let presence) = events[4] else { return }
        let status = presence.child("status", namespace: "jabber:component:accept")
        #expect(status?.attributes.first?.namespace == XMLAttribute.xmlNamespace)
        #expect(status?.attributes.first?.name == "lang")
    }

    @Test("every parsed element serializes and parses back equal")
    func roundTrip() throws {
        let events = try Self.parseAll([Self.document])
        for case .element(let element) in events {
            let text = element.serialized(parentNamespace: "jabber:component:accept")
            let again = try Self.parseAll([Array((Self.header + text).utf8)])
            #expect(again.dropFirst().first == .element(element), "\(text)")
        }
    }

    @Test("built elements with hostile text round-trip and stay well-formed")
    func builtRoundTrip() throws {
        let nasty = "a&b<c>d'e\"f\tg\nh\ri\u{0}j\u{1B}k\u{FFFE}l]]>m"
        var element = XMLElement("message", namespace: "jabber:component:accept", attributes: ["to": nasty])
        element.append(.text("body", namespace: "jabber:component:accept", nasty))
        let text = element.serialized(parentNamespace: "jabber:component:accept")
        let events = try Self.parseAll([Array((Self.header + text).utf8)])
        guard case .element(let parsed) = events.last else {
            Issue.record("not parsed: \(text)")
            return
        }
        let safe = "a&b<c>d'e\"f\tg\nh\rijkl]]>m"
        #expect(parsed["to"] == safe)
        #expect(parsed.elements.first?.text == safe)
    }

    @Test(
        "restricted XML (RFC 6120 §11.1) fails the stream",
        arguments: [
            ("<!DOCTYPE stream [<!ENTITY x 'y'>]>", XMLStreamError.Code.malformed),
            ("<message><!-- comment --></message>", .restricted),
            ("<?pi data?>", .restricted),
            ("<message><body>&custom;</body></message>", .restricted),
            ("<message><body>unclosed</message>", .malformed),
            ("<message \u{1}='x'/>", .malformed),
        ])
    func restricted(input: String, code: XMLStreamError.Code) {
        let parser = XMLStreamParser()
        #expect(throws: XMLStreamError.self) {
            _ = try parser.feed(Array((Self.header + input).utf8))
        }
        do {
            _ = try parser.feed(Array("<more/>".utf8))
            Issue.record("a failed parser accepted more input")
        } catch {
            #expect(error.code == code)
        }
    }

    @Test("a billion-laughs document is refused before any expansion")
    func billionLaughs() {
        let bomb = """
            <?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]><stream:stream xmlns:stream='http://etherx.jabber.org/streams'><message>&lol2;</message>
            """
        let parser = XMLStreamParser()
        #expect(throws: XMLStreamError(code: .restricted, detail: "DTD not allowed in an XMPP stream")) { _ = try parser.feed(Array(bomb.utf8)) }
    }

    @Test("invalid UTF-8 fails the stream")
    func invalidUTF8() {
        let parser = XMLStreamParser()
        #expect(throws: XMLStreamError.self) {
            _ = try parser.feed(Array(Self.header.utf8) + Array("<message><body>".utf8) + [0xC3, 0x28] + Array("</body></message>".utf8))
        }
    }

    @Test("a stanza over the byte cap fails the stream, whatever the chunking")
    func sizeCap() {
        let parser = XMLStreamParser(limits: .init(maximumStanzaBytes: 4096, maximumDepth: 64))
        #expect(throws: XMLStreamError.self) {
            _ = try parser.feed(Array(Self.header.utf8))
            _ = try parser.feed(Array("<message><body>".utf8))
            for _ in 0..<100 { _ = try parser.feed(Array(repeating: UInt8(ascii: "a"), count: 100)) }
        }
    }

    @Test("many stanzas under the cap pass: the cap is per stanza, not per stream")
    func sizeCapIsPerStanza() throws {
        let parser = XMLStreamParser(limits: .init(maximumStanzaBytes: 4096, maximumDepth: 64))
        _ = try parser.feed(Array(Self.header.utf8))
        var count = 0
        for _ in 0..<500 {
            count += try parser.feed(Array("<message><body>\(String(repeating: "x", count: 100))</body></message>".utf8)).count
        }
        #expect(count == 500)
    }

    @Test("nesting deeper than the cap fails the stream")
    func depthCap() {
        let parser = XMLStreamParser(limits: .init(maximumStanzaBytes: 1 << 20, maximumDepth: 10))
        #expect(throws: XMLStreamError.self) {
            _ = try parser.feed(Array((Self.header + String(repeating: "<a>", count: 20)).utf8))
        }
    }

    @Test("a body of 40,000 entity references is one text node (linear, not quadratic; found in review)")
    func manyEntities() throws {
        let parser = XMLStreamParser()
        let body = String(repeating: "&amp;", count: 40_000)
        let events = try parser.feed(Array((Self.header + "<message><body>a\(body)<b/>z\(body)</body></message>").utf8))
        guard case .element(let message) = events.last else {
            Issue.record("no message")
            return
        }
        let children = message.elements.first?.children ?? []
        #expect(children.count == 3)
        #expect(children.first == .text("a" + String(repeating: "&", count: 40_000)))
        #expect(children.last == .text("z" + String(repeating: "&", count: 40_000)))
    }

    @Test("names and namespaces stay right past the parser's name table and across a reset")
    func manyNames() throws {
        // The parser keeps 256 names by libxml2's address for them; 1,000 element names, 600
        // attribute names and 300 namespaces make slots change hands many times.
        func stanzas(_ order: [Int]) -> String {
            order.map { i in "<e\(i) xmlns='urn:n\(i % 300)&amp;x' a\(i % 600)='v\(i)'><c\(i)/></e\(i)>" }.joined()
        }
        func check(_ events: [XMLStreamEvent], _ order: [Int]) {
            let elements = events.compactMap { if case .element(let e) = $0 { e } else { nil } }
            #expect(elements.count == order.count)
            for (element, i) in zip(elements, order) {
                #expect(element.name == "e\(i)" && element.namespace == "urn:n\(i % 300)&x")
                #expect(element.attributes == [XMLAttribute(name: "a\(i % 600)", value: "v\(i)")])
                #expect(element.elements.map(\.name) == ["c\(i)"])
            }
        }
        let parser = XMLStreamParser()
        let order = Array(0..<1_000)
        check(try parser.feed(Array((Self.header + stanzas(order)).utf8)), order)
        parser.reset()
        let reversed = Array(order.reversed())
        check(try parser.feed(Array((Self.header + stanzas(reversed)).utf8)), reversed)
    }

    @Test("reset starts a new stream")
    func reset() throws {
        let parser = XMLStreamParser()
        _ = try? parser.feed(Array("<<<".utf8))
        parser.reset()
        let events = try parser.feed(Array((Self.header + "<handshake/>").utf8))
        #expect(events.count == 2)
    }
}

/// A small deterministic generator for chunk sizes.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
