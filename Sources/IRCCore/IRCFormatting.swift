/// mIRC formatting (modern.ircdocs.horse/formatting): bold ^B, italic ^], underline ^_,
/// strikethrough ^^, monospace ^Q, reverse ^V, reset ^O, colour ^C[fg[,bg]] and hex colour
/// ^D[RRGGBB[,RRGGBB]]. Parsed into spans, rendered as plain text or XEP-0393 styling.
public struct IRCFormatting: Sendable {
    public struct Style: Sendable, Hashable {
        public var bold = false
        public var italic = false
        public var underline = false
        public var strikethrough = false
        public var monospace = false

        public init() {}
    }

    public struct Span: Sendable, Hashable {
        public var text: String
        public var style: Style
    }

    public let spans: [Span]

    public init(parsing text: String) {
        var spans: [Span] = []
        var style = Style()
        var current = ""
        var scalars = Array(text.unicodeScalars)[...]
        func flush() {
            if !current.isEmpty { spans.append(Span(text: current, style: style)) }
            current = ""
        }
        func skip(digits maximum: Int, where allowed: (Unicode.Scalar) -> Bool) {
            var count = 0
            while count < maximum, let next = scalars.first, allowed(next) {
                scalars = scalars.dropFirst()
                count += 1
            }
        }
        let isDigit: (Unicode.Scalar) -> Bool = { $0.value >= 0x30 && $0.value <= 0x39 }
        let isHex: (Unicode.Scalar) -> Bool = { isDigit($0) || ($0.value >= 0x41 && $0.value <= 0x46) || ($0.value >= 0x61 && $0.value <= 0x66) }
        while let scalar = scalars.first {
            scalars = scalars.dropFirst()
            switch scalar.value {
            case 0x02: flush(); style.bold.toggle()
            case 0x1D: flush(); style.italic.toggle()
            case 0x1F: flush(); style.underline.toggle()
            case 0x1E: flush(); style.strikethrough.toggle()
            case 0x11: flush(); style.monospace.toggle()
            case 0x16: flush()  // reverse: no counterpart outside IRC
            case 0x0F: flush(); style = Style()
            case 0x03, 0x04:
                // Colours have no XMPP counterpart: they are read and dropped with their digits.
                flush()
                let hex = scalar.value == 0x04
                let allowed = hex ? isHex : isDigit
                let width = hex ? 6 : 2
                if let first = scalars.first, allowed(first) {
                    skip(digits: width, where: allowed)
                    if scalars.first == ",", scalars.dropFirst().first.map(allowed) == true {
                        scalars = scalars.dropFirst()
                        skip(digits: width, where: allowed)
                    }
                }
            default:
                current.unicodeScalars.append(scalar)
            }
        }
        flush()
        self.spans = spans
    }

    /// The text without any formatting.
    public var plainText: String { spans.map(\.text).joined() }

    /// XEP-0393 styling where it maps (*bold*, _italic_, ~strike~, `monospace`); underline has
    /// no counterpart. A span is styled only when its text starts and ends with a non-space,
    /// as XEP-0393 requires of a styling directive's content.
    public var styledText: String {
        var out = ""
        for span in spans {
            let text = span.text
            guard let first = text.first, let last = text.last, !first.isWhitespace, !last.isWhitespace else {
                out += text
                continue
            }
            var open = ""
            if span.style.monospace {
                out += "`" + text + "`"
                continue
            }
            if span.style.bold { open += "*" }
            if span.style.italic { open += "_" }
            if span.style.strikethrough { open += "~" }
            out += open + text + String(open.reversed())
        }
        return out
    }
}
