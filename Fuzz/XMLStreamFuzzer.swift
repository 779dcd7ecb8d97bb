import XMLCore

/// libFuzzer entry: feeds the input to a fresh stream parser in two chunks split at the first
/// byte's value, so chunk boundaries are fuzzed too. Any crash, trap or sanitizer report is a bug.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzXMLStream(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let parser = XMLStreamParser(limits: .init(maximumStanzaBytes: 1 << 16, maximumDepth: 32))
    let split = bytes.isEmpty ? 0 : Int(bytes[0]) % (bytes.count + 1)
    let header = Array("<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' id='x'>".utf8)
    guard let events = try? parser.feed(header) else { return 0 }
    _ = events
    for chunk in [bytes[..<split], bytes[split...]] {
        guard let events = try? parser.feed(Array(chunk)) else { return 0 }
        for case .element(let element) in events {
            // Everything parsed must serialize and parse back equal.
            let again = XMLStreamParser()
            let text = element.serialized(parentNamespace: "jabber:component:accept")
            guard let reparsed = try? again.feed(header + Array(text.utf8)) else { fatalError("serialized element does not parse: \(text)") }
            guard reparsed.last == .element(element) else { fatalError("round trip changed the element: \(text)") }
        }
    }
    return 0
}
