/// An XMPP address (RFC 7622): `local@domain/resource`.
///
/// For the walking skeleton comparison is ASCII case-insensitive on the local part and the
/// domain, exact on the resource; full stringprep (nodeprep, nameprep, resourceprep through
/// ICU) replaces `normalize` when the master issue lands.
public struct JID: Sendable, Hashable, CustomStringConvertible, Comparable {
    public let local: String?
    public let domain: String
    public let resource: String?

    public struct Invalid: Error, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { "invalid JID: \(reason)" }
    }

    public init(local: String?, domain: String, resource: String? = nil) {
        self.local = local.map(Self.lowercased)
        self.domain = Self.lowercased(domain)
        self.resource = resource
    }

    /// Parses `string` (RFC 7622 §3.1): the first `/` starts the resource; the first `@` before
    /// it ends the local part.
    public init(parsing string: some StringProtocol) throws(Invalid) {
        let s = String(string)
        var bare = Substring(s)
        var resource: String?
        if let slash = s.firstIndex(of: "/") {
            bare = s[..<slash]
            resource = String(s[s.index(after: slash)...])
            if resource!.isEmpty { throw Invalid(reason: "empty resource") }
            if resource!.utf8.count > 1023 { throw Invalid(reason: "resource longer than 1023 bytes") }
        }
        var local: String?
        var domain = bare
        if let at = bare.firstIndex(of: "@") {
            local = String(bare[..<at])
            domain = bare[bare.index(after: at)...]
            if local!.isEmpty { throw Invalid(reason: "empty local part") }
            if local!.utf8.count > 1023 { throw Invalid(reason: "local part longer than 1023 bytes") }
            if local!.contains(where: { "\"&'/:<>@ ".contains($0) }) {
                throw Invalid(reason: "local part contains a character nodeprep forbids")
            }
        }
        if domain.hasSuffix(".") { domain = domain.dropLast() }
        if domain.isEmpty { throw Invalid(reason: "empty domain") }
        if domain.utf8.count > 1023 { throw Invalid(reason: "domain longer than 1023 bytes") }
        if domain.contains(where: { $0 == "@" || $0 == " " || $0.isNewline }) {
            throw Invalid(reason: "domain contains a forbidden character")
        }
        for scalar in s.unicodeScalars where scalar.value < 0x20 || scalar.value == 0x7F {
            _ = scalar
            throw Invalid(reason: "control character")
        }
        self.init(local: local, domain: String(domain), resource: resource)
    }

    /// `nil` when the string is not a JID.
    public init?(_ string: some StringProtocol) {
        guard let jid = try? JID(parsing: string) else { return nil }
        self = jid
    }

    public var bare: JID { JID(local: local, domain: domain) }
    public var isBare: Bool { resource == nil }

    public func with(resource: String?) -> JID { JID(local: local, domain: domain, resource: resource) }

    public var description: String {
        var s = ""
        if let local { s += local + "@" }
        s += domain
        if let resource { s += "/" + resource }
        return s
    }

    public static func < (a: JID, b: JID) -> Bool { a.description < b.description }

    private static func lowercased(_ s: String) -> String {
        s.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) ? s.lowercased() : s
    }
}
