import Foundation
import Lab
import Testing

/// One event a scenario expects exactly once.
struct Expected: CustomStringConvertible {
    var description: String
    var match: @Sendable (AgentEvent) -> Bool

    init(_ description: String, _ match: @escaping @Sendable (AgentEvent) -> Bool) {
        self.description = description
        self.match = match
    }
}

extension LabAgent {
    /// What to expect of a groupchat line (`id`, `text`) an XMPP user said while the master was
    /// restarting: it reached the master in time and crossed (`crossed`), or the XMPP server
    /// refused it to its sender (that error, and no copy anywhere). Waits for either, as seen
    /// by the sender or by `ircWatcher`.
    func gapLine(user: String, id: String, text: String, ircWatcher: String, since mark: Int, crossed: [Expected]) throws -> [Expected] {
        let refused = Expected("\(user) told \(text.debugDescription) was not delivered") { $0.user == user && $0.kind == "message" && $0.type == "error" && $0.id == id }
        let outcome = try waitFor("\(text.debugDescription) crosses or is refused to \(user)", since: mark, timeout: 20) {
            refused.match($0) || ($0.user == ircWatcher && $0.command == "PRIVMSG" && $0.params.last == text)
        }
        return outcome.user == user ? [refused] : crossed
    }

    /// The cross-side assertion every scenario uses: each expected event arrives, exactly
    /// once; then, after `quiet` seconds, no other conversation or roster traffic has arrived
    /// on either side. Duplicates and loops are the classic bridge bugs.
    func expectExactlyOnce(_ expected: [Expected], since mark: Int, quiet: Double = 1, timeout: Double = 15, sourceLocation: SourceLocation = #_sourceLocation) throws {
        for item in expected {
            try waitFor(item.description, since: mark, timeout: timeout, item.match)
        }
        Thread.sleep(forTimeInterval: quiet)
        let traffic = events(since: mark).filter(\.isTraffic)
        for item in expected {
            let copies = traffic.filter(item.match)
            #expect(copies.count == 1, "\(item): \(copies.count) copies: \(copies)", sourceLocation: sourceLocation)
        }
        let unexpected = traffic.filter { event in !expected.contains { $0.match(event) } }
        #expect(unexpected.isEmpty, "unexpected traffic: \(unexpected)", sourceLocation: sourceLocation)
    }
}

/// Predicates for the agent's events.
enum On {
    static func xmppMessage(to user: String, from: String, body: String) -> Expected {
        Expected("\(user) gets \(body.debugDescription) from \(from)") {
            $0.user == user && $0.kind == "message" && $0.type == "groupchat" && $0.from == from && $0.body == body
        }
    }

    static func ircPrivmsg(to user: String, from nick: String, channel: String, text: String) -> Expected {
        Expected("\(user) gets PRIVMSG \(text.debugDescription) from \(nick)") {
            $0.user == user && $0.kind == "irc" && $0.command == "PRIVMSG" && $0.nick == nick
                && $0.params.first?.lowercased() == channel.lowercased() && $0.params.last == text
        }
    }

    static func xmppPresence(to user: String, from: String, unavailable: Bool, status: String? = nil) -> Expected {
        Expected("\(user) gets \(unavailable ? "unavailable" : "available") presence from \(from)") {
            $0.user == user && $0.kind == "presence" && $0.from == from
                && (unavailable ? $0.type == "unavailable" : $0.type != "unavailable" && $0.type != "error")
                && (status == nil || $0.status == status)
        }
    }

    static func irc(to user: String, _ command: String, from nick: String) -> Expected {
        Expected("\(user) sees \(command) from \(nick)") {
            $0.user == user && $0.kind == "irc" && $0.command == command && $0.nick == nick
        }
    }
}
