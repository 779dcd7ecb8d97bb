import ArgumentParser
import Bridge
import Configuration
import Foundation
import Logging
import MasterService
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import Store

@main
enum Main {
    static func main() {
        // Tasks and actors run on NIO's event loop, the sockets' own, and on one thread, as
        // biboumi runs: a line goes from the IRC socket through the bridge and the master to the
        // XMPP socket without crossing a thread (issue 8's latency). Nothing may block it.
        NIOSingletons.groupLoopCountSuggestion = 1
        _ = NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
        // The command's own entry point is main-actor isolated: the main queue must keep
        // running for it, so no blocking wait here.
        Task { @MainActor in
            await Shadowbridge.main()
            exit(0)
        }
        dispatchMain()
    }
}

struct Shadowbridge: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shadowbridge",
        abstract: "An IRC <-> XMPP bridge and the distributed MUC master it federates with.",
        subcommands: [Run.self, Check.self, Demo.self])
}

/// Loads the configuration or exits with the error said plainly (no stack trace).
func loadConfiguration(_ path: String) throws -> ShadowbridgeConfiguration {
    do {
        return try ShadowbridgeConfiguration.load(path: path)
    } catch {
        for mistake in error.all {
            FileHandle.standardError.write(Data("shadowbridge: configuration error: \(mistake)\n".utf8))
        }
        throw ExitCode(2)
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the roles the configuration enables.")

    @Option(name: .long, help: "The configuration file.")
    var config = "Config/shadowbridge.toml"

    /// Set by a live restart (SIGUSR2) for the process it execs: what the one before handed over.
    @Option(name: .long, help: ArgumentHelp(visibility: .private))
    var resumeFrom: String?

    func run() async throws {
        let settings = try loadConfiguration(config)
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { StderrLogHandler(label: $0, level: level) }
        let logger = Logger(label: "shadowbridge")
        for warning in settings.warnings { logger.warning("\(warning)") }

        var handover: LiveRestartState?
        if let resumeFrom {
            handover = LiveRestart.load(resumeFrom, logger: logger)
        }
        try await runRoles(settings, logger: logger, handover: handover)
    }
}

/// Runs the roles `settings` enables until SIGINT or SIGTERM, then stops them cleanly: the
/// bridge takes its IRC users out of the rooms and QUITs, the components close their streams.
/// `liveRestarts`: SIGUSR2 execs this executable with `run` (not for the demo).
func runRoles(
    _ settings: ShadowbridgeConfiguration, logger: Logger, handover: LiveRestartState? = nil, liveRestarts: Bool = true, onStarted: () -> Void = {}
) async throws {
    // NIO's singleton: it cannot be shut down, and lives until the process exits.
    let group = MultiThreadedEventLoopGroup.singleton
    // Metrics first: every counter binds to the factory in place when it is made.
    let registry = PrometheusCollectorRegistry()
    MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
    var metricsChannel: (any Channel)?
    if let listen = settings.metricsListen {
        do {
            metricsChannel = try await MetricsServer.start(host: listen.host, port: listen.port, registry: registry, group: group)
            logger.info("metrics", metadata: ["url": "http://\(listen.host):\(listen.port)/metrics"])
        } catch {
            FileHandle.standardError.write(Data("shadowbridge: cannot listen for metrics on \(listen.host):\(listen.port): \(error)\n".utf8))
            throw ExitCode(1)
        }
    }
    var masterSettings = settings.master
    if var configured = masterSettings, let bridge = settings.bridge {
        // Rooms this process's own mappings name exist from the start, so XMPP users can
        // join before the first IRC user federates the shadow.
        let mapped = bridge.networks.flatMap(\.channels).map(\.room).filter { $0.domain == configured.domain }.compactMap(\.local)
        configured.rooms = Array(Set(configured.rooms + mapped)).sorted()
        masterSettings = configured
    }
    let master: MasterService?
    if let masterSettings {
        do {
            master = try MasterService(
                configuration: masterSettings, xmpp: settings.xmpp, admins: settings.admins, handover: handover?.master, group: group, logger: logger)
        } catch {
            FileHandle.standardError.write(Data("shadowbridge: cannot open the master's database \(masterSettings.database ?? "(memory)"): \(error)\n".utf8))
            try? await metricsChannel?.close()
            throw ExitCode(1)
        }
    } else {
        master = nil
    }
    let bridge: BridgeService?
    if let bridgeSettings = settings.bridge {
        // Without a database there is nothing a restart could resume from: no store at all,
        // rather than one in memory written on every line for nothing.
        var store: BridgeStore?
        do {
            store = try bridgeSettings.database.map { try BridgeStore(path: $0) }
        } catch {
            FileHandle.standardError.write(Data("shadowbridge: cannot open the bridge's database \(bridgeSettings.database ?? "(memory)"): \(error)\n".utf8))
            try? await metricsChannel?.close()
            throw ExitCode(1)
        }
        bridge = BridgeService(
            configuration: bridgeSettings, xmpp: settings.xmpp, admins: settings.admins, store: store, handover: handover?.bridge, group: group, logger: logger)
    } else {
        bridge = nil
    }
    if let master, let bridge, settings.xmpp.link == .memory {
        // Both roles here: link stanzas between them skip the XMPP server (DESIGN.md §1).
        master.session.shortcut(to: bridge.session.configuration.domain) { bridge.deliverInMemory($0) }
        bridge.session.shortcut(to: master.session.configuration.domain) { master.deliverInMemory($0) }
        logger.info("link transport: in memory between the master and the bridge")
    }
    if let bridge, let bridgeSettings = settings.bridge {
        await bridge.setReloader { await reloadMappings(bridgeSettings, bridge: bridge, master: master, logger: logger) }
    }
    let roles = Task {
        await withTaskGroup(of: Void.self) { tasks in
            if let master { tasks.addTask { await master.run() } }
            if let bridge { tasks.addTask { await bridge.run() } }
        }
    }
    let signals = Signals([SIGINT, SIGTERM, SIGHUP, SIGUSR2])
    onStarted()
    var received: Int32 = 0
    for await signal in signals.stream {
        if signal == SIGUSR2 {
            guard liveRestarts else {
                logger.warning("SIGUSR2: the demo does not restart live")
                continue
            }
            guard let executable = LiveRestart.executable() else {
                logger.error("SIGUSR2: cannot find this process's executable; not restarting")
                continue
            }
            if let bridge, await !bridge.mayHandOver {
                logger.warning("SIGUSR2: the last restart's connections are not all taken up yet; not restarting")
                continue
            }
            let what = [bridge == nil ? nil : "IRC connections", master == nil ? nil : "rooms"].compactMap { $0 }.joined(separator: " and ")
            logger.info("SIGUSR2: restarting live; \(what) are handed to the next process", metadata: ["executable": "\(executable)"])
            // Whatever happens below, the process is replaced or gone within 10 s.
            Thread {
                Thread.sleep(forTimeInterval: 10)
                FileHandle.standardError.write(Data("shadowbridge: the live restart did not finish within 10 s; exiting\n".utf8))
                exit(1)
            }.start()
            // The bridge first: the last lines it relays go through the master, which then
            // hands over rooms that hold them.
            let state = LiveRestartState(bridge: await bridge?.handOver(), master: await master?.handOver())
            try? await metricsChannel?.close()
            LiveRestart.exec(executable, handover: state, logger: logger)
        }
        guard signal == SIGHUP else {
            received = signal
            break
        }
        if let bridge, let bridgeSettings = settings.bridge {
            logger.info("SIGHUP: reloading the mappings", metadata: ["directory": "\(bridgeSettings.mappingsDirectory)"])
            Task { _ = await reloadMappings(bridgeSettings, bridge: bridge, master: master, logger: logger) }
        } else {
            logger.info("SIGHUP: this process runs no bridge; nothing to reload")
        }
    }
    logger.info("stopping", metadata: ["signal": "\(received)"])
    // Whatever happens below, the process is gone within 10 s of the signal (DESIGN.md §5).
    let deadline = Thread {
        Thread.sleep(forTimeInterval: 10)
        FileHandle.standardError.write(Data("shadowbridge: did not stop within 10 s; exiting\n".utf8))
        exit(1)
    }
    deadline.start()
    await bridge?.shutdown()
    await master?.shutdown()
    roles.cancel()
    _ = await roles.value
    try? await metricsChannel?.close()
    logger.info("stopped")
}

/// Reads `bridges/` again and applies it; a broken file changes nothing and is reported.
func reloadMappings(
    _ settings: ShadowbridgeConfiguration.Bridge, bridge: BridgeService, master: MasterService?, logger: Logger
) async -> (ok: Bool, text: String) {
    let networks: [Network]
    do {
        networks = try settings.reloadNetworks()
    } catch {
        await bridge.reloadRefused()
        for mistake in error.all {
            logger.error("mappings not reloaded; the running ones stay as they were", metadata: ["error": "\(mistake)"])
        }
        return (false, "not reloaded; the running mappings stay as they were:\n" + error.all.map(\.description).joined(separator: "\n"))
    }
    await master?.ensureRooms(networks.flatMap(\.channels).map(\.room))
    let report = await bridge.apply(networks)
    logger.info("mappings reloaded", metadata: ["changes": "\(report)"])
    return (true, "reloaded: \(report)")
}

/// Columns padded to their widest cell.
func printTable(header: [String], rows: [[String]]) {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    for row in all {
        print(row.indices.map { $0 == row.count - 1 ? row[$0] : row[$0].padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  "))
    }
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate the configuration and mappings, and print the mapping table.")

    @Option(name: .long, help: "The configuration file.")
    var config = "Config/shadowbridge.toml"

    func run() async throws {
        let settings = try loadConfiguration(config)
        for warning in settings.warnings { print("warning: \(warning)") }
        if let master = settings.master {
            print("master: \(master.domain) (shadows allowed from \(master.allowedShadows.isEmpty ? "nowhere" : master.allowedShadows.joined(separator: ", ")); rooms created \(master.createRooms.rawValue))")
        }
        if let bridge = settings.bridge {
            print("bridge: \(bridge.domain), mappings in \(bridge.mappingsDirectory)/")
            let rows = bridge.networks.flatMap { network in
                network.channels.map { [network.name, $0.irc, $0.room.description, "\(($0.file as NSString).lastPathComponent):\($0.line ?? 0)"] }
            }
            printTable(header: ["NETWORK", "IRC CHANNEL", "XMPP ROOM", "FILE"], rows: rows)
            print("\(rows.count) mapping\(rows.count == 1 ? "" : "s") on \(bridge.networks.count) network\(bridge.networks.count == 1 ? "" : "s")")
        }
        if !settings.admins.isEmpty { print("admins: \(settings.admins.map(\.description).joined(separator: ", "))") }
        print("configuration OK")
    }
}

/// The given signals as a stream, taken from their default actions for as long as it lives.
final class Signals {
    let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    init(_ signals: [Int32]) {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        self.stream = stream
        sources = signals.map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            return source
        }
    }

    deinit {
        for source in sources { source.cancel() }
    }
}

/// What a live restart hands to the next process: the bridge's IRC connections and state, the
/// master's rooms, for the roles this process runs.
struct LiveRestartState: Codable, Sendable {
    var bridge: BridgeHandover?
    var master: MasterHandover?
    /// The roles' parts that could not be read, with why (not written): each role takes up its
    /// own part or starts fresh, so an unreadable room does not cost the IRC connections.
    var unreadable: [String] = []

    enum CodingKeys: String, CodingKey { case bridge, master }

    init(bridge: BridgeHandover? = nil, master: MasterHandover? = nil) {
        self.bridge = bridge
        self.master = master
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        do { bridge = try container.decodeIfPresent(BridgeHandover.self, forKey: .bridge) } catch { unreadable.append("the bridge's part: \(error)") }
        do { master = try container.decodeIfPresent(MasterHandover.self, forKey: .master) } catch { unreadable.append("the master's part: \(error)") }
    }
}

/// SIGUSR2: the bridge's IRC connections and the master's rooms go on in a new process (`exec`
/// of this executable, which may have been replaced by a newer one), so IRC sees nobody leave
/// and come back, and XMPP clients see their rooms go on.
enum LiveRestart {
    /// The executable this process runs, as installed now.
    static func executable() -> String? {
        guard var path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else { return nil }
        if path.hasSuffix(" (deleted)") { path.removeLast(" (deleted)".count) }
        return access(path, X_OK) == 0 ? path : nil
    }

    /// Writes what the bridge handed over where only this user can read it, and execs with
    /// the same arguments and `--resume-from` it. Does not return: if `exec` fails, the
    /// connections are already stopped, so the process exits for its supervisor to restart it.
    static func exec(_ executable: String, handover: LiveRestartState, logger: Logger) -> Never {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("shadowbridge-handover-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).json").path
        do {
            let data = try JSONEncoder().encode(handover)
            // Created readable by this user only, from the start (it holds queued lines).
            let file = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard file >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            let written = data.withUnsafeBytes { write(file, $0.baseAddress, $0.count) }
            close(file)
            guard written == data.count else { throw POSIXError(.EIO) }
        } catch {
            logger.critical("live restart: cannot write the handover file; exiting", metadata: ["path": "\(path)", "error": "\(error)"])
            exit(1)
        }
        var arguments = Array(CommandLine.arguments)
        if let index = arguments.firstIndex(of: "--resume-from"), index + 1 < arguments.count { arguments.removeSubrange(index...index + 1) }
        arguments += ["--resume-from", path]
        // The new process starts with no signal blocked (this thread may block some).
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        let argv = arguments.map { strdup($0) } + [nil]
        execv(executable, argv)
        logger.critical("live restart: exec failed; exiting", metadata: ["executable": "\(executable)", "errno": "\(errno)"])
        exit(1)
    }

    /// Reads and removes the handover file; a broken one is said and the roles start fresh.
    static func load(_ path: String, logger: Logger) -> LiveRestartState? {
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            // A version before the master's rooms were handed over wrote the bridge's part alone.
            let state = try (try? JSONDecoder().decode(BridgeHandover.self, from: data)).map { LiveRestartState(bridge: $0) }
                ?? JSONDecoder().decode(LiveRestartState.self, from: data)
            for part in state.unreadable {
                logger.error("live restart: part of the handover file cannot be read; that role starts fresh", metadata: ["path": "\(path)", "error": "\(part)"])
            }
            logger.info(
                "live restart: taking up what the process before handed over",
                metadata: ["networks": "\(state.bridge?.networks.count ?? 0)", "rooms": "\(state.master?.rooms.count ?? 0)"])
            return state
        } catch {
            logger.error("live restart: the handover file cannot be read; starting without it", metadata: ["path": "\(path)", "error": "\(error)"])
            return nil
        }
    }
}
