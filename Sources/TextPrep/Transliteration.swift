import CICUShim

/// Text for places that take ASCII only, such as most IRC networks' nicks (PROTOCOL.md §5).
public enum Transliteration {
    /// `s` in ASCII letters through ICU's "Any-Latin; Latin-ASCII": `Jürgen` -> `Jurgen`,
    /// `Дмитрий` -> `Dmitrij`, `张伟` -> `zhang wei`. What has no Latin form (emoji, symbols)
    /// is left as it was, for the caller to replace. ASCII input is returned as is.
    public static func ascii(_ s: String) -> String {
        guard !s.utf8.allSatisfy({ $0 < 0x80 }) else { return s }
        let input = Array(s.utf8)
        var capacity = max(64, input.count * 4)
        while capacity <= 1 << 16 {
            var output = [CChar](repeating: 0, count: capacity)
            let length = input.withUnsafeBufferPointer { source in
                source.withMemoryRebound(to: CChar.self) { shadowbridge_transliterate_ascii($0.baseAddress, Int32($0.count), &output, Int32(capacity)) }
            }
            if length >= 0 {
                return String(decoding: output.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
            if length != -2 { return s }
            capacity *= 4
        }
        return s
    }
}
