/// A configuration mistake, said so a person can fix it: which file, which line, which key.
public struct ConfigurationError: Error, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int?
    public var column: Int?
    public var key: String?
    public var message: String
    /// Further mistakes found in the same pass (other mapping files), so `check` lists them all.
    public var more: [ConfigurationError] = []

    /// This mistake and every further one.
    public var all: [ConfigurationError] {
        var first = self
        first.more = []
        return [first] + more.flatMap(\.all)
    }

    public init(file: String, line: Int? = nil, column: Int? = nil, key: String? = nil, message: String) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.message = message
    }

    public var description: String {
        all.map(\.single).joined(separator: "\n")
    }

    private var single: String {
        var place = file
        if let line {
            place += ":\(line)"
            if let column { place += ":\(column)" }
        }
        if let key { return "\(place): \(key): \(message)" }
        return "\(place): \(message)"
    }
}
