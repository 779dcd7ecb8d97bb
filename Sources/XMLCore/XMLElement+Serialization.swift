extension XMLElement {
    /// Serializes the element. `parentNamespace` is the default namespace in scope where the
    /// element is written (for a stanza, the stream's), so no redundant `xmlns` is emitted.
    public func serialized(parentNamespace: String = "") -> String {
        var out = ""
        out.reserveCapacity(256)
        write(into: &out, parentNamespace: parentNamespace)
        return out
    }

    public func write(into out: inout String, parentNamespace: String) {
        out += "<"
        out += name
        if namespace != parentNamespace {
            out += " xmlns='"
            XMLEscaping.appendAttribute(namespace, to: &out)
            out += "'"
        }
        var prefixes = 0
        for attribute in attributes {
            out += " "
            if attribute.namespace == XMLAttribute.xmlNamespace {
                out += "xml:"
            } else if !attribute.namespace.isEmpty {
                // Rare in XMPP: declare a prefix for this one attribute.
                prefixes += 1
                out += "xmlns:a\(prefixes)='"
                XMLEscaping.appendAttribute(attribute.namespace, to: &out)
                out += "' a\(prefixes):"
            }
            out += attribute.name
            out += "='"
            XMLEscaping.appendAttribute(attribute.value, to: &out)
            out += "'"
        }
        if children.isEmpty {
            out += "/>"
            return
        }
        out += ">"
        for child in children {
            switch child {
            case .text(let text): XMLEscaping.appendText(text, to: &out)
            case .element(let element): element.write(into: &out, parentNamespace: namespace)
            }
        }
        out += "</"
        out += name
        out += ">"
    }
}

/// Escaping for character data and single-quoted attribute values (XML 1.0 §2.4, §3.3.3).
///
/// Characters XML 1.0 forbids (most C0 controls, U+FFFE, U+FFFF) are dropped: whatever a peer
/// sent us, what we write is well-formed. CR, LF and TAB in attributes, and CR in text, are
/// written as character references so that attribute-value and end-of-line normalization on the
/// reading side give back exactly what was stored.
public enum XMLEscaping {
    @inline(__always)
    static func isForbidden(_ v: UInt32) -> Bool {
        (v < 0x20 && v != 0x09 && v != 0x0A && v != 0x0D) || v == 0xFFFE || v == 0xFFFF
    }

    public static func appendText(_ s: String, to out: inout String) { append(s, to: &out, inAttribute: false) }

    public static func appendAttribute(_ s: String, to out: inout String) { append(s, to: &out, inAttribute: true) }

    private static func append(_ s: String, to out: inout String, inAttribute: Bool) {
        // Fast path: nothing to escape or drop (0xEF starts U+FFFE and U+FFFF in UTF-8).
        if !s.utf8.contains(where: { $0 == 0x26 || $0 == 0x3C || $0 == 0x3E || $0 == 0x27 || $0 == 0x22 || $0 < 0x20 || $0 == 0xEF }) {
            out += s
            return
        }
        for scalar in s.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\r": out += "&#13;"
            case "'" where inAttribute: out += "&apos;"
            case "\"" where inAttribute: out += "&quot;"
            case "\n" where inAttribute: out += "&#10;"
            case "\t" where inAttribute: out += "&#9;"
            default:
                if !isForbidden(scalar.value) { out.unicodeScalars.append(scalar) }
            }
        }
    }

    /// Removes what XML 1.0 cannot carry, for text that will be placed in a stanza.
    public static func xmlSafe(_ s: String) -> String {
        guard s.unicodeScalars.contains(where: { isForbidden($0.value) }) else { return s }
        var out = String.UnicodeScalarView()
        for scalar in s.unicodeScalars where !isForbidden(scalar.value) { out.append(scalar) }
        return String(out)
    }
}
