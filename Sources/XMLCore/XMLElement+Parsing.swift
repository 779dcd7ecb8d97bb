extension XMLElement {
    /// Reads one element from text written by `serialized(parentNamespace:)`, with the same
    /// restrictions as a stream (no DTD, no entities, depth and size caps). The element's
    /// default namespace, when it has none of its own, is `namespace`.
    public init(parsing text: String, namespace: String = "") throws(XMLStreamError) {
        let parser = XMLStreamParser()
        let open = namespace.isEmpty ? "<r>" : "<r xmlns='\(namespace)'>"
        var events = try parser.feed(Array(open.utf8))
        events += try parser.feed(Array(text.utf8))
        events += try parser.feed(Array("</r>".utf8))
        let elements = events.compactMap { event -> XMLElement? in
            if case .element(let element) = event { return element }
            return nil
        }
        guard elements.count == 1, let element = elements.first else {
            throw XMLStreamError(code: .malformed, detail: "expected one element, found \(elements.count)")
        }
        self = element
    }
}
