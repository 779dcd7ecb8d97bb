import XMLCore

/// The three stanza kinds of RFC 6120 §8.
public enum StanzaKind: String, Sendable {
    case message, presence, iq
}

/// A read-only view over a stanza element: its addressing and type, with typed accessors.
///
/// Stanzas stay `XMLElement`s (so nothing a peer sent is lost when we forward it); this view
/// only interprets them.
public struct Stanza: Sendable, Hashable {
    public var element: XMLElement

    public init?(_ element: XMLElement) {
        guard StanzaKind(rawValue: element.name) != nil else { return nil }
        self.element = element
    }

    public var kind: StanzaKind { StanzaKind(rawValue: element.name)! }
    public var from: JID? { element["from"].flatMap(JID.init) }
    public var to: JID? { element["to"].flatMap(JID.init) }
    public var id: String? { element["id"] }
    public var type: String? { element["type"] }
}

extension XMLElement {
    /// `<message/>`, `<presence/>` or `<iq/>` in the component namespace.
    public static func stanza(
        _ kind: StanzaKind, from: JID, to: JID, type: String? = nil, id: String? = nil, children: [XMLElement] = []
    ) -> XMLElement {
        var attributes = ["from": from.description, "to": to.description]
        if let type { attributes["type"] = type }
        if let id { attributes["id"] = id }
        return XMLElement(kind.rawValue, namespace: NS.component, attributes: attributes, children: children.map { .element($0) })
    }

    /// An error reply to this stanza (RFC 6120 §8.3): addresses swapped, original children kept
    /// for messages and presences, the `<error/>` appended, with an application-specific
    /// condition element in it when given (§8.3.3.3).
    public func errorReply(type errorType: String, condition: String, text: String? = nil, application: XMLElement? = nil) -> XMLElement {
        var reply = self
        reply["from"] = self["to"]
        reply["to"] = self["from"]
        reply["type"] = "error"
        if name == "iq" { reply.children = [] }
        var error = XMLElement("error", namespace: NS.component, attributes: ["type": errorType])
        error.append(XMLElement(condition, namespace: NS.stanzas))
        if let text { error.append(.text("text", namespace: NS.stanzas, text)) }
        if let application { error.append(application) }
        reply.append(error)
        return reply
    }

    /// The defined condition of an error stanza, if any.
    public var errorCondition: String? {
        guard let error = child("error", namespace: namespace) ?? elements.first(where: { $0.name == "error" }) else {
            return nil
        }
        return error.elements.first { $0.namespace == NS.stanzas && $0.name != "text" }?.name
    }

    /// An `iq` result to this `iq` with an optional payload.
    public func iqResult(_ payload: XMLElement? = nil) -> XMLElement {
        var reply = XMLElement("iq", namespace: NS.component, attributes: ["type": "result"])
        reply["from"] = self["to"]
        reply["to"] = self["from"]
        reply["id"] = self["id"]
        if let payload { reply.append(payload) }
        return reply
    }
}
