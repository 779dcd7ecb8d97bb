extension IRCMessage {
    /// The wire form without CR LF, as UTF-8.
    ///
    /// CR, LF and NUL are removed at the byte level from every part, and spaces from every
    /// parameter but the last, so no text we are handed can end a line or start a command.
    /// The last parameter gets a `:` when it needs one (empty, has a space, starts with `:`).
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64 + parameters.reduce(0) { $0 + $1.utf8.count })
        if !tagStorage.isEmpty {
            out.append(UInt8(ascii: "@"))
            for (index, tag) in tagStorage.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ";")) }
                Self.appendSafe(tag.key, to: &out, allowSpace: false)
                if !tag.value.isEmpty {
                    out.append(UInt8(ascii: "="))
                    Self.appendSafe(Self.escapeTagValue(tag.value), to: &out, allowSpace: false)
                }
            }
            out.append(0x20)
        }
        if let source {
            out.append(UInt8(ascii: ":"))
            Self.appendSafe(source, to: &out, allowSpace: false)
            out.append(0x20)
        }
        Self.appendSafe(command, to: &out, allowSpace: false)
        for (index, parameter) in parameters.enumerated() {
            out.append(0x20)
            let isLast = index == parameters.count - 1
            if isLast && (parameter.isEmpty || parameter.utf8.first == UInt8(ascii: ":") || parameter.utf8.contains(0x20)) {
                out.append(UInt8(ascii: ":"))
                Self.appendSafe(parameter, to: &out, allowSpace: true)
            } else {
                // A middle parameter can hold neither a space nor a leading colon.
                var bytes = Array(parameter.utf8)
                while bytes.first == UInt8(ascii: ":") { bytes.removeFirst() }
                Self.appendSafe(String(decoding: bytes, as: UTF8.self), to: &out, allowSpace: false)
            }
        }
        return out
    }

    /// The wire form with CR LF.
    public func line() -> [UInt8] { encoded() + [0x0D, 0x0A] }

    @inline(__always)
    static func appendSafe(_ s: String, to out: inout [UInt8], allowSpace: Bool) {
        for b in s.utf8 where b != 0x0D && b != 0x0A && b != 0x00 && (allowSpace || b != 0x20) {
            out.append(b)
        }
    }
}
