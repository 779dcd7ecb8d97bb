import Foundation
import IRCCore
import IRCNIO
import Lab
import Logging
import NIOPosix

// Issue 5's measurements: IRC parse and serialize throughput (lines per second, release), with
// the cost of only finding line ends in the same bytes as the ceiling of the same run; and what
// one idle connection costs, registered with a real ngircd.

/// A realistic mix: channel messages with and without tags, joins, numerics, cp1252 text.
let sample: [[UInt8]] = [
    Array(":carol!~carol@host.example.org PRIVMSG #ops :the deploy finished, all green".utf8),
    Array("@time=2026-11-25T10:00:00.000Z;msgid=abc123;account=carol :carol!~carol@host.example.org PRIVMSG #ops :ok, merging now".utf8),
    Array(":dave!~dave@10.0.0.7 JOIN #ops".utf8),
    Array(":irc.example.org 353 sbridge = #ops :@carol +dave erin frank gina hank ivy jack".utf8),
    Array(":erin!~erin@host PRIVMSG #ops :\u{1}ACTION waves\u{1}".utf8),
    Array("PING :irc.example.org".utf8),
    [UInt8](":frank!~f@h PRIVMSG #ops :caf".utf8) + [0xE9, 0x20, 0x96, 0x20] + Array("cp1252 from mIRC".utf8),
    Array(":gina!~g@h NICK :gina_away".utf8),
]

func measure(_ label: String, seconds: Double = 1.5, _ body: () -> Int) -> Double {
    _ = body()  // warm up
    var lines = 0
    let start = DispatchTime.now()
    var elapsed = 0.0
    while elapsed < seconds {
        lines += body()
        elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
    }
    return Double(lines) / elapsed
}

let batch = 100_000
var stream: [UInt8] = []
for index in 0..<batch { stream += sample[index % sample.count] + [0x0D, 0x0A] }
let lines = (0..<batch).map { sample[$0 % sample.count] }
let parsed = lines.map { try! IRCMessage(parsing: $0) }

var sink = 0
let framing = measure("framing") {
    var count = 0
    stream.withUnsafeBufferPointer { buffer in
        var start = 0
        while let end = buffer[start...].firstIndex(of: 0x0A) {
            count += 1
            start = end + 1
        }
    }
    return count
}
let parse = measure("parse") {
    for line in lines { sink &+= (try? IRCMessage(parsing: line))?.parameters.count ?? 0 }
    return lines.count
}
let serialize = measure("serialize") {
    for message in parsed { sink &+= message.line().count }
    return parsed.count
}

func rss() -> Int {
    let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
    let line = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
    return (Int(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) * 1024
}

let connections = Int(CommandLine.arguments.dropFirst().first ?? "") ?? 200
let directory = try Lab.makeTemporaryDirectory(prefix: "ircbench")
let ngircd = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"), options: .init(maxConnectionsIP: 0, liftPenalties: true))
defer {
    ngircd.stop()
    try? FileManager.default.removeItem(at: directory)
}
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
var logger = Logger(label: "bench")
logger.logLevel = .critical
var open: [IRCConnection] = []
let before = rss()
for index in 0..<connections {
    let connection = try await IRCConnection.connect(
        IRCConnectionConfiguration(host: "127.0.0.1", port: ngircd.port, nick: "idle\(index)", username: "xmpp", realname: "idle puppet"),
        group: group, logger: logger)
    // Read every event, as the bridge does, so nothing piles up in the stream.
    let registered = AsyncStream<Void>.makeStream()
    Task {
        for await event in connection.events {
            if case .registered = event { registered.continuation.yield() }
        }
    }
    for await _ in registered.stream { break }
    connection.send(IRCMessage(command: "JOIN", "#idle"))
    open.append(connection)
}
try await Task.sleep(for: .seconds(2))
let after = rss()
for connection in open { connection.quit("bye", immediately: true) }

let commit = (try? Lab.commandOutput("/usr/bin/git", ["-C", "..", "rev-parse", "--short", "HEAD"]))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
print("IRC benchmark, commit \(commit), \(ProcessInfo.processInfo.activeProcessorCount) cores")
print("| figure | value | ratio |")
print("|---|---|---|")
print(String(format: "| finding line ends only (the ceiling) | %.2f M lines/s | 1 |", framing / 1e6))
print(String(format: "| parse (tags, prefix, params, UTF-8 or cp1252) | %.2f M lines/s | %.2f of the ceiling |", parse / 1e6, parse / framing))
print(String(format: "| serialize (with CR LF) | %.2f M lines/s | %.2f of the ceiling |", serialize / 1e6, serialize / framing))
print(String(format: "| one idle registered connection in a channel (%d, ngircd) | %.1f KiB RSS | |", connections, Double(after - before) / Double(connections) / 1024))
if sink == 42 { print("") }
