import ArgumentParser
import Configuration
import Foundation
import Lab
import Logging

/// `shadowbridge demo` (DESIGN.md §5): the whole system on loopback from Debian's packages,
/// with `#demo` mapped to `demo@rooms.localhost`, and the instructions to join it.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start Prosody, ngircd and both roles on loopback, bridge #demo to demo@rooms.localhost, and say how to connect.")

    @Option(name: .long, help: "Log level for Shadowbridge's own log on stderr.")
    var logLevel = "warning"

    func run() async throws {
        let directory: URL
        let prosody: ProsodyServer
        let ngircd: NgircdServer
        let users = [("alice", "alice-demo"), ("bob", "bob-demo")]
        do {
            directory = try Lab.makeTemporaryDirectory(prefix: "shadowbridge-demo")
            let masterSecret = RandomSecret.make()
            let bridgeSecret = RandomSecret.make()
            prosody = try ProsodyServer.start(
                in: directory.appendingPathComponent("prosody"), domain: "localhost",
                components: [.init(domain: "rooms.localhost", secret: masterSecret), .init(domain: "irc.localhost", secret: bridgeSecret)])
            do {
                ngircd = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"), options: .init(serverName: "irc.localhost"))
                for (user, password) in users { try prosody.register(user: user, password: password) }
                try writeConfiguration(in: directory, prosody: prosody, ngircd: ngircd, masterSecret: masterSecret, bridgeSecret: bridgeSecret)
            } catch {
                prosody.stop()
                throw error
            }
        } catch let error as LabError {
            FileHandle.standardError.write(Data("shadowbridge demo: \(error)\n".utf8))
            throw ExitCode(1)
        }
        defer {
            ngircd.stop()
            prosody.stop()
            try? FileManager.default.removeItem(at: directory)
            FileHandle.standardOutput.write(Data("Demo stopped: Prosody and ngircd are stopped and \(directory.path) is removed.\n".utf8))
        }
        let settings = try loadConfiguration(directory.appendingPathComponent("shadowbridge.toml").path)
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        LoggingSystem.bootstrap { StderrLogHandler(label: $0, level: level) }
        let logger = Logger(label: "shadowbridge")
        try await runRoles(settings, logger: logger, liveRestarts: false) {
            // Written straight to the descriptor: a pipe reader sees it at once.
            FileHandle.standardOutput.write(Data(
                """
                Shadowbridge demo is running. Ctrl-C stops everything and removes \(directory.path).

                IRC:   irssi -c 127.0.0.1 -p \(ngircd.port) -n yournick      then   /join #demo
                       (any IRC client: server 127.0.0.1, port \(ngircd.port), no TLS)
                XMPP:  account alice@localhost password alice-demo  (or bob@localhost, bob-demo)
                       server 127.0.0.1, port \(prosody.c2sPort), plain connection (no TLS on loopback)
                       join the group chat demo@rooms.localhost with any nick
                IRC users appear in the room as occupants; XMPP users appear on IRC as IRC users.

                Servers: prosody pid \(prosody.pid), ngircd pid \(ngircd.pid), directory \(directory.path)

                """.utf8))
        }
    }

    private func writeConfiguration(in directory: URL, prosody: ProsodyServer, ngircd: NgircdServer, masterSecret: String, bridgeSecret: String) throws {
        let bridges = directory.appendingPathComponent("bridges")
        try FileManager.default.createDirectory(at: bridges, withIntermediateDirectories: true)
        try """
            [network]
            name = "demo"
            servers = ["irc://127.0.0.1:\(ngircd.port)"]
            nick = "bridge"

            [[channel]]
            irc = "#demo"
            room = "demo@rooms.localhost"
            """.write(to: bridges.appendingPathComponent("demo.toml"), atomically: true, encoding: .utf8)
        let secrets = directory.appendingPathComponent("secrets")
        try FileManager.default.createDirectory(at: secrets, withIntermediateDirectories: true)
        try masterSecret.write(to: secrets.appendingPathComponent("master"), atomically: true, encoding: .utf8)
        try bridgeSecret.write(to: secrets.appendingPathComponent("bridge"), atomically: true, encoding: .utf8)
        try """
            [xmpp]
            host = "127.0.0.1"
            port = \(prosody.componentPort)

            [master]
            domain = "rooms.localhost"
            secret_file = "\(secrets.path)/master"
            allowed_shadows = ["irc.localhost"]
            database = "\(directory.path)/state/master.sqlite"

            [[master.room]]
            name = "demo"

            [bridge]
            domain = "irc.localhost"
            secret_file = "\(secrets.path)/bridge"
            mappings = "\(bridges.path)"
            database = "\(directory.path)/state/bridge.sqlite"
            """.write(to: directory.appendingPathComponent("shadowbridge.toml"), atomically: true, encoding: .utf8)
    }
}

enum RandomSecret {
    static func make() -> String {
        (0..<24).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! }.map(String.init).joined()
    }
}
