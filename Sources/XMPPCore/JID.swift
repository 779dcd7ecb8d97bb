import TextPrep

/// An XMPP address (RFC 7622, with RFC 3920's stringprep profiles as deployed servers use):
/// `local@domain/resource`, each part prepared (nodeprep, nameprep, resourceprep), so equality
/// and hashing are on the prepared form.
public struct JID: Sendable, Hashable, CustomStringConvertible, Comparable {
    public let local: String?
    public let domain: String
    public let resource: String?

    public struct Invalid: Error, Sendable, CustomStringConvertible {
        public let reason: String
        public var description: String { "invalid JID: \(reason)" }
    }

    /// Builds a JID from parts we trust; a part stringprep refuses is kept lowercased (local,
    /// domain) or as is (resource). Untrusted input goes through `init(parsing:)`.
    public init(local: String?, domain: String, resource: String? = nil) {
        self.local = local.map { StringPrep.nodeprep($0) ?? Self.lowercased($0) }
        self.domain = StringPrep.nameprep(domain) ?? Self.lowercased(domain)
        self.resource = resource.map { StringPrep.resourceprep($0) ?? $0 }
    }

    private init(prepared local: String?, domain: String, resource: String?) {
        self.local = local
        self.domain = domain
        self.resource = resource
    }

    /// Parses `string` (RFC 7622 §3.1): the first `/` starts the resource; the first `@` before
    /// it ends the local part.
    public init(parsing string: some StringProtocol) throws(Invalid) {
        let s = String(string)
        if let jid = try Self.parsePrintableASCII(s) {
            self = jid
        } else {
            try self.init(parsingFully: s)
        }
    }

    /// Every rule, for any string; `init(parsing:)` takes a shortcut for printable ASCII.
    init(parsingFully s: String) throws(Invalid) {
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
        guard let preparedDomain = StringPrep.nameprep(String(domain)), !preparedDomain.isEmpty else {
            throw Invalid(reason: "domain refused by nameprep")
        }
        var preparedLocal: String?
        if let local {
            guard let prepared = StringPrep.nodeprep(local), !prepared.isEmpty else { throw Invalid(reason: "local part refused by nodeprep") }
            preparedLocal = prepared
        }
        var preparedResource: String?
        if let resource {
            guard let prepared = StringPrep.resourceprep(resource), !prepared.isEmpty else { throw Invalid(reason: "resource refused by resourceprep") }
            preparedResource = prepared
        }
        self.init(prepared: preparedLocal, domain: preparedDomain, resource: preparedResource)
    }

    /// The same rules as `init(parsing:)` for a JID of printable ASCII, the common case, split
    /// on its bytes (no grapheme breaking); stringprep takes its ASCII path (no ICU). `nil` for
    /// anything else, which takes the full path.
    private static func parsePrintableASCII(_ s: String) throws(Invalid) -> JID? {
        let bytes = Array(s.utf8)
        var slash: Int?
        var at: Int?
        for (i, b) in bytes.enumerated() {
            guard b >= 0x20 && b < 0x7F else { return nil }
            if b == UInt8(ascii: "/") {
                if slash == nil { slash = i }
            } else if b == UInt8(ascii: "@"), slash == nil, at == nil {
                at = i
            }
        }
        var resource: String?
        if let slash {
            let part = bytes[(slash + 1)...]
            if part.isEmpty { throw Invalid(reason: "empty resource") }
            if part.count > 1023 { throw Invalid(reason: "resource longer than 1023 bytes") }
            resource = String(decoding: part, as: UTF8.self)
        }
        var local: String?
        var domainStart = 0
        if let at {
            let part = bytes[..<at]
            if part.isEmpty { throw Invalid(reason: "empty local part") }
            if part.count > 1023 { throw Invalid(reason: "local part longer than 1023 bytes") }
            if part.contains(where: { StringPrep.nodeprepProhibitedASCII.contains($0) }) {
                throw Invalid(reason: "local part contains a character nodeprep forbids")
            }
            // Printable ASCII without a prohibited character: nodeprep's own ASCII path.
            guard let prepared = StringPrep.nodeprep(String(decoding: part, as: UTF8.self)) else {
                throw Invalid(reason: "local part refused by nodeprep")
            }
            local = prepared
            domainStart = at + 1
        }
        var domainEnd = slash ?? bytes.count
        if domainEnd > domainStart, bytes[domainEnd - 1] == UInt8(ascii: ".") { domainEnd -= 1 }
        let domain = bytes[domainStart..<domainEnd]
        if domain.isEmpty { throw Invalid(reason: "empty domain") }
        if domain.count > 1023 { throw Invalid(reason: "domain longer than 1023 bytes") }
        if domain.contains(UInt8(ascii: "@")) || domain.contains(UInt8(ascii: " ")) {
            throw Invalid(reason: "domain contains a forbidden character")
        }
        guard let preparedDomain = StringPrep.nameprep(String(decoding: domain, as: UTF8.self)) else {
            throw Invalid(reason: "domain refused by nameprep")
        }
        return JID(prepared: local, domain: preparedDomain, resource: resource)
    }

    /// `nil` when the string is not a JID.
    public init?(_ string: some StringProtocol) {
        guard let jid = try? JID(parsing: string) else { return nil }
        self = jid
    }

    public var bare: JID { JID(prepared: local, domain: domain, resource: nil) }
    public var isBare: Bool { resource == nil }

    public func with(resource: String?) -> JID { JID(prepared: local, domain: domain, resource: resource.map { StringPrep.resourceprep($0) ?? $0 }) }

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
