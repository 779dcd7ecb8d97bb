import Foundation
import Lab
import Synchronization
import Testing

/// One event the agent reported (see Support/lab_agent.py).
struct AgentEvent: Sendable, CustomStringConvertible {
    var index: Int
    var user: String
    var kind: String
    var from: String?
    var type: String?
    var body: String?
    var subject: String?
    var codes: [Int]
    var status: String?
    var show: String?
    var error: String?
    var role: String?
    var command: String?
    var params: [String]
    var nick: String?
    var raw: String?
    var port: Int?
    var count: Int?
    var data: String?
    var xml: String?
    var tag: String?
    /// A message's id attribute.
    var id: String?

    init(index: Int, json: [String: Any]) {
        self.index = index
        user = json["user"] as? String ?? ""
        kind = json["kind"] as? String ?? ""
        from = json["from"] as? String
        type = json["type"] as? String
        body = json["body"] as? String
        subject = json["subject"] as? String
        codes = json["codes"] as? [Int] ?? []
        status = json["status"] as? String
        show = json["show"] as? String
        error = json["error"] as? String
        role = json["role"] as? String
        command = json["command"] as? String
        params = json["params"] as? [String] ?? []
        nick = json["nick"] as? String
        raw = json["raw"] as? String
        port = json["port"] as? Int
        count = json["count"] as? Int
        data = json["data"] as? String
        xml = json["xml"] as? String
        tag = json["tag"] as? String
        id = json["id"] as? String
    }

    var description: String {
        if kind == "irc" { return "#\(index) \(user) irc: \(raw ?? "")" }
        var s = "#\(index) \(user) \(kind)"
        if let from { s += " from=\(from)" }
        if let type { s += " type=\(type)" }
        if let body { s += " body=\(body.debugDescription)" }
        if let subject { s += " subject=\(subject.debugDescription)" }
        if !codes.isEmpty { s += " codes=\(codes)" }
        if let status { s += " status=\(status.debugDescription)" }
        if let show { s += " show=\(show)" }
        if let error { s += " error=\(error)" }
        return s
    }

    /// A room's history on join (XEP-0045 §7.2.15), delivered with a delay (XEP-0203).
    var isHistory: Bool { kind == "message" && xml?.contains("urn:xmpp:delay") == true }

    /// The stanza-id in a message's XML (the room's, in a reflected groupchat line).
    var stanzaID: String? { xml?.firstMatch(of: /<stanza-id[^>]*?\bid="([^"]+)"/).map { String($0.1) } }

    /// The value of the IRCv3 tag `name` on a raw IRC line, as the server wrote it.
    func ircTag(_ name: String) -> String? {
        guard let raw, raw.hasPrefix("@") else { return nil }
        let tags = raw.dropFirst().prefix { $0 != " " }.split(separator: ";")
        return tags.first { $0.hasPrefix(name + "=") }.map { String($0.dropFirst(name.count + 1)) }
    }

    /// Events that are conversation or roster traffic: what a bridge must never duplicate.
    var isTraffic: Bool {
        switch kind {
        case "message", "presence": true
        case "irc": ["PRIVMSG", "NOTICE", "JOIN", "PART", "QUIT", "NICK", "KICK", "MODE", "TOPIC"].contains(command ?? "")
        default: false
        }
    }
}

/// The Python agent hosting slixmpp XMPP users and raw IRC users for one scenario.
final class LabAgent: Sendable {
    private let process: ManagedProcess
    private let input: FileHandle
    private let store = EventStore()
    private let stderrFile: URL

    init(directory: URL) throws {
        let python = "/usr/bin/python3"
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw LabError("Debian's /usr/bin/python3 is missing: run `apt-get install python3-slixmpp`")
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Support/lab_agent.py")
        stderrFile = directory.appendingPathComponent("agent.stderr")
        process = try ManagedProcess(
            name: "lab_agent", executable: python, arguments: ["-u", script.path], logFile: stderrFile,
            pipeStandardInput: true, pipeStandardOutput: true)
        input = process.standardInput!
        let reader = process.standardOutput!
        let store = self.store
        let thread = Thread {
            var pending = Data()
            while true {
                let chunk = reader.availableData
                if chunk.isEmpty { return }
                pending.append(chunk)
                while let newline = pending.firstIndex(of: 0x0A) {
                    let line = pending[pending.startIndex..<newline]
                    pending = Data(pending[(newline + 1)...])
                    guard let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any] else { continue }
                    store.events.withLock { $0.append(AgentEvent(index: $0.count, json: object)) }
                }
            }
        }
        thread.start()
        do {
            _ = try waitFor("the agent to start (is python3-slixmpp installed?)", timeout: 20) { $0.user == "agent" && $0.kind == "ready" }
        } catch {
            let stderr = (try? String(contentsOf: stderrFile, encoding: .utf8)) ?? ""
            throw LabError("the test agent did not start: \(stderr)")
        }
    }

    /// The agent's process, for a scenario that freezes its clients (SIGSTOP).
    var pid: Int32 { process.pid }

    /// The agent's scripted IRC server `user` sends `line` (CR LF added) into `channel`, as a
    /// server would send it to the bridge.
    func scriptedIRCSend(_ user: String, channel: String, line: String) {
        send(["cmd": "scripted_irc_send", "user": user, "channel": channel, "hex": Data((line + "\r\n").utf8).map { String(format: "%02x", $0) }.joined()])
    }

    func send(_ command: [String: Any]) {
        let data = try! JSONSerialization.data(withJSONObject: command)
        input.write(data + Data([0x0A]))
    }

    /// The index the next event will get: "everything after this".
    var mark: Int { store.events.withLock { $0.count } }

    func events(since mark: Int) -> [AgentEvent] { store.events.withLock { Array($0[min(mark, $0.count)...]) } }

    /// Waits for the first event after `since` that matches.
    @discardableResult
    func waitFor(_ what: String, since: Int = 0, timeout: Double = 15, _ match: (AgentEvent) -> Bool) throws -> AgentEvent {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let event = events(since: since).first(where: match) { return event }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let failures = events(since: since).filter { $0.kind == "command_failed" || $0.kind == "bad_command" }
        throw LabError("timed out after \(timeout) s waiting for \(what)\(failures.isEmpty ? "" : "; agent errors: \(failures)")")
    }

    /// Waits until no event has arrived for `seconds` (at most `timeout`).
    func waitForQuiet(seconds: Double, timeout: Double) {
        let deadline = Date().addingTimeInterval(timeout)
        var count = mark, since = Date()
        while Date() < deadline {
            Thread.sleep(forTimeInterval: 0.1)
            if mark != count {
                count = mark
                since = Date()
            } else if Date().timeIntervalSince(since) >= seconds {
                return
            }
        }
    }

    /// A raw IRC user (mIRC-like) registers as `nick` and joins `channel`.
    /// `caps`: an IRCv3 client's capability request (`message-tags`); none for mIRC-like users.
    func ircUserJoins(_ nick: String, port: Int, channel: String, caps: String? = nil) throws {
        send(["cmd": "irc_connect", "user": nick, "port": port, "nick": nick].merging(caps.map { ["caps": $0] } ?? [:]) { $1 })
        try waitFor("\(nick) registered") { $0.user == nick && $0.command == "001" }
        send(["cmd": "irc_send", "user": nick, "line": "JOIN \(channel)"])
        try waitFor("\(nick) joined \(channel)") { $0.user == nick && $0.command == "JOIN" && $0.nick == nick }
    }

    /// A slixmpp user logs in (account `user`, password `pw-user`, registered here) and joins
    /// `room` as `nick`, up to its self-presence.
    func xmppUserJoins(_ user: String, prosody: ProsodyServer, room: String, nick: String) throws {
        try xmppUserOnline(user, prosody: prosody)
        try xmppJoin(user, room: room, nick: nick)
    }

    /// A slixmpp user logs in (account `user`, password `pw-user`, registered here).
    func xmppUserOnline(_ user: String, prosody: ProsodyServer) throws {
        try prosody.register(user: user, password: "pw-\(user)")
        send(["cmd": "xmpp_connect", "user": user, "jid": "\(user)@\(prosody.domain)", "password": "pw-\(user)", "port": prosody.c2sPort])
        try waitFor("\(user) online") { $0.user == user && $0.kind == "online" }
    }

    /// An online XMPP user joins `room` as `nick`, up to its self-presence.
    func xmppJoin(_ user: String, room: String, nick: String) throws {
        let mark = self.mark
        send(["cmd": "xmpp_join", "user": user, "room": room, "nick": nick])
        try waitFor("\(user) joined \(room)", since: mark) { $0.user == user && $0.kind == "presence" && $0.from == "\(room)/\(nick)" && $0.codes.contains(110) }
    }

    /// Sends an iq from an XMPP user and waits for its answer (result, error or timeout).
    @discardableResult
    func iq(_ user: String, to: String, type: String = "get", _ payload: String, timeout: Double = 15) throws -> AgentEvent {
        let tag = UUID().uuidString
        let mark = self.mark
        send(["cmd": "xmpp_iq", "user": user, "to": to, "type": type, "payload": payload, "tag": tag])
        return try waitFor("the answer to \(user)'s iq to \(to)", since: mark, timeout: timeout) { $0.user == user && $0.kind == "iq" && $0.tag == tag }
    }

    /// Reads a room's whole archive with slixmpp's MAM client, `max` per page; the event's
    /// `params` are the bodies, oldest first, and `data` their senders, one per line.
    func mam(_ user: String, room: String, max: Int, timeout: Double = 15) throws -> AgentEvent {
        let tag = UUID().uuidString
        let mark = self.mark
        send(["cmd": "xmpp_mam", "user": user, "room": room, "max": max, "tag": tag])
        return try waitFor("\(user) reads the archive of \(room)", since: mark, timeout: timeout) { $0.user == user && $0.kind == "mam" && $0.tag == tag }
    }

    func stop() {
        send(["cmd": "quit"])
        if !process.waitForExit(timeout: 3) { process.stop(grace: 1) }
    }
}

/// The events the reader thread appends to; a class so the thread can hold it.
final class EventStore: Sendable {
    let events = Mutex<[AgentEvent]>([])
}
