/// One IRC protocol message (RFC 1459 §2.3.1, modern form at modern.ircdocs.horse) with IRCv3
/// message tags (ircv3.net/specs/extensions/message-tags).
public struct IRCMessage: Sendable, Hashable, CustomStringConvertible {
    /// Tags in the order received; values are unescaped. A tag without a value has "".
    public var tags: [(key: String, value: String)] {
        get { tagStorage.map { ($0.key, $0.value) } }
        set { tagStorage = newValue.map { Tag(key: $0.key, value: $0.value) } }
    }
    /// The source (`nick!user@host` or a server name), without the leading `:`.
    public var source: String?
    /// The command or three-digit numeric, uppercased.
    public var command: String
    public var parameters: [String]

    struct Tag: Sendable, Hashable {
        var key: String
        var value: String
    }
    var tagStorage: [Tag]

    public init(tags: [(key: String, value: String)] = [], source: String? = nil, command: String, _ parameters: [String]) {
        self.tagStorage = tags.map { Tag(key: $0.key, value: $0.value) }
        self.source = source
        self.command = command.uppercased()
        self.parameters = parameters
    }

    public init(source: String? = nil, command: String, _ parameters: String...) {
        self.init(source: source, command: command, parameters)
    }

    public func tag(_ key: String) -> String? { tagStorage.first { $0.key == key }?.value }

    /// The nick part of the source.
    public var sourceNick: String? {
        guard let source else { return nil }
        if let bang = source.firstIndex(of: "!") { return String(source[..<bang]) }
        if let at = source.firstIndex(of: "@") { return String(source[..<at]) }
        return source
    }

    public var description: String { String(decoding: encoded(), as: UTF8.self) }

    public static func == (a: IRCMessage, b: IRCMessage) -> Bool {
        a.tagStorage == b.tagStorage && a.source == b.source && a.command == b.command && a.parameters == b.parameters
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(tagStorage)
        hasher.combine(source)
        hasher.combine(command)
        hasher.combine(parameters)
    }
}
