/// IRC case folding (ISUPPORT CASEMAPPING; RFC 1459 §2.2): `rfc1459` also folds `[]\~` to
/// `{}|^`. The skeleton uses rfc1459, the default when a server says nothing; the IRC
/// connections issue reads the server's choice.
public enum IRCCaseMapping: String, Sendable, Hashable {
    case ascii
    case rfc1459
    case strictRFC1459 = "strict-rfc1459"

    public func fold(_ s: String) -> String {
        var bytes = Array(s.utf8)
        for i in bytes.indices {
            let b = bytes[i]
            if b >= 0x41 && b <= 0x5A {
                bytes[i] = b + 0x20
            } else if self != .ascii && (b == 0x5B || b == 0x5C || b == 0x5D) {
                bytes[i] = b + 0x20
            } else if self == .rfc1459 && b == 0x7E {
                bytes[i] = 0x5E
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Splits text into pieces that each fit `maximumBytes` of UTF-8, preferring to break after a
/// space and never inside a character (grapheme cluster).
public enum IRCLineSplitter {
    public static func split(_ text: String, maximumBytes: Int) -> [String] {
        pieces(text, maximumBytes: maximumBytes).map(\.text)
    }

    /// The same pieces, each marked when it continues the previous piece's line (it was cut for
    /// length, not at a line break): what `draft/multiline-concat` says.
    public static func pieces(_ text: String, maximumBytes: Int) -> [(text: String, continues: Bool)] {
        precondition(maximumBytes >= 4)
        var pieces: [(text: String, continues: Bool)] = []
        for line in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            var rest = Substring(line)
            var continues = false
            while rest.utf8.count > maximumBytes {
                var cut = rest.startIndex
                var lastSpace: String.Index?
                var bytes = 0
                for index in rest.indices {
                    let size = rest[index].utf8.count
                    if bytes + size > maximumBytes { break }
                    bytes += size
                    cut = rest.index(after: index)
                    if rest[index] == " " { lastSpace = cut }
                }
                if cut == rest.startIndex {
                    // One grapheme longer than the limit (hundreds of combining marks): cut it
                    // between scalars, so no line ever exceeds the limit.
                    var scalars = rest.unicodeScalars.startIndex
                    var size = 0
                    while scalars < rest.unicodeScalars.endIndex, size + rest.unicodeScalars[scalars].utf8.count <= maximumBytes {
                        size += rest.unicodeScalars[scalars].utf8.count
                        scalars = rest.unicodeScalars.index(after: scalars)
                    }
                    cut = scalars
                }
                let end = lastSpace.map { $0 > rest.startIndex ? $0 : cut } ?? cut
                pieces.append((String(rest[..<end]), continues))
                continues = true
                rest = rest[end...]
            }
            if !rest.isEmpty { pieces.append((String(rest), continues)) }
        }
        return pieces
    }
}
