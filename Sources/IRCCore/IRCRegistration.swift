/// Client registration with IRCv3 capability negotiation (ircv3.net/specs/extensions/
/// capability-negotiation, CAP LS 302) as a state machine: messages in, actions out.
///
/// `CAP LS 302` goes first so the server holds registration until `CAP END`; a server without
/// CAP simply answers NICK/USER with 001, which also completes registration here.
public struct IRCRegistration: Sendable {
    public enum Action: Sendable, Hashable {
        case send(IRCMessage)
        /// 001 arrived: the connection may join. The nick is the one the server gave.
        case registered(nick: String)
        /// The enabled capability set changed (ACK, DEL, NEW+ACK).
        case capabilitiesChanged(Set<String>)
        /// RPL_ISUPPORT changed what the server supports.
        case isupportChanged(ISupport)
    }

    enum State: Sendable, Equatable {
        case listing
        case requesting
        case registering
        case registered
    }

    /// What the bridge uses when offered (issue 5's list).
    public static let wantedCapabilities: Set<String> = [
        "message-tags", "server-time", "echo-message", "batch", "labeled-response", "multi-prefix", "userhost-in-names",
        "extended-join", "account-tag", "account-notify", "away-notify", "chghost", "setname", "cap-notify",
        "draft/relaymsg", "draft/multiline", "draft/chathistory",
    ]

    private var state = State.listing
    private let wanted: Set<String>
    private var offered: [String: String] = [:]
    public private(set) var enabled: Set<String> = []
    public private(set) var isupport = ISupport()
    public private(set) var nick: String
    private let requestedNick: String
    private let username: String
    private let realname: String
    private let password: String?
    private var nickAttempts = 0
    /// CAP REQ lines not yet answered with ACK or NAK during registration.
    private var pendingRequests = 0

    public init(nick: String, username: String, realname: String, password: String? = nil, wanted: Set<String> = IRCRegistration.wantedCapabilities) {
        self.nick = nick
        self.requestedNick = nick
        self.username = username
        self.realname = realname
        self.password = password
        self.wanted = wanted
    }

    public var isRegistered: Bool { state == .registered }

    /// The capabilities the server offered, with their values (`sasl=PLAIN,EXTERNAL`).
    public var offeredCapabilities: [String: String] { offered }

    /// What to send when the connection opens.
    public mutating func start() -> [Action] {
        var lines: [IRCMessage] = [IRCMessage(command: "CAP", "LS", "302")]
        if let password { lines.append(IRCMessage(command: "PASS", password)) }
        lines.append(IRCMessage(command: "NICK", nick))
        lines.append(IRCMessage(command: "USER", username, "0", "*", realname))
        return lines.map(Action.send)
    }

    public mutating func receive(_ message: IRCMessage) -> [Action] {
        switch message.command {
        case "CAP":
            return capability(message)
        case "001":
            let wasRegistered = state == .registered
            state = .registered
            if let given = message.parameters.first { nick = given }
            return wasRegistered ? [] : [.registered(nick: nick)]
        case "005":
            guard message.parameters.count >= 2 else { return [] }
            isupport.apply(message.parameters.dropFirst().dropLast())
            return [.isupportChanged(isupport)]
        case "432", "433", "436", "437":
            guard state != .registered else { return [] }
            nickAttempts += 1
            nick = Self.alternative(requestedNick, attempt: nickAttempts, maximumLength: isupport.nickLength)
            return [.send(IRCMessage(command: "NICK", nick))]
        case "NICK":
            // Our own nick changed after registration (a forced change, or ours).
            return []
        case let numeric where (numeric == "410" || numeric == "421") && message.parameters.dropFirst().first?.uppercased() == "CAP":
            // CAP is unknown here: registration goes on without it.
            if state == .listing || state == .requesting { state = .registering }
            return []
        default:
            return []
        }
    }

    /// Keeps the own nick in step with NICK messages about us after registration.
    public mutating func ownNickChanged(to newNick: String) { nick = newNick }

    private mutating func capability(_ message: IRCMessage) -> [Action] {
        // CAP <target> <subcommand> [*] :<list>
        guard message.parameters.count >= 3 else { return [] }
        let subcommand = message.parameters[1].uppercased()
        let more = message.parameters.count >= 4 && message.parameters[2] == "*"
        let list = (message.parameters.last ?? "").split(separator: " ").map(String.init)
        switch subcommand {
        case "LS":
            for (name, value) in list.compactMap(Self.capability) { offered[name] = value }
            guard !more, state == .listing else { return [] }
            return request(Set(offered.keys).intersection(wanted), thenEnd: true)
        case "ACK":
            enabled.formUnion(list.filter { !$0.hasPrefix("-") })
            enabled.subtract(list.filter { $0.hasPrefix("-") }.map { String($0.dropFirst()) })
            return [.capabilitiesChanged(enabled)] + answered()
        case "NAK":
            return answered()
        case "NEW":
            let added = list.compactMap(Self.capability)
            for (name, value) in added { offered[name] = value }
            return request(Set(added.map(\.name)).intersection(wanted).subtracting(enabled), thenEnd: false)
        case "DEL":
            for item in list { offered.removeValue(forKey: item) }
            let before = enabled
            enabled.subtract(list)
            return enabled == before ? [] : [.capabilitiesChanged(enabled)]
        default:
            return []
        }
    }

    /// `name=value` or `name`; nil for an empty name (`=`, `=x`), which a server must not send
    /// and which must not crash us when one does.
    static func capability(_ item: String) -> (name: String, value: String)? {
        let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        guard let name = parts.first, !name.isEmpty else { return nil }
        return (String(name), parts.count > 1 ? String(parts[1]) : "")
    }

    private mutating func request(_ capabilities: Set<String>, thenEnd: Bool) -> [Action] {
        guard !capabilities.isEmpty else {
            if thenEnd {
                state = .registering
                return [.send(IRCMessage(command: "CAP", "END"))]
            }
            return []
        }
        if thenEnd { state = .requesting }
        // One REQ per ~400 bytes so every line fits 512 with any prefix.
        var lines: [IRCMessage] = []
        var current: [String] = []
        for capability in capabilities.sorted() {
            if (current + [capability]).joined(separator: " ").utf8.count > 400 {
                lines.append(IRCMessage(command: "CAP", "REQ", current.joined(separator: " ")))
                current = []
            }
            current.append(capability)
        }
        lines.append(IRCMessage(command: "CAP", "REQ", current.joined(separator: " ")))
        if thenEnd { pendingRequests = lines.count }
        return lines.map(Action.send)
    }

    /// One REQ answered; the last answer during registration ends negotiation.
    private mutating func answered() -> [Action] {
        guard state == .requesting else { return [] }
        pendingRequests -= 1
        guard pendingRequests <= 0 else { return [] }
        state = .registering
        return [.send(IRCMessage(command: "CAP", "END"))]
    }

    /// `nick_`, `nick__`, then a numeric suffix, within the server's NICKLEN.
    public static func alternative(_ nick: String, attempt: Int, maximumLength: Int = 9) -> String {
        if attempt <= 2 {
            return String(nick.prefix(max(1, maximumLength - attempt))) + String(repeating: "_", count: attempt)
        }
        let suffix = "_" + String(attempt)
        return String(nick.prefix(max(1, maximumLength - suffix.count))) + suffix
    }
}
