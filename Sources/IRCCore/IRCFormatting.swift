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

extension IRCFormatting {
    /// XEP-0393 span styling as mIRC codes for IRC: `*bold*` is ^B*bold*^B, `_italic_` ^], `~strike~`
    /// ^^, and `` `code` `` ^Q (its content left alone). The directives stay, so an IRC client
    /// that shows no formatting still shows the emphasis. Only valid spans count: the opening
    /// character starts the line or follows a space or another opening, neither end touches a
    /// space inside, and both are on one line; `snake_case_names` and `2*3*4` stay as they are.
    /// Lines of a preformatted block (```) are left alone.
    public static func mircFromStyling(_ text: String) -> String {
        guard text.contains(where: { "*_~`".contains($0) }) else { return text }
        var inBlock = false
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inBlock.toggle()
                lines.append(String(line))
            } else {
                // A line longer than any chat line is left alone rather than searched.
                lines.append(inBlock || line.utf8.count > 4096 ? String(line) : styledLine(Array(line)))
            }
        }
        return lines.joined(separator: "\n")
    }

    private static let codes: [Character: Character] = ["*": "\u{02}", "_": "\u{1D}", "~": "\u{1E}", "`": "\u{11}"]

    private static func styledLine(_ line: [Character]) -> String {
        var out = ""
        var i = 0
        // Directives with no closing anywhere after a point: none after a later one either, so
        // `_a _a _a …` is searched once, not once per opening.
        var unclosed: Set<Character> = []
        while i < line.count {
            let c = line[i]
            if let code = codes[c], !unclosed.contains(c), i + 1 < line.count, !line[i + 1].isWhitespace,
                i == 0 || line[i - 1].isWhitespace || (codes[line[i - 1]] != nil && line[i - 1] != c)
            {
                if let end = closing(c, in: line, after: i) {
                    let inner = Array(line[(i + 1)..<end])
                    let content = c == "`" ? String(inner) : styledLine(inner)
                    out += "\(code)\(c)\(content)\(c)\(code)"
                    i = end + 1
                    continue
                }
                unclosed.insert(c)
            }
            out.append(c)
            i += 1
        }
        return out
    }

    /// The closing directive for the one opened at `start`: the same character after a
    /// non-space, not followed by a letter or digit.
    private static func closing(_ c: Character, in line: [Character], after start: Int) -> Int? {
        var j = start + 2
        while j < line.count {
            if line[j] == c, !line[j - 1].isWhitespace, j + 1 == line.count || !(line[j + 1].isLetter || line[j + 1].isNumber) {
                return j
            }
            j += 1
        }
        return nil
    }
}
