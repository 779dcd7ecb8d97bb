/// Why an IRC connection ended, sorted by what the owner should do about it.
///
/// Networks tell a client it is unwelcome in free text (`ERROR :Closing Link: ... (K-Lined)`,
/// `465 :You are banned from this server`, `(Throttled: Reconnecting too fast)`): a bridge that
/// reconnects into a ban every few seconds gets its whole address range banned. So the text is
/// read, and a ban stops retries to that server until the admin acts.
public struct IRCDisconnect: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The connection dropped or the server went away: reconnect with backoff.
        case lost
        /// The server asks us to slow down: wait much longer before the next attempt.
        case throttled
        /// Too many connections from this address (or class): not ours to retry quickly.
        case connectionLimit
        /// The server cannot do what we require right now (SASL missing while its services are
        /// unlinked, say): retry, slowly.
        case unavailable
        /// K-, G-, Z- or D-lined, or 465: stop retrying this server and say why.
        case banned
        /// SASL failed or the server cannot do it: retrying with the same credentials fails the
        /// same way.
        case authenticationFailed
        /// TLS failed (certificate not trusted, fingerprint mismatch, handshake): likewise.
        case tlsFailed
    }

    public var kind: Kind
    public var reason: String

    public init(_ kind: Kind, _ reason: String) {
        self.kind = kind
        self.reason = reason
    }

    public var description: String { reason }

    /// Whether retrying the same server with the same settings is pointless.
    public var isPermanent: Bool {
        switch kind {
        case .banned, .authenticationFailed, .tlsFailed: true
        case .lost, .throttled, .connectionLimit, .unavailable: false
        }
    }

    /// Sorts the text of an ERROR (or a 465) by what it means. Matching is on lowercase words
    /// the big IRCds use: charybdis/solanum, UnrealIRCd, InspIRCd, ngircd, hybrid.
    public static func classify(errorText text: String) -> IRCDisconnect {
        let lower = text.lowercased()
        func any(_ words: [String]) -> Bool { words.contains { lower.contains($0) } }
        // An operator's KILL quotes the oper's own words, which may mention a ban: a kill is a
        // loss (the backoff keeps a kill loop slow), not a ban.
        if any(["killed ("]) { return IRCDisconnect(.lost, text) }
        if any(["throttl", "reconnecting too fast", "connecting too fast", "too many times in too short"]) {
            return IRCDisconnect(.throttled, text)
        }
        if any(["k-lined", "g-lined", "z-lined", "d-lined", "k-line", "g-line", "z-line", "d-line", "kline", "gline", "zline", "akill", "banned"]) {
            return IRCDisconnect(.banned, text)
        }
        if any(["too many connections", "no more connections", "too many host connections", "too many user connections", "too many clones", "max connections"]) {
            return IRCDisconnect(.connectionLimit, text)
        }
        return IRCDisconnect(.lost, text)
    }
}
