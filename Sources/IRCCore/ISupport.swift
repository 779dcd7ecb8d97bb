/// What a server says about itself in RPL_ISUPPORT (005; modern.ircdocs.horse/#rplisupport-005).
///
/// Defaults are RFC 1459's, used until (or unless) the server says otherwise.
public struct ISupport: Sendable, Hashable {
    public var caseMapping = IRCCaseMapping.rfc1459
    public var nickLength = 9
    public var channelLength = 50
    public var channelTypes: Set<Character> = ["#", "&"]
    /// Channel membership modes and their NAMES prefixes, highest rank first (`PREFIX=(ov)@+`).
    public var prefixes: [(mode: Character, prefix: Character)] = [("o", "@"), ("v", "+")]
    /// The longest line the server takes, CR LF included (`LINELEN`, default 512).
    public var lineLength = 512
    /// `UTF8ONLY`: the server refuses anything but UTF-8.
    public var utf8Only = false
    /// The user mode that marks a bot (`BOT=B`).
    public var botMode: Character?
    /// Every token as sent, for what the bridge does not interpret yet.
    public var tokens: [String: String] = [:]

    public init() {}

    /// ISUPPORT as `tokens` recorded it (a live restart hands it over this way).
    public init(tokens: [String: String]) {
        apply(tokens.sorted { $0.key < $1.key }.map { $0.value.isEmpty ? $0.key : "\($0.key)=\($0.value)" })
    }

    /// Applies the parameters of one 005 line (without the client's nick and the trailing text).
    public mutating func apply(_ parameters: some Sequence<String>) {
        for token in parameters {
            if token.hasPrefix("-") {
                tokens.removeValue(forKey: String(token.dropFirst()))
                continue
            }
            let parts = token.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0]).uppercased()
            let value = parts.count > 1 ? String(parts[1]) : ""
            tokens[key] = value
            switch key {
            case "CASEMAPPING":
                if let mapping = IRCCaseMapping(rawValue: value.lowercased()) { caseMapping = mapping }
            case "NICKLEN":
                if let n = Int(value), n > 0 { nickLength = n }
            case "CHANNELLEN":
                if let n = Int(value), n > 0 { channelLength = n }
            case "CHANTYPES":
                if !value.isEmpty { channelTypes = Set(value) }
            case "PREFIX":
                // (modes)prefixes
                if value.hasPrefix("("), let close = value.firstIndex(of: ")") {
                    let modes = Array(value[value.index(after: value.startIndex)..<close])
                    let symbols = Array(value[value.index(after: close)...])
                    if modes.count == symbols.count { prefixes = Array(zip(modes, symbols)).map { ($0.0, $0.1) } }
                }
            case "LINELEN":
                if let n = Int(value), n >= 512 { lineLength = n }
            case "UTF8ONLY":
                utf8Only = true
            case "BOT":
                botMode = value.first
            default:
                break
            }
        }
    }

    /// The NAMES prefix characters, for stripping `@+nick`.
    public var prefixCharacters: Set<Character> { Set(prefixes.map(\.prefix)) }

    public func isChannel(_ name: String) -> Bool { name.first.map(channelTypes.contains) ?? false }

    public static func == (a: ISupport, b: ISupport) -> Bool { a.tokens == b.tokens }
    public func hash(into hasher: inout Hasher) { hasher.combine(tokens) }
}
