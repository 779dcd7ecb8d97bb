/// Why a line is not an IRC message.
public struct IRCParseError: Error, Sendable, Hashable, CustomStringConvertible {
    public var reason: String
    public var description: String { "malformed IRC line: \(reason)" }
}

extension IRCMessage {
    /// Parses one line (without CR LF). Text is decoded as UTF-8, falling back per parameter to
    /// `fallback` when it is not valid UTF-8 (mIRC users still send cp1252).
    public init(parsing line: some Collection<UInt8>, fallback: IRCTextEncoding = .cp1252) throws(IRCParseError) {
        var bytes = Array(line)
        // Tolerate a lone trailing CR (servers that send CR CR LF) and stray NULs.
        while let last = bytes.last, last == 0x0D || last == 0x0A { bytes.removeLast() }
        var i = 0
        let n = bytes.count

        func skipSpaces() { while i < n && bytes[i] == 0x20 { i += 1 } }
        func word() -> ArraySlice<UInt8> {
            let start = i
            while i < n && bytes[i] != 0x20 { i += 1 }
            return bytes[start..<i]
        }

        var tags: [Tag] = []
        if i < n && bytes[i] == UInt8(ascii: "@") {
            i += 1
            let raw = word()
            for item in raw.split(separator: UInt8(ascii: ";"), omittingEmptySubsequences: true) {
                if let eq = item.firstIndex(of: UInt8(ascii: "=")) {
                    let key = String(decoding: item[item.startIndex..<eq], as: UTF8.self)
                    let value = Self.unescapeTagValue(fallback.decode(item[(eq + 1)...]))
                    tags.append(Tag(key: key, value: value))
                } else {
                    tags.append(Tag(key: String(decoding: item, as: UTF8.self), value: ""))
                }
            }
            skipSpaces()
        }
        var source: String?
        if i < n && bytes[i] == UInt8(ascii: ":") {
            i += 1
            source = fallback.decode(word())
            skipSpaces()
        }
        let command = word()
        guard !command.isEmpty else { throw IRCParseError(reason: "no command") }
        guard command.allSatisfy({ ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) })
        else { throw IRCParseError(reason: "command is not a word or numeric") }
        var parameters: [String] = []
        while true {
            skipSpaces()
            if i >= n { break }
            if bytes[i] == UInt8(ascii: ":") {
                parameters.append(fallback.decode(bytes[(i + 1)...]))
                break
            }
            parameters.append(fallback.decode(word()))
        }
        self.tagStorage = tags
        self.source = source
        self.command = String(decoding: command, as: UTF8.self).uppercased()
        self.parameters = parameters
    }

    /// Tag value escapes (message-tags §Escaping values).
    static func unescapeTagValue(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = ""
        var escaping = false
        for c in s {
            if escaping {
                switch c {
                case ":": out.append(";")
                case "s": out.append(" ")
                case "r": out.append("\r")
                case "n": out.append("\n")
                default: out.append(c)
                }
                escaping = false
            } else if c == "\\" {
                escaping = true
            } else {
                out.append(c)
            }
        }
        return out
    }

    static func escapeTagValue(_ s: String) -> String {
        var out = ""
        for scalar in s.unicodeScalars {
            switch scalar {
            case ";": out += "\\:"
            case " ": out += "\\s"
            case "\\": out += "\\\\"
            case "\r": out += "\\r"
            case "\n": out += "\\n"
            case "\0": break
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }
}
