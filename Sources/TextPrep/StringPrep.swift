import CICUShim

/// The stringprep profiles XMPP addresses use (RFC 3920 Appendix A and B, RFC 3491), through
/// ICU. `nil` means the string is prohibited by the profile.
///
/// Resourceprep allows unassigned code points, so a nick with a newer emoji coming from
/// another server still works; nodeprep and nameprep refuse them, as RFC 3454 §7 asks of
/// stored strings. Pure-ASCII input skips ICU when the answer is plain.
public enum StringPrep {
    public static func nodeprep(_ s: String) -> String? {
        if let ascii = asciiFastPath(s, lowercase: true, prohibited: nodeprepProhibitedASCII) { return ascii }
        return prepare(s, profile: SHADOWBRIDGE_NODEPREP, allowUnassigned: false)
    }

    public static func resourceprep(_ s: String) -> String? {
        if let ascii = asciiFastPath(s, lowercase: false, prohibited: []) { return ascii }
        return prepare(s, profile: SHADOWBRIDGE_RESOURCEPREP, allowUnassigned: true)
    }

    public static func nameprep(_ s: String) -> String? {
        if let ascii = asciiFastPath(s, lowercase: true, prohibited: []) { return ascii }
        return prepare(s, profile: SHADOWBRIDGE_NAMEPREP, allowUnassigned: false)
    }

    /// What nodeprep refuses in a local part (RFC 3920 appendix A.5), in ASCII.
    public static let nodeprepProhibitedASCII = Array(#""&'/:<>@ "#.utf8)

    /// Printable ASCII is its own preparation (lowercased for node and name): no ICU call, and
    /// no new string when it is already lowercase. Anything else, or a prohibited character,
    /// goes to ICU, which decides. (Every JID in every stanza passes here.)
    private static func asciiFastPath(_ s: String, lowercase: Bool, prohibited: [UInt8]) -> String? {
        var upper = false
        for b in s.utf8 {
            guard b >= 0x21 && b < 0x7F || (b == 0x20 && !lowercase && prohibited.isEmpty) else { return nil }
            if prohibited.contains(b) { return nil }
            if b >= 0x41 && b <= 0x5A { upper = true }
        }
        guard lowercase && upper else { return s }
        return String(decoding: s.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    private static func prepare(_ s: String, profile: shadowbridge_stringprep_profile, allowUnassigned: Bool) -> String? {
        var input = Array(s.utf8)
        guard input.count <= 3072 else { return nil }
        var output = [CChar](repeating: 0, count: 4 * 2048)
        let length = input.withUnsafeMutableBufferPointer { inputBuffer in
            inputBuffer.withMemoryRebound(to: CChar.self) { source in
                shadowbridge_stringprep(
                    Int32(profile.rawValue), allowUnassigned ? 1 : 0, source.baseAddress, Int32(source.count), &output, Int32(output.count))
            }
        }
        guard length >= 0 else { return nil }
        return String(decoding: output[0..<Int(length)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
