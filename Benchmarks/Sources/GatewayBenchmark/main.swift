// Issue 8: Shadowbridge and biboumi side by side, on the same Prosody and the same ngircd, in
// one run. Each scenario runs against both gateways, alternating which goes first per round
// so that machine drift cancels; the table gives medians, p99s and ratios (ours / biboumi),
// and the JSON file every figure. Prosody's own MUC fanout to the same users is the ceiling.
//
//   bash Benchmarks/run gateways [rounds] [scenarios] [settings]
//
// scenarios: a comma-separated subset of storm,latency,throughput,fanout,large (default all); settings: of
// on,off,link (default all; link is off with our master-bridge link through Prosody). A subset
// is for profiling one thing; RESULTS.md records full runs.
//
// The measuring clients are raw sockets (Benchmarks/gateway_clients.py, Debian's python3).
import Foundation
import Lab

let arguments = CommandLine.arguments.dropFirst()
let rounds = arguments.first.flatMap(Int.init) ?? 2
let scenarios = Set((arguments.dropFirst().first ?? "storm,latency,throughput,fanout,large").split(separator: ",").map(String.init))
let settingKeys = Set((arguments.dropFirst(2).first ?? "on,off,link").split(separator: ",").map(String.init))
let latencyMessages = 500
let fanoutUsers = 50
let fanoutMessages = 50
let stormUsers = 500
let largeChannelUsers = 2000

let benchmarks = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let clients = benchmarks.appendingPathComponent("gateway_clients.py").path
let shadowbridge = ProcessInfo.processInfo.environment["SHADOWBRIDGE_BINARY"]
    ?? benchmarks.deletingLastPathComponent().appendingPathComponent(".build/release/shadowbridge").path

let masterDomain = "rooms.xmpp.test"
let bridgeDomain = "irc.xmpp.test"
let biboumiDomain = "biboumi.xmpp.test"

enum Gateway: String, CaseIterable {
    case shadowbridge, biboumi
}

struct Setting {
    var name: String
    var key: String
    /// biboumi records history; our master archives the room.
    var history: Bool
    /// How our master and bridge reach each other: "memory" (one process, as shipped) or
    /// "server" (through Prosody, as a master and a shadow on different machines would).
    var link = "memory"
}

let settings = [
    Setting(name: "as each ships (biboumi history on, our archive on)", key: "on", history: true),
    Setting(name: "history and archive off", key: "off", history: false),
    Setting(name: "history and archive off, our master-bridge link through Prosody", key: "link", history: false, link: "server"),
]

@MainActor func log(_ text: String) {
    FileHandle.standardError.write(Data(("[gateways] " + text + "\n").utf8))
}

/// Runs one client scenario; its JSON result.
@MainActor func runClients(_ scenario: String, _ settings: [String: Any]) throws -> [String: Any] {
    let json = String(decoding: try JSONSerialization.data(withJSONObject: settings), as: UTF8.self)
    let output = try Lab.commandOutput("/usr/bin/python3", [clients, scenario, json])
    guard let line = output.split(separator: "\n").last(where: { $0.hasPrefix("{") }),
        let result = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
    else { throw LabError("\(scenario): no result from the clients: \(output)") }
    return result
}

@MainActor func rss(_ pid: Int32) -> Int {
    guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
    else { return 0 }
    return Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]) ?? 0
}

let directory = try Lab.makeTemporaryDirectory(prefix: "gateways")
log("lab in \(directory.path)")
let prosody = try ProsodyServer.start(
    in: directory.appendingPathComponent("prosody"),
    components: [
        .init(domain: masterDomain, secret: "master-secret"), .init(domain: bridgeDomain, secret: "bridge-secret"),
        .init(domain: biboumiDomain, secret: "biboumi-secret"),
    ])
defer { prosody.stop() }
let ngircd = try NgircdServer.start(in: directory.appendingPathComponent("ngircd"), options: .init(maxConnectionsIP: 0, liftPenalties: true))
defer { ngircd.stop() }

/// Channel names per setting, round and gateway: fresh rooms and channels for every run.
@MainActor func channel(_ scenario: String, _ setting: Setting, _ round: Int, _ gateway: Gateway) -> String {
    "#\(scenario)\(setting.key)\(round)\(gateway == .shadowbridge ? "s" : "b")"
}

@MainActor func startShadowbridge(_ setting: Setting, in dir: URL) throws -> ManagedProcess {
    try FileManager.default.createDirectory(at: dir.appendingPathComponent("bridges"), withIntermediateDirectories: true)
    var mapping = """
        [network]
        name = "bench"
        servers = ["irc://127.0.0.1:\(ngircd.port)"]
        nick = "sbridge"
        # ngircd's penalties are lifted for this run, and biboumi's throttle is off: ours too.
        flood_burst = 10000
        flood_lines_per_second = 10000
        puppet_connections_per_second = 1000
        max_puppets = 1000

        """
    for scenario in ["big", "huge"] {
        let name = channel(scenario, setting, 0, .shadowbridge)
        mapping += "\n[[channel]]\nirc = \"\(name)\"\nroom = \"\(name.dropFirst())@\(masterDomain)\"\n"
    }
    for round in 1...rounds {
        for scenario in ["lat", "thr", "fan"] {
            let name = channel(scenario, setting, round, .shadowbridge)
            mapping += "\n[[channel]]\nirc = \"\(name)\"\nroom = \"\(name.dropFirst())@\(masterDomain)\"\n"
        }
    }
    try mapping.write(to: dir.appendingPathComponent("bridges/bench.toml"), atomically: true, encoding: .utf8)
    let config = """
        [xmpp]
        host = "127.0.0.1"
        port = \(prosody.componentPort)
        link = "\(setting.link)"

        [master]
        domain = "\(masterDomain)"
        secret = "master-secret"
        allowed_shadows = ["\(bridgeDomain)"]
        database = "\(dir.path)/master.sqlite"
        archive = \(setting.history)
        # The benchmark sends as fast as the gateways carry it; biboumi has no such limit.
        occupant_rate = 0
        shadow_rate = 0

        [bridge]
        domain = "\(bridgeDomain)"
        secret = "bridge-secret"
        mappings = "\(dir.appendingPathComponent("bridges").path)"
        database = "\(dir.path)/bridge.sqlite"

        [log]
        level = "warning"
        """
    try config.write(to: dir.appendingPathComponent("shadowbridge.toml"), atomically: true, encoding: .utf8)
    let process = try ManagedProcess(
        name: "shadowbridge", executable: shadowbridge, arguments: ["run", "--config", dir.appendingPathComponent("shadowbridge.toml").path],
        directory: dir, logFile: dir.appendingPathComponent("shadowbridge.log"))
    return process
}

@MainActor func startBiboumi(in dir: URL) throws -> ManagedProcess {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let config = """
        hostname=\(biboumiDomain)
        password=biboumi-secret
        xmpp_server_ip=127.0.0.1
        port=\(prosody.componentPort)
        admin=admin@\(prosody.domain)
        identd_port=0
        db_name=\(dir.path)/biboumi.sqlite
        policy_directory=\(dir.path)
        log_file=\(dir.path)/biboumi.log
        log_level=3
        """
    try config.write(to: dir.appendingPathComponent("biboumi.cfg"), atomically: true, encoding: .utf8)
    return try ManagedProcess(
        name: "biboumi", executable: try Lab.executable("biboumi", package: "biboumi"), arguments: [dir.appendingPathComponent("biboumi.cfg").path],
        directory: dir, logFile: dir.appendingPathComponent("biboumi.stdout"))
}

/// Every figure of the run: setting key -> figure -> gateway -> samples (one per round).
var figures: [String: [String: [String: [Double]]]] = [:]
var raw: [[String: Any]] = []

@MainActor func record(_ setting: Setting, _ figure: String, _ who: String, _ value: Double?) {
    guard let value else { return }
    figures[setting.key, default: [:]][figure, default: [:]][who, default: []].append(value)
}

@MainActor func number(_ any: Any?) -> Double? {
    (any as? NSNumber)?.doubleValue
}

/// Both gateways, freshly started for `setting`.
@MainActor func startGateways(_ setting: Setting) throws -> (ours: ManagedProcess, biboumi: ManagedProcess) {
    let ours = try startShadowbridge(setting, in: directory.appendingPathComponent("shadowbridge-\(setting.key)"))
    let biboumi = try startBiboumi(in: directory.appendingPathComponent("biboumi-\(setting.key)"))
    Thread.sleep(forTimeInterval: 4)
    guard ours.isRunning, biboumi.isRunning else { throw LabError("a gateway did not start; see \(directory.path)") }
    return (ours, biboumi)
}

/// What every client run against `gateway` needs: the servers, the gateway's PID (for its
/// RSS), the room address of `channel` on that gateway, and biboumi's database.
@MainActor func clientSettings(_ gateway: Gateway, _ setting: Setting, pid: Int32, channel: String) -> [String: Any] {
    var settings: [String: Any] = [
        "c2s_port": prosody.c2sPort, "domain": prosody.domain, "irc_port": ngircd.port, "history": setting.history, "pid": Int(pid),
        "channel": channel,
        "room": gateway == .shadowbridge ? "\(channel.dropFirst())@\(masterDomain)" : "\(channel)%127.0.0.1@\(biboumiDomain)",
    ]
    if gateway == .biboumi { settings["biboumi_db"] = directory.appendingPathComponent("biboumi-\(setting.key)/biboumi.sqlite").path }
    return settings
}

for setting in settings where settingKeys.contains(setting.key) {
    log("setting: \(setting.name)")
    var (ours, biboumi) = try startGateways(setting)
    let idle = [Gateway.shadowbridge: rss(ours.pid), .biboumi: rss(biboumi.pid)]
    record(setting, "RSS idle, MiB", Gateway.shadowbridge.rawValue, Double(idle[.shadowbridge]!) / 1024)
    record(setting, "RSS idle, MiB", Gateway.biboumi.rawValue, Double(idle[.biboumi]!) / 1024)

    // First, on the fresh processes (biboumi never gives memory back, so a later measurement
    // would reuse what earlier users left): 500 XMPP users join at once; RSS per occupant.
    for gateway in [Gateway.shadowbridge, .biboumi] where scenarios.contains("storm") {
        let pid = gateway == .shadowbridge ? ours.pid : biboumi.pid
        let storm = channel("big", setting, 0, gateway)
        log("\(gateway.rawValue): \(stormUsers) XMPP users join at once")
        var stormSettings = clientSettings(gateway, setting, pid: pid, channel: storm)
        stormSettings.merge(
            ["count": 5, "users": stormUsers, "user": "s\(setting.key)\(gateway == .shadowbridge ? "s" : "b")x", "irc_nick": "is\(setting.key)\(gateway == .shadowbridge ? "s" : "b")"]) { $1 }
        let result = try runClients("fanout", stormSettings)
        raw.append(["setting": setting.key, "gateway": gateway.rawValue, "scenario": "join storm", "result": result])
        record(setting, "\(stormUsers) joins, all self-presences, ms", gateway.rawValue, number(result["join_xmpp_ms"]))
        record(setting, "\(stormUsers) joins, all visible on IRC, ms", gateway.rawValue, number(result["join_irc_ms"]))
        if let before = number(result["rss_idle_kib"]), let after = number(result["rss_with_users_kib"]) {
            record(setting, "RSS per occupant (\(stormUsers) joined), KiB", gateway.rawValue, (after - before) / Double(stormUsers))
        }
        record(setting, "fanout to \(stormUsers), last recipient p50, ms", gateway.rawValue, number((result["to_last"] as? [String: Any])?["p50"]))
    }

    // The storm's 500 users leave a lot behind (quits to process, memory biboumi keeps):
    // the rounds get fresh processes and a quiet machine.
    if scenarios.contains("storm") {
        ours.stop()
        biboumi.stop()
        Thread.sleep(forTimeInterval: 5)
        (ours, biboumi) = try startGateways(setting)
    }

    for round in 1...rounds {
        let order: [Gateway] = round % 2 == 1 ? [.shadowbridge, .biboumi] : [.biboumi, .shadowbridge]
        for gateway in order {
            let pid = gateway == .shadowbridge ? ours.pid : biboumi.pid
            let tag = "\(setting.key)\(round)\(gateway == .shadowbridge ? "s" : "b")"

            Thread.sleep(forTimeInterval: 1)
            if scenarios.contains("latency") {
                let lat = channel("lat", setting, round, gateway)
                log("round \(round), \(gateway.rawValue): latency, \(latencyMessages) each way")
                var latencySettings = clientSettings(gateway, setting, pid: pid, channel: lat)
                latencySettings.merge(["count": latencyMessages, "user": "lat\(tag)", "xmpp_nick": "xl\(tag)", "irc_nick": "il\(tag)"]) { $1 }
                let latency = try runClients("latency", latencySettings)
                raw.append(["setting": setting.key, "round": round, "gateway": gateway.rawValue, "scenario": "latency", "result": latency])
                for (key, figure) in [("irc_to_xmpp", "IRC -> XMPP"), ("xmpp_to_irc", "XMPP -> IRC")] {
                    let summary = latency[key] as? [String: Any]
                    record(setting, "latency \(figure) p50, ms", gateway.rawValue, number(summary?["p50"]))
                    record(setting, "latency \(figure) p99, ms", gateway.rawValue, number(summary?["p99"]))
                    record(setting, "CPU per line \(figure), µs", gateway.rawValue, number(summary?["cpu_ms_per_line"]).map { $0 * 1000 })
                }
            }
            if scenarios.contains("throughput") {
                let thr = channel("thr", setting, round, gateway)
                log("round \(round), \(gateway.rawValue): throughput, offered rates stepped up each way")
                var throughputSettings = clientSettings(gateway, setting, pid: pid, channel: thr)
                throughputSettings.merge(["user": "thr\(tag)", "xmpp_nick": "xt\(tag)", "irc_nick": "it\(tag)"]) { $1 }
                let throughput = try runClients("throughput", throughputSettings)
                raw.append(["setting": setting.key, "round": round, "gateway": gateway.rawValue, "scenario": "throughput", "result": throughput])
                for (key, figure) in [("irc_to_xmpp", "IRC -> XMPP"), ("xmpp_to_irc", "XMPP -> IRC")] {
                    record(setting, "throughput \(figure), lines/s held (2 s, none lost)", gateway.rawValue, number((throughput[key] as? [String: Any])?["best"]))
                }
            }
            guard scenarios.contains("fanout") else { continue }

            let fan = channel("fan", setting, round, gateway)
            log("round \(round), \(gateway.rawValue): fanout to \(fanoutUsers) XMPP users")
            var fanoutSettings = clientSettings(gateway, setting, pid: pid, channel: fan)
            fanoutSettings.merge(["count": fanoutMessages, "users": fanoutUsers, "user": "f\(tag)x", "irc_nick": "if\(tag)"]) { $1 }
            let fanout = try runClients("fanout", fanoutSettings)
            raw.append(["setting": setting.key, "round": round, "gateway": gateway.rawValue, "scenario": "fanout", "result": fanout])
            let toLast = fanout["to_last"] as? [String: Any]
            record(setting, "fanout to \(fanoutUsers), last recipient p50, ms", gateway.rawValue, number(toLast?["p50"]))
            record(setting, "fanout to \(fanoutUsers), last recipient p99, ms", gateway.rawValue, number(toLast?["p99"]))
            record(setting, "\(fanoutUsers) joins, all self-presences, ms", gateway.rawValue, number(fanout["join_xmpp_ms"]))
            record(setting, "\(fanoutUsers) joins, all visible on IRC, ms", gateway.rawValue, number(fanout["join_irc_ms"]))
        }
        if scenarios.contains("throughput") {
            // The ceiling for throughput: Prosody's MUC routing one XMPP user's lines to another.
            log("round \(round), Prosody MUC: throughput, offered rates stepped up")
            let ceiling = try runClients(
                "throughput",
                [
                    "c2s_port": prosody.c2sPort, "domain": prosody.domain, "room": "thr\(setting.key)\(round)@\(prosody.mucDomain)",
                    "user": "thr\(setting.key)\(round)p", "xmpp_nick": "xt", "xmpp_only": true,
                ])
            raw.append(["setting": setting.key, "round": round, "gateway": "prosody-muc", "scenario": "throughput", "result": ceiling])
            for figure in ["IRC -> XMPP", "XMPP -> IRC"] {
                record(setting, "throughput \(figure), lines/s held (2 s, none lost)", "prosody", number((ceiling["xmpp_to_xmpp"] as? [String: Any])?["best"]))
            }
        }
        guard scenarios.contains("fanout") else { continue }
        // The ceiling: Prosody's own MUC, one XMPP sender to the same number of XMPP users.
        log("round \(round), Prosody MUC: fanout to \(fanoutUsers) XMPP users")
        let ceiling = try runClients(
            "fanout",
            [
                "c2s_port": prosody.c2sPort, "domain": prosody.domain, "room": "fan\(setting.key)\(round)@\(prosody.mucDomain)", "count": fanoutMessages,
                "users": fanoutUsers, "user": "f\(setting.key)\(round)p", "xmpp_sender": true,
            ])
        raw.append(["setting": setting.key, "round": round, "gateway": "prosody-muc", "scenario": "fanout", "result": ceiling])
        let toLast = ceiling["to_last"] as? [String: Any]
        record(setting, "fanout to \(fanoutUsers), last recipient p50, ms", "prosody", number(toLast?["p50"]))
        record(setting, "fanout to \(fanoutUsers), last recipient p99, ms", "prosody", number(toLast?["p99"]))
    }
    // A large IRC channel: its users join first, then one XMPP user joins through the gateway.
    for gateway in [Gateway.shadowbridge, .biboumi] where scenarios.contains("large") {
        let pid = gateway == .shadowbridge ? ours.pid : biboumi.pid
        let tag = "\(setting.key)\(gateway == .shadowbridge ? "s" : "b")"
        log("\(gateway.rawValue): \(largeChannelUsers) IRC users in one channel, then an XMPP user joins")
        var largeSettings = clientSettings(gateway, setting, pid: pid, channel: channel("huge", setting, 0, gateway))
        // ngircd's nicks are at most 9 characters: "hfs1999".
        largeSettings.merge(["users": largeChannelUsers, "user": "huge\(tag)", "xmpp_nick": "xh\(tag)", "irc_nick": "h\(setting.key == "on" ? "n" : setting.key == "off" ? "f" : "l")\(gateway == .shadowbridge ? "s" : "b")"]) { $1 }
        let result = try runClients("large_channel", largeSettings)
        raw.append(["setting": setting.key, "gateway": gateway.rawValue, "scenario": "large channel", "result": result])
        record(setting, "\(largeChannelUsers)-user IRC channel, XMPP join, ms", gateway.rawValue, number(result["join_ms"]))
        record(setting, "\(largeChannelUsers)-user IRC channel, occupants shown", gateway.rawValue, number(result["occupants_shown"]))
        if let after = number(result["rss_after_kib"]) {
            record(setting, "\(largeChannelUsers)-user IRC channel, RSS after the join, MiB", gateway.rawValue, after / 1024)
        }
    }
    ours.stop()
    biboumi.stop()
}

@MainActor func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

@MainActor func format(_ value: Double) -> String {
    value.isNaN ? "-" : String(format: value >= 100 ? "%.0f" : value >= 10 ? "%.1f" : "%.2f", value)
}

var table = ""
for setting in settings where settingKeys.contains(setting.key) {
    table += "\n### \(setting.name)\n\n| figure (median of \(rounds) rounds) | Shadowbridge | biboumi | ours / biboumi | Prosody MUC |\n|---|---|---|---|---|\n"
    for (figure, byGateway) in (figures[setting.key] ?? [:]).sorted(by: { $0.key < $1.key }) {
        let ours = median(byGateway["shadowbridge"] ?? [])
        let theirs = median(byGateway["biboumi"] ?? [])
        let prosodyFigure = median(byGateway["prosody"] ?? [])
        table += "| \(figure) | \(format(ours)) | \(format(theirs)) | \(format(ours / theirs)) | \(format(prosodyFigure)) |\n"
    }
}
print(table)
let output = directory.deletingLastPathComponent().appendingPathComponent("gateways-\(Int(Date().timeIntervalSince1970)).json")
let document: [String: Any] = ["rounds": rounds, "latency_messages": latencyMessages, "fanout_users": fanoutUsers, "fanout_messages": fanoutMessages, "runs": raw]
try JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys]).write(to: output)
print("every figure: \(output.path)")
Lab.removeUnlessKept(directory)
