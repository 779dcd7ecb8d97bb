import Foundation
import Lab
import Synchronization
import Testing

/// Issue 9's accounting: a numbered stream of lines from one sender, sent while a fault
/// happens, and where each line ended up. The categories are reported separately; the goal
/// is that no line a running bridge accepted is lost or doubled.
struct LineAccount: CustomStringConvertible {
    var stream: String
    /// Arrived exactly once, and after every earlier line of the stream that arrived.
    var deliveredOnceInOrder: [Int] = []
    var duplicated: [Int] = []
    var outOfOrder: [Int] = []
    /// Refused with an error that reached its sender.
    var refused: [Int] = []
    /// Never arrived, and was sent while its own side was disconnected: the sender's
    /// connection, or the bridge's connection on the sender's network.
    var sentWhileCutOff: [Int] = []
    /// Never arrived, and was sent right around a kill -9 of the bridge (the window the test
    /// names): in flight, in a socket buffer of the process that died.
    var lostInFlight: [Int] = []
    /// Never arrived, though its sender was connected and got no error: the goal is none.
    var lost: [Int] = []

    /// `received`: the line numbers in the order they arrived.
    init(stream: String, sent: [NumberedStream.Line], received: [Int]) {
        self.stream = stream
        var copies: [Int: Int] = [:]
        for n in received { copies[n, default: 0] += 1 }
        var highest = 0
        var seen: Set<Int> = []
        for n in received where seen.insert(n).inserted {
            if n < highest { outOfOrder.append(n) }
            highest = max(highest, n)
        }
        for line in sent {
            switch copies[line.n] ?? 0 {
            case 0:
                if line.refused {
                    refused.append(line.n)
                } else if line.inFlight {
                    lostInFlight.append(line.n)
                } else if line.senderCutOff {
                    sentWhileCutOff.append(line.n)
                } else {
                    lost.append(line.n)
                }
            case 1:
                if !outOfOrder.contains(line.n) { deliveredOnceInOrder.append(line.n) }
            default:
                duplicated.append(line.n)
            }
        }
    }

    var description: String {
        "\(stream): \(deliveredOnceInOrder.count) delivered once in order, \(duplicated.count) doubled \(duplicated), "
            + "\(outOfOrder.count) out of order \(outOfOrder), \(refused.count) refused with an error to the sender, "
            + "\(sentWhileCutOff.count) sent while its own side was disconnected, "
            + (lostInFlight.isEmpty ? "" : "\(lostInFlight.count) lost in flight at the kill \(lostInFlight), ") + "\(lost.count) lost \(lost)"
    }

    /// Prints the account (CI's log keeps it) and checks the invariants.
    func check(sourceLocation: SourceLocation = #_sourceLocation) {
        print("line account: \(self)")
        #expect(duplicated.isEmpty && outOfOrder.isEmpty && lost.isEmpty, "\(self)", sourceLocation: sourceLocation)
    }
}

/// Sends `prefix1`, `prefix2`... through the agent from a thread of its own, one every
/// `interval`, while the test makes a fault happen; records the agent's event index at each
/// send, so each line can be classified afterwards by what its sender was going through.
final class NumberedStream: Sendable {
    struct Line: Sendable {
        var n: Int
        var mark: Int
        var sentAt = Date()
        var senderCutOff = false
        var refused = false
        var inFlight = false
    }

    private final class Progress: Sendable {
        let lines = Mutex<[Line]>([])
        let done = Mutex(false)
    }

    let prefix: String
    private let progress = Progress()

    init(_ prefix: String, count: Int, interval: Double, agent: LabAgent, send: @escaping @Sendable (String) -> Void) {
        self.prefix = prefix
        let progress = self.progress
        let thread = Thread {
            for n in 1...count {
                let mark = agent.mark
                send("\(prefix)\(n)")
                progress.lines.withLock { $0.append(Line(n: n, mark: mark, sentAt: Date())) }
                Thread.sleep(forTimeInterval: interval)
            }
            progress.done.withLock { $0 = true }
        }
        thread.start()
    }

    /// Lines an XMPP user of the agent says in `room`, each with its text as stanza id (an
    /// error from a server names the line by id alone).
    static func xmpp(_ prefix: String, count: Int, interval: Double, agent: LabAgent, user: String, room: String) -> NumberedStream {
        NumberedStream(prefix, count: count, interval: interval, agent: agent) { agent.send(["cmd": "xmpp_say", "user": user, "room": room, "body": $0, "id": $0]) }
    }

    /// Lines an IRC user of the agent says in `channel`.
    static func irc(_ prefix: String, count: Int, interval: Double, agent: LabAgent, user: String, channel: String) -> NumberedStream {
        NumberedStream(prefix, count: count, interval: interval, agent: agent) { agent.send(["cmd": "irc_send", "user": user, "line": "PRIVMSG \(channel) :\($0)"]) }
    }

    /// This stream's line numbers in the order the IRC user `user` got them from `nick`.
    func received(atIRC user: String, from nick: String, in events: [AgentEvent]) -> [Int] {
        events.filter { $0.user == user && $0.command == "PRIVMSG" && $0.nick == nick }.compactMap { number($0.params.last) }
    }

    /// This stream's line numbers in the order the XMPP user `user` got them live from
    /// `occupant` (room history on a rejoin, marked with a delay, is not a second copy).
    func received(atXMPP user: String, from occupant: String, in events: [AgentEvent]) -> [Int] {
        events.filter { $0.user == user && $0.kind == "message" && $0.from == occupant && !$0.isHistory }.compactMap { number($0.body) }
    }

    /// Waits for the last line to be sent.
    func finish(timeout: Double = 60) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !progress.done.withLock({ $0 }) {
            guard Date() < deadline else { throw LabError("the numbered stream \(prefix) did not finish") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// The line number `text` carries, if it is one of this stream's.
    func number(_ text: String?) -> Int? {
        guard let text, text.hasPrefix(prefix) else { return nil }
        return Int(text.dropFirst(prefix.count))
    }

    /// Every line sent, classified by the sender's connection events (`down` and `up`
    /// predicates over the agent's events; by default the sender is never cut off) and the
    /// errors it got back (`refusal` gives the line number an error event refers to).
    /// `inFlight`: when a kill -9 happened, give or take the time a line takes to cross.
    func sent(
        events: [AgentEvent], down: (AgentEvent) -> Bool = { _ in false }, up: (AgentEvent) -> Bool = { _ in false },
        refusal: (AgentEvent) -> Int? = { _ in nil }, inFlight: ClosedRange<Date>? = nil
    ) -> [Line] {
        let refused = Set(events.compactMap(refusal))
        return progress.lines.withLock { $0 }.map { line in
            var line = line
            // The sender's state when the line went: its last connection event before it.
            let last = events.prefix { $0.index < line.mark }.last { down($0) || up($0) }
            line.senderCutOff = last.map(down) ?? false
            line.refused = refused.contains(line.n)
            line.inFlight = inFlight?.contains(line.sentAt) ?? false
            return line
        }
    }
}
