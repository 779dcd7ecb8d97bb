import Foundation
import IRCCore
import IRCNIO
import Lab
import Logging
import NIOPosix

// Issue 5's measurement of what one idle IRC connection costs, registered with a real ngircd.
// IRC parse and serialize throughput are microbenchmarks now (`bash Benchmarks/run micro`).

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
print("| figure | value |")
print("|---|---|")
print(String(format: "| one idle registered connection in a channel (%d, ngircd) | %.1f KiB RSS |", connections, Double(after - before) / Double(connections) / 1024))
