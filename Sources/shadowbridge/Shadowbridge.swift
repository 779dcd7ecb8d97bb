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

@main
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
        FileHandle.standardError.write(Data("shadowbridge: configuration error: \(error)\n".utf8))
        throw ExitCode(2)
    }
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the roles the configuration enables.")

    @Option(name: .long, help: "The configuration file.")
    var config = "Config/shadowbridge.toml"

    func run() async throws {
        let settings = try loadConfiguration(config)
        let level = Logger.Level(rawValue: settings.logLevel) ?? .info
        LoggingSystem.bootstrap { StderrLogHandler(label: $0, level: level) }
        let logger = Logger(label: "shadowbridge")
        for warning in settings.warnings { logger.warning("\(warning)") }

        try await runRoles(settings, logger: logger)
    }
}

/// Runs the roles `settings` enables until SIGINT or SIGTERM, then stops them cleanly: the
/// bridge takes its IRC users out of the rooms and QUITs, the components close their streams.
func runRoles(_ settings: ShadowbridgeConfiguration, logger: Logger, onStarted: () -> Void = {}) async throws {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
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
            try? await group.shutdownGracefully()
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
    let master = masterSettings.map { MasterService(configuration: $0, xmpp: settings.xmpp, group: group, logger: logger) }
    let bridge = settings.bridge.map { BridgeService(configuration: $0, xmpp: settings.xmpp, group: group, logger: logger) }
    let roles = Task {
        await withTaskGroup(of: Void.self) { tasks in
            if let master { tasks.addTask { await master.run() } }
            if let bridge { tasks.addTask { await bridge.run() } }
        }
    }
    onStarted()
    let signal = await Signals.next([SIGINT, SIGTERM])
    logger.info("stopping", metadata: ["signal": "\(signal)"])
    await bridge?.shutdown()
    await master?.shutdown()
    roles.cancel()
    _ = await roles.value
    try? await metricsChannel?.close()
    try? await group.shutdownGracefully()
    logger.info("stopped")
}

struct Check: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Validate the configuration and mappings, and print the mapping table.")

    @Option(name: .long, help: "The configuration file.")
    var config = "Config/shadowbridge.toml"

    func run() async throws {
        let settings = try loadConfiguration(config)
        for warning in settings.warnings { print("warning: \(warning)") }
        if let master = settings.master { print("master: \(master.domain) (shadows allowed from \(master.allowedShadows.joined(separator: ", ")))") }
        if let bridge = settings.bridge {
            print("bridge: \(bridge.domain)")
            for network in bridge.networks {
                for channel in network.channels {
                    print("  \(network.name) \(channel.irc) <-> \(channel.room)")
                }
            }
        }
        print("configuration OK")
    }
}

/// Waits for one of the given signals.
enum Signals {
    static func next(_ signals: [Int32]) async -> Int32 {
        let (stream, continuation) = AsyncStream<Int32>.makeStream()
        var sources: [any DispatchSourceSignal] = []
        for number in signals {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { continuation.yield(number) }
            source.resume()
            sources.append(source)
        }
        var iterator = stream.makeAsyncIterator()
        let received = await iterator.next() ?? 0
        for source in sources { source.cancel() }
        return received
    }
}
