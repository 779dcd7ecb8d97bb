import Foundation
import Lab
import Testing

/// The real servers one end-to-end suite shares: Prosody (c2s + component port) and ngircd,
/// on free loopback ports in a temporary directory, stopped by PID when the suite ends.
final class LabServers: Sendable {
    static let masterDomain = "rooms.xmpp.test"
    static let bridgeDomain = "irc.xmpp.test"
    static let masterSecret = "master-secret-for-tests"
    static let bridgeSecret = "bridge-secret-for-tests"
    /// A scripted shadow node, speaking the link by hand over its own component connection.
    static let scriptedDomain = "scripted.xmpp.test"
    static let scriptedSecret = "scripted-secret-for-tests"

    @TaskLocal static var current: LabServers?

    let directory: URL
    let prosody: ProsodyServer
    let ngircd: NgircdServer
    /// InspIRCd with Atheme, for the suites that ask for the IRCv3 server.
    let inspircd: InspIRCdServer?

    init(withInspIRCd: Bool = false) throws {
        directory = try Lab.makeTemporaryDirectory(prefix: "shadowbridge-e2e")
        prosody = try ProsodyServer.start(
            in: directory.appendingPathComponent("prosody"),
            components: [
                .init(domain: Self.masterDomain, secret: Self.masterSecret),
                .init(domain: Self.bridgeDomain, secret: Self.bridgeSecret),
                .init(domain: Self.scriptedDomain, secret: Self.scriptedSecret),
            ])
        do {
            ngircd = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"))
        } catch {
            prosody.stop()
            throw error
        }
        do {
            inspircd = withInspIRCd ? try InspIRCdServer.start(in: directory.appendingPathComponent("inspircd")) : nil
        } catch {
            ngircd.stop()
            prosody.stop()
            throw error
        }
    }

    func stop() {
        inspircd?.stop()
        ngircd.stop()
        prosody.stop()
        Lab.removeUnlessKept(directory)
    }

    static func require() throws -> LabServers {
        try #require(current, "the suite must carry the .labServers trait")
    }
}

/// Starts the servers once around a whole suite.
struct LabServersTrait: SuiteTrait, TestScoping {
    var withInspIRCd = false
    var isRecursive: Bool { false }

    func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let servers = try LabServers(withInspIRCd: withInspIRCd)
        defer { servers.stop() }
        try await LabServers.$current.withValue(servers) { try await function() }
    }
}

extension Trait where Self == LabServersTrait {
    static var labServers: Self { LabServersTrait() }
    /// Prosody, ngircd, and InspIRCd with Atheme.
    static var labServersWithInspIRCd: Self { LabServersTrait(withInspIRCd: true) }
}

/// One `shadowbridge run` with a generated config, for one scenario.
final class ShadowbridgeProcess: Sendable {
    let directory: URL
    let process: ManagedProcess

    /// `channels` maps IRC channels on the lab's ngircd to room local parts on the master.
    /// `server` is the IRC server's address (the lab's ngircd unless given); `networkSettings`
    /// are more lines for the mapping's [network] table.
    convenience init(
        servers: LabServers, directory: URL, network: String = "lab", nick: String = "sbridge", channels: [(irc: String, room: String)], metricsPort: Int? = nil,
        link: LinkTransport = .memory, extraConfig: String = "", server: String? = nil, networkSettings: String = "", bridgeSettings: String = "",
        masterSettings: String = ""
    ) throws {
        try self.init(
            directory: directory,
            config: Self.config(
                xmppPort: servers.prosody.componentPort, mappings: directory.appendingPathComponent("bridges"), metricsPort: metricsPort, link: link,
                bridgeSettings: bridgeSettings, masterSettings: masterSettings) + extraConfig,
            mappings: [
                "\(network).toml": Self.mapping(
                    network: network, server: server ?? "irc://127.0.0.1:\(servers.ngircd.port)", nick: nick, channels: channels, networkSettings: networkSettings)
            ])
    }

    /// Any config and mapping files, written into `directory`.
    init(directory: URL, config: String, mappings: [String: String]) throws {
        self.directory = directory
        let mappingsDirectory = directory.appendingPathComponent("bridges")
        try FileManager.default.createDirectory(at: mappingsDirectory, withIntermediateDirectories: true)
        for (name, text) in mappings {
            try text.write(to: mappingsDirectory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        let configFile = directory.appendingPathComponent("shadowbridge.toml")
        try config.write(to: configFile, atomically: true, encoding: .utf8)
        process = try ManagedProcess(
            name: "shadowbridge", executable: try Self.binary(), arguments: ["run", "--config", configFile.path],
            directory: directory, logFile: directory.appendingPathComponent("shadowbridge.log"))
    }

    /// How the two roles in one process exchange link stanzas (`xmpp.link`): the link
    /// scenarios run over both.
    enum LinkTransport: String, CustomTestStringConvertible, Sendable {
        case memory, server
        var testDescription: String { "link through \(rawValue)" }
    }

    /// Both roles on the lab's component port, debug logging (the tests count link lines),
    /// keepalive pings every second so splits are found within a few seconds.
    static func config(
        xmppPort: Int, mappings: URL, master: Bool = true, bridge: Bool = true, metricsPort: Int? = nil, link: LinkTransport = .memory, bridgeSettings: String = "",
        masterSettings: String = ""
    ) -> String {
        var text = """
            [xmpp]
            host = "127.0.0.1"
            port = \(xmppPort)
            link = "\(link.rawValue)"
            link_ping_interval = 1

            [log]
            level = "debug"

            """
        if let metricsPort {
            text += """

                [metrics]
                listen = "127.0.0.1:\(metricsPort)"

                """
        }
        if master {
            text += """

                [master]
                domain = "\(LabServers.masterDomain)"
                secret = "\(LabServers.masterSecret)"
                allowed_shadows = ["\(LabServers.bridgeDomain)"]
                database = "state/master.sqlite"

                """
            if !masterSettings.contains("occupant_rate") {
                // The scenarios' numbered streams are faster than anyone types; the rate
                // limits have their own scenario.
                text += "occupant_rate = 20\noccupant_burst = 50\n"
            }
            if !masterSettings.isEmpty { text += masterSettings + "\n" }
        }
        if bridge {
            text += """

                [bridge]
                domain = "\(LabServers.bridgeDomain)"
                secret = "\(LabServers.bridgeSecret)"
                mappings = "\(mappings.path)"

                """
            if !bridgeSettings.isEmpty { text += bridgeSettings + "\n" }
        }
        return text
    }

    static func mapping(network: String, ircPort: Int, nick: String = "sbridge", channels: [(irc: String, room: String)]) -> String {
        mapping(network: network, server: "irc://127.0.0.1:\(ircPort)", nick: nick, channels: channels)
    }

    static func mapping(network: String, server: String, nick: String = "sbridge", channels: [(irc: String, room: String)], networkSettings: String = "") -> String {
        var text = """
            [network]
            name = "\(network)"
            servers = ["\(server)"]
            nick = "\(nick)"

            """
        if !networkSettings.isEmpty { text += networkSettings + "\n" }
        for channel in channels {
            text += """

                [[channel]]
                irc = "\(channel.irc)"
                room = "\(channel.room)@\(LabServers.masterDomain)"

                """
        }
        return text
    }

    /// The `shadowbridge` built next to this test binary (`swift build --build-tests` builds both).
    static func binary() throws -> String {
        if let path = ProcessInfo.processInfo.environment["SHADOWBRIDGE_BINARY"] { return path }
        let me = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let candidate = me.deletingLastPathComponent().appendingPathComponent("shadowbridge").path
        guard FileManager.default.isExecutableFile(atPath: candidate) else {
            throw LabError("shadowbridge is not built next to the tests (\(candidate)): run `swift build --build-tests` first")
        }
        return candidate
    }

    var log: String { process.log() }

    /// Lines of the log containing every one of `parts`.
    func logLines(containing parts: String...) -> [String] {
        log.split(separator: "\n").map(String.init).filter { line in parts.allSatisfy { line.contains($0) } }
    }

    /// Waits until a log line contains every part.
    func waitForLog(_ parts: String..., timeout: Double = 15) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if log.split(separator: "\n").contains(where: { line in parts.allSatisfy { line.contains($0) } }) { return }
            if !process.isRunning { throw LabError("shadowbridge exited: \(log.suffix(2000))") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw LabError("timed out waiting for the log line \(parts): \(log.suffix(3000))")
    }

    /// The mapping files, for a reload.
    var mappingsDirectory: URL { directory.appendingPathComponent("bridges") }

    /// SIGTERM and a clean exit.
    func stop() -> Int32? {
        process.stop(grace: 10)
        return process.exitStatus
    }
}
