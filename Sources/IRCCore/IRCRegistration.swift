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
        /// SASL logged the connection in to this account (900).
        case authenticated(account: String)
        /// Registration cannot succeed as configured: close the connection and join nothing.
        /// `permanent` when the credentials were refused (904, 902); otherwise SASL is missing
        /// for now (services unlinked after a restart, a NAK) and a later attempt may work.
        /// The reason never contains the password.
        case failed(reason: String, permanent: Bool)
    }

    enum State: Sendable, Equatable {
        case listing
        case requesting
        /// SASL in progress (ircv3.net/specs/extensions/sasl-3.1): CAP END waits for 903.
        case authenticating
        case registering
        case registered
        case failed
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
    private let sasl: IRCSASL?
    /// 903 arrived.
    private var authenticated = false
    /// Set the bot user mode once ISUPPORT names it (the bridge's own connection).
    private let markAsBot: Bool
    private var botModeSent = false
    /// Set the server's deaf user mode once RPL_MYINFO names it (puppets: the bridge's own
    /// connection reads the channel, so 500 puppets need not each receive every line).
    private let deaf: Bool
    private var deafModeSent = false
    /// CAP REQ lines not yet answered with ACK or NAK during registration.
    private var pendingRequests = 0
    private let webirc: IRCWebIRC?

    public init(
        nick: String, username: String, realname: String, password: String? = nil, sasl: IRCSASL? = nil, markAsBot: Bool = false,
        deaf: Bool = false, webirc: IRCWebIRC? = nil, wanted: Set<String> = IRCRegistration.wantedCapabilities
    ) {
        self.deaf = deaf
        self.webirc = webirc
        self.nick = nick
        self.requestedNick = nick
        self.username = username
        self.realname = realname
        self.password = password
        self.sasl = sasl
        self.markAsBot = markAsBot
        self.wanted = sasl == nil ? wanted : wanted.union(["sasl"])
    }

    public var isRegistered: Bool { state == .registered }

    /// Takes up a connection another process registered (a live restart): registered as
    /// `nick`, with what the server had said about itself and the capabilities it enabled.
    /// Nothing is sent: the server already has it all, user modes included.
    public mutating func resume(nick: String, isupport: ISupport, enabled: Set<String>, offered: [String: String]) {
        state = .registered
        self.nick = nick
        self.isupport = isupport
        self.enabled = enabled
        self.offered = offered
        botModeSent = true
        deafModeSent = true
        authenticated = true
    }

    /// The capabilities the server offered, with their values (`sasl=PLAIN,EXTERNAL`).
    public var offeredCapabilities: [String: String] { offered }

    /// What to send when the connection opens. `localAddress` is the address the connection
    /// goes out from, which WEBIRC reports when no other is configured.
    public mutating func start(localAddress: String? = nil) -> [Action] {
        var lines: [IRCMessage] = []
        // WEBIRC must be the very first line (ircv3.net/specs/extensions/webirc).
        if let webirc, let line = webirc.message(localAddress: localAddress) { lines.append(line) }
        lines.append(IRCMessage(command: "CAP", "LS", "302"))
        if let password { lines.append(IRCMessage(command: "PASS", password)) }
        lines.append(IRCMessage(command: "NICK", nick))
        lines.append(IRCMessage(command: "USER", username, "0", "*", realname))
        return lines.map(Action.send)
    }

    public mutating func receive(_ message: IRCMessage) -> [Action] {
        guard state != .failed else { return [] }
        switch message.command {
        case "CAP":
            return capability(message)
        case "AUTHENTICATE", "900", "902", "903", "904", "905", "906", "907", "908":
            return authentication(message)
        case "001":
            if sasl != nil && !authenticated && state != .registered {
                // The server registered us without the authentication we require.
                return fail("the server completed registration before SASL did")
            }
            let wasRegistered = state == .registered
            state = .registered
            if let given = message.parameters.first { nick = given }
            return wasRegistered ? [] : [.registered(nick: nick)] + botMode()
        case "004":
            return deafMode(myInfo: message)
        case "005":
            guard message.parameters.count >= 2 else { return [] }
            isupport.apply(message.parameters.dropFirst().dropLast())
            return [.isupportChanged(isupport)] + botMode()
        case "432", "433", "436", "437":
            guard state != .registered else { return [] }
            nickAttempts += 1
            nick = Self.alternative(requestedNick, attempt: nickAttempts, maximumLength: isupport.nickLength)
            return [.send(IRCMessage(command: "NICK", nick))]
        case "NICK":
            // Our own nick changed after registration (a forced change, or ours).
            return []
        case let numeric where (numeric == "410" || numeric == "421") && message.parameters.dropFirst().first?.uppercased() == "CAP":
            // CAP is unknown here: registration goes on without it, unless we need SASL.
            if sasl != nil { return fail("the server does not support CAP, so it cannot do SASL") }
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
            if let sasl {
                guard let mechanisms = offered["sasl"] else {
                    return fail("the server offers no SASL (its CAP LS has no sasl); not joining unauthenticated")
                }
                // `sasl=PLAIN,EXTERNAL` (302); a bare `sasl` names no mechanism and we try.
                if !mechanisms.isEmpty && !mechanisms.uppercased().split(separator: ",").contains(Substring(sasl.mechanism)) {
                    return fail("the server offers SASL \(mechanisms), not \(sasl.mechanism)")
                }
            }
            return request(Set(offered.keys).intersection(wanted), thenEnd: true)
        case "ACK":
            enabled.formUnion(list.filter { !$0.hasPrefix("-") })
            enabled.subtract(list.filter { $0.hasPrefix("-") }.map { String($0.dropFirst()) })
            var actions: [Action] = [.capabilitiesChanged(enabled)]
            if let sasl, state == .requesting, list.contains("sasl") {
                state = .authenticating
                actions.append(.send(IRCMessage(command: "AUTHENTICATE", sasl.mechanism)))
            }
            return actions + answered()
        case "NAK":
            if sasl != nil && state == .requesting && list.contains("sasl") {
                return fail("the server refused the sasl capability (CAP NAK)")
            }
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

    /// One REQ answered; the last answer during registration ends negotiation, unless SASL
    /// still runs (then 903 ends it).
    private mutating func answered() -> [Action] {
        guard state == .requesting || state == .authenticating else { return [] }
        pendingRequests -= 1
        guard pendingRequests <= 0, state == .requesting else { return [] }
        if sasl != nil && !authenticated {
            // Every REQ answered and sasl never ACKed (a server that ACKs part of a line).
            return fail("the server did not enable the sasl capability")
        }
        state = .registering
        return [.send(IRCMessage(command: "CAP", "END"))]
    }

    /// SASL 3.1: `AUTHENTICATE +` asks for the credentials; 903 is success; 902, 904-907 end it.
    private mutating func authentication(_ message: IRCMessage) -> [Action] {
        guard let sasl, state == .authenticating else { return [] }
        let text = message.parameters.last ?? ""
        switch message.command {
        case "AUTHENTICATE":
            guard message.parameters.first == "+" else { return [] }
            return sasl.responseLines().map { .send(IRCMessage(command: "AUTHENTICATE", $0)) }
        case "900":
            // 900 <nick> <nick!user@host> <account> :You are now logged in as <account>
            let account = message.parameters.count >= 3 ? message.parameters[2] : "?"
            return [.authenticated(account: account)]
        case "903":
            authenticated = true
            guard pendingRequests <= 0 else {
                state = .requesting
                return []
            }
            state = .registering
            return [.send(IRCMessage(command: "CAP", "END"))]
        case "908":
            // RPL_SASLMECHS: the mechanisms it has; 904 follows.
            return []
        default:
            // 904 (wrong credentials) and 902 (the account is locked) will not change by
            // trying again; 905-907 are about this attempt.
            return fail("SASL \(sasl.mechanism) failed: \(message.command) \(text)", permanent: ["902", "904"].contains(message.command))
        }
    }

    private mutating func fail(_ reason: String, permanent: Bool = false) -> [Action] {
        state = .failed
        return [.failed(reason: reason, permanent: permanent)]
    }

    /// `MODE nick +B` once, when the server names a bot mode and this is the bridge's own
    /// connection.
    private mutating func botMode() -> [Action] {
        guard markAsBot, !botModeSent, state == .registered, let mode = isupport.botMode else { return [] }
        botModeSent = true
        return [.send(IRCMessage(command: "MODE", nick, "+\(mode)"))]
    }

    /// The deaf user mode of the server RPL_MYINFO (`<nick> <server> <version> <user modes>
    /// ...`) describes: there is no ISUPPORT token for it, and the letter differs: `d` on
    /// InspIRCd and UnrealIRCd, `D` on the ratbox family (charybdis, solanum, hybrid). On
    /// other servers (ngircd has none) nothing is set.
    public static func deafMode(version: String, userModes: String) -> Character? {
        let version = version.lowercased()
        let letter: Character? =
            if ["inspircd", "unreal"].contains(where: version.contains) { "d" }
            else if ["solanum", "charybdis", "ratbox", "hybrid"].contains(where: version.contains) { "D" }
            else { nil }
        return letter.flatMap { userModes.contains($0) ? $0 : nil }
    }

    private mutating func deafMode(myInfo message: IRCMessage) -> [Action] {
        guard deaf, !deafModeSent, state == .registered, message.parameters.count >= 4,
            let mode = Self.deafMode(version: message.parameters[2], userModes: message.parameters[3])
        else { return [] }
        deafModeSent = true
        return [.send(IRCMessage(command: "MODE", nick, "+\(mode)"))]
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

/// How a connection authenticates with SASL before registering. Credentials stay in memory,
/// never in a description or a log line.
public enum IRCSASL: Sendable, Hashable, CustomStringConvertible {
    /// RFC 4616: the account name and its password.
    case plain(account: String, password: String)
    /// The TLS client certificate speaks for the account (RFC 4422 appendix A).
    case external

    public var mechanism: String {
        switch self {
        case .plain: return "PLAIN"
        case .external: return "EXTERNAL"
        }
    }

    public var description: String { "SASL \(mechanism)" }

    /// The AUTHENTICATE payloads: base64 in chunks of 400 bytes, with `+` after a last chunk of
    /// exactly 400 (and for an empty response).
    func responseLines() -> [String] {
        let response: [UInt8]
        switch self {
        case .plain(let account, let password):
            response = Array(account.utf8) + [0] + Array(account.utf8) + [0] + Array(password.utf8)
        case .external:
            response = []
        }
        let encoded = Base64.encode(response)
        var lines: [String] = []
        var rest = Substring(encoded)
        while !rest.isEmpty {
            lines.append(String(rest.prefix(400)))
            rest = rest.dropFirst(400)
        }
        if lines.isEmpty || lines.last!.utf8.count == 400 { lines.append("+") }
        return lines
    }
}

/// RFC 4648 base64, for SASL payloads (IRCCore has no Foundation).
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((bytes.count + 2) / 3 * 4)
        var index = 0
        while index < bytes.count {
            let b0 = bytes[index]
            let b1 = index + 1 < bytes.count ? bytes[index + 1] : 0
            let b2 = index + 2 < bytes.count ? bytes[index + 2] : 0
            out.append(alphabet[Int(b0 >> 2)])
            out.append(alphabet[Int((b0 & 0x03) << 4 | b1 >> 4)])
            out.append(index + 1 < bytes.count ? alphabet[Int((b1 & 0x0F) << 2 | b2 >> 6)] : UInt8(ascii: "="))
            out.append(index + 2 < bytes.count ? alphabet[Int(b2 & 0x3F)] : UInt8(ascii: "="))
            index += 3
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// WEBIRC (ircv3.net/specs/extensions/webirc): a gateway the network trusts by password says
/// which host a user connects for, so the network shows and bans that host rather than the
/// gateway's address.
public struct IRCWebIRC: Sendable, Hashable {
    public var password: String
    /// The gateway's name as the network's WEBIRC block expects it.
    public var gateway: String
    /// The host name shown for this connection's user.
    public var hostname: String
    /// The IP address shown; nil means the address the connection goes out from.
    public var address: String?

    public init(password: String, gateway: String, hostname: String, address: String? = nil) {
        self.password = password
        self.gateway = gateway
        self.hostname = hostname
        self.address = address
    }

    /// The line, or nil when no address is known or a field cannot be one IRC parameter.
    public func message(localAddress: String?) -> IRCMessage? {
        guard var address = address ?? localAddress.map(Self.unmapped) else { return nil }
        // `::1` would read as a trailing parameter; the spec's answer is a leading 0.
        if address.hasPrefix(":") { address = "0" + address }
        let fields = [password, gateway, hostname, address]
        // By scalar: "\r\n" is one Character, equal to neither "\r" nor "\n".
        guard fields.allSatisfy({ !$0.isEmpty && !$0.hasPrefix(":") && !$0.unicodeScalars.contains(where: { " \r\n\0".unicodeScalars.contains($0) }) }) else {
            return nil
        }
        return IRCMessage(command: "WEBIRC", password, gateway, hostname, address)
    }

    /// `::ffff:192.0.2.1` (an IPv4 connection on a dual-stack socket) as `192.0.2.1`.
    public static func unmapped(_ address: String) -> String {
        address.lowercased().hasPrefix("::ffff:") && address.contains(".") ? String(address.dropFirst(7)) : address
    }
}
