/// A token bucket for outgoing lines (the classic client flood protection): `burst` lines at
/// once, then one line every `1 / linesPerSecond` seconds. Time is passed in, so it is tested
/// without clocks. Defaults stay under ngircd's and InspIRCd's default penalties.
public struct IRCFloodControl: Sendable {
    public let burst: Double
    public let linesPerSecond: Double
    private var tokens: Double
    private var last: Double?

    public init(burst: Int = 5, linesPerSecond: Double = 2) {
        precondition(burst >= 1 && linesPerSecond > 0)
        self.burst = Double(burst)
        self.linesPerSecond = linesPerSecond
        self.tokens = Double(burst)
    }

    /// The bucket as it is, to go on with in another process (a live restart): the tokens
    /// left, and when they were last counted (on the same monotonic clock, which the machine
    /// keeps across processes).
    public var level: (tokens: Double, at: Double?) { (tokens, last) }

    /// Goes on from a bucket another process left at `level`.
    public init(burst: Int, linesPerSecond: Double, level: (tokens: Double, at: Double?)) {
        self.init(burst: burst, linesPerSecond: linesPerSecond)
        tokens = min(self.burst, max(0, level.tokens))
        last = level.at
    }

    /// Takes a token at `now` (seconds, any monotonic origin) if one is there.
    public mutating func take(now: Double) -> Bool {
        refill(now: now)
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }

    /// Seconds from `now` until the next token.
    public mutating func delay(now: Double) -> Double {
        refill(now: now)
        return tokens >= 1 ? 0 : (1 - tokens) / linesPerSecond
    }

    private mutating func refill(now: Double) {
        if let last { tokens = min(burst, tokens + max(0, now - last) * linesPerSecond) }
        last = now
    }
}

/// How urgent an outgoing line is: higher goes first. PING and PONG must never wait behind a
/// paste (a late PONG gets the connection dropped). Everything else shares one FIFO: a PART,
/// NICK or TOPIC must not overtake the lines said before it.
public enum IRCLinePriority: Int, Sendable, Comparable, CaseIterable {
    case normal = 0
    case urgent = 1

    public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    public static func of(_ message: IRCMessage) -> IRCLinePriority {
        switch message.command {
        case "PONG", "PING": .urgent
        default: .normal
        }
    }
}
