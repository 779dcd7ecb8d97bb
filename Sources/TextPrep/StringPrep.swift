import CICUShim

/// The stringprep profiles XMPP addresses use (RFC 3920 Appendix A and B, RFC 3491), through
/// ICU. `nil` means the string is prohibited by the profile.
///
/// Resourceprep allows unassigned code points, so a nick with a newer emoji coming from
/// another server still works; nodeprep and nameprep refuse them, as RFC 3454 §7 asks of
/// stored strings. Pure-ASCII input skips ICU when the answer is plain.
public enum StringPrep {
    public static func nodeprep(_ s: String) -> String? {
        if let ascii = asciiFastPath(s, lowercase: true, prohibited: "\"&'/:<>@ ") { return ascii }
        return prepare(s, profile: SHADOWBRIDGE_NODEPREP, allowUnassigned: false)
    }

    public static func resourceprep(_ s: String) -> String? {
        if let ascii = asciiFastPath(s, lowercase: false, prohibited: "") { return ascii }
        return prepare(s, profile: SHADOWBRIDGE_RESOURCEPREP, allowUnassigned: true)
    }

    public static func nameprep(_ s: String) -> String? {
        if let ascii = asciiFastPath(s, lowercase: true, prohibited: "") { return ascii }
        return prepare(s, profile: SHADOWBRIDGE_NAMEPREP, allowUnassigned: false)
    }

    /// Printable ASCII is its own preparation (lowercased for node and name): no ICU call.
    /// Anything else, or a prohibited character, goes to ICU, which decides.
    private static func asciiFastPath(_ s: String, lowercase: Bool, prohibited: String) -> String? {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(s.utf8.count)
        let banned = Set(prohibited.utf8)
        for b in s.utf8 {
            guard b >= 0x21 && b < 0x7F || (b == 0x20 && !lowercase && banned.isEmpty) else { return nil }
            if banned.contains(b) { return nil }
            bytes.append(lowercase && b >= 0x41 && b <= 0x5A ? b + 0x20 : b)
        }
        return String(decoding: bytes, as: UTF8.self)
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
