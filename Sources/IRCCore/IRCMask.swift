/// An IRC mask such as `*!~matrix@*.example.org` or `*[m]!*@*`: `*` stands for any run of
/// characters, `?` for one, and letters compare under the network's case mapping.
public struct IRCMask: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String

    public init(_ pattern: String) {
        self.pattern = pattern
    }

    public var description: String { pattern }

    /// Whether `subject` (`nick!user@host`) matches. Without userhost-in-names or a JOIN, only
    /// the nick is known: it is matched as `nick!*@*` taken literally, so only masks whose user
    /// and host parts are `*` can match it.
    public func matches(_ subject: String, caseMapping: IRCCaseMapping) -> Bool {
        let full = subject.contains("!") ? subject : subject + "!*@*"
        return Self.glob(Array(caseMapping.fold(pattern).unicodeScalars), Array(caseMapping.fold(full).unicodeScalars))
    }

    /// Glob matching with one backtrack point per `*`: linear in practice, never exponential.
    static func glob(_ pattern: [Unicode.Scalar], _ text: [Unicode.Scalar]) -> Bool {
        var p = 0, t = 0
        var star: Int?, mark = 0
        while t < text.count {
            if p < pattern.count && (pattern[p] == "?" || pattern[p] == text[t]) {
                p += 1
                t += 1
            } else if p < pattern.count && pattern[p] == "*" {
                star = p
                mark = t
                p += 1
            } else if let s = star {
                p = s + 1
                mark += 1
                t = mark
            } else {
                return false
            }
        }
        while p < pattern.count && pattern[p] == "*" { p += 1 }
        return p == pattern.count
    }
}
