/// An XML element as XMPP uses it: a namespaced name, ordered attributes and mixed content.
///
/// A value type so stanzas can be built, compared and handed between tasks freely. The
/// namespace is always explicit (never inherited at read time); the serializer decides where
/// an `xmlns` declaration is needed (RFC 6120 §4.8.3).
public struct XMLElement: Sendable, Hashable {
    public var name: String
    public var namespace: String
    public var attributes: [XMLAttribute]
    public var children: [XMLNode]

    public init(
        _ name: String, namespace: String, attributes: [String: String] = [:], children: [XMLNode] = []
    ) {
        self.name = name
        self.namespace = namespace
        // Sorted so that built elements serialize the same way every time.
        self.attributes = attributes.sorted { $0.key < $1.key }.map { XMLAttribute(name: $0.key, value: $0.value) }
        self.children = children
    }

    public init(name: String, namespace: String, attributeList: [XMLAttribute], children: [XMLNode]) {
        self.name = name
        self.namespace = namespace
        self.attributes = attributeList
        self.children = children
    }

    /// The value of the un-namespaced attribute `name`; setting `nil` removes it.
    public subscript(attribute: String) -> String? {
        get { attributes.first { $0.name == attribute && $0.namespace.isEmpty }?.value }
        set {
            let index = attributes.firstIndex { $0.name == attribute && $0.namespace.isEmpty }
            switch (index, newValue) {
            case (let i?, let v?): attributes[i].value = v
            case (let i?, nil): attributes.remove(at: i)
            case (nil, let v?): attributes.append(XMLAttribute(name: attribute, value: v))
            case (nil, nil): break
            }
        }
    }

    /// Child elements, in document order.
    public var elements: [XMLElement] {
        children.compactMap { if case .element(let e) = $0 { e } else { nil } }
    }

    /// The first child element with this name and namespace.
    public func child(_ name: String, namespace: String) -> XMLElement? {
        for case .element(let e) in children where e.name == name && e.namespace == namespace { return e }
        return nil
    }

    /// The first child element in `namespace`, whatever its name.
    public func child(namespace: String) -> XMLElement? {
        for case .element(let e) in children where e.namespace == namespace { return e }
        return nil
    }

    public func children(_ name: String, namespace: String) -> [XMLElement] {
        elements.filter { $0.name == name && $0.namespace == namespace }
    }

    /// The concatenated character data directly inside this element.
    public var text: String {
        var out = ""
        for case .text(let t) in children { out += t }
        return out
    }

    public mutating func append(_ element: XMLElement) { children.append(.element(element)) }

    public mutating func append(text: String) { children.append(.text(text)) }

    /// Removes every child element matching the predicate.
    public mutating func removeElements(where shouldRemove: (XMLElement) -> Bool) {
        children.removeAll { if case .element(let e) = $0 { shouldRemove(e) } else { false } }
    }

    /// A copy with a text child; convenient for building `<body>hi</body>`.
    public static func text(_ name: String, namespace: String, _ text: String, attributes: [String: String] = [:])
        -> XMLElement
    {
        XMLElement(name, namespace: namespace, attributes: attributes, children: text.isEmpty ? [] : [.text(text)])
    }
}

/// One child of an element.
public enum XMLNode: Sendable, Hashable {
    case element(XMLElement)
    case text(String)
}

/// An attribute; `namespace` is empty for ordinary attributes and the XML namespace for `xml:lang`.
public struct XMLAttribute: Sendable, Hashable {
    public var name: String
    public var namespace: String
    public var value: String

    public init(name: String, namespace: String = "", value: String) {
        self.name = name
        self.namespace = namespace
        self.value = value
    }

    public static let xmlNamespace = "http://www.w3.org/XML/1998/namespace"
}
