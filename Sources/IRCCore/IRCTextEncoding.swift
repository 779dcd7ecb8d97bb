/// How IRC bytes become text: UTF-8 when valid, else the network's legacy charset.
///
/// The walking skeleton knows cp1252 (mIRC's default on Western Windows) and Latin-1; other
/// charsets come through ICU with the IRC connections issue.
public enum IRCTextEncoding: String, Sendable, Hashable {
    case cp1252
    case latin1 = "latin-1"

    public func decode(_ bytes: some Collection<UInt8>) -> String {
        if let utf8 = String(validating: bytes, as: UTF8.self) { return utf8 }
        var scalars = String.UnicodeScalarView()
        for b in bytes {
            switch self {
            case .latin1:
                scalars.append(Unicode.Scalar(b))
            case .cp1252:
                if b >= 0x80 && b <= 0x9F, let s = Unicode.Scalar(Self.cp1252High[Int(b - 0x80)]) {
                    scalars.append(s)
                } else {
                    scalars.append(Unicode.Scalar(b))
                }
            }
        }
        return String(scalars)
    }

    /// Windows-1252 0x80-0x9F (unassigned positions keep the C1 code point, as ICU does).
    static let cp1252High: [UInt32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152,
        0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122,
        0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ]
}
