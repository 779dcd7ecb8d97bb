import Foundation
import TOMLKit
import XMPPCore

/// Everything `Config/shadowbridge.toml` and the mapping files say (DESIGN.md §4).
public struct ShadowbridgeConfiguration: Sendable {
    public struct XMPPServer: Sendable {
        public var host: String
        public var port: Int
        /// How a master and a bridge in this one process exchange link stanzas.
        public var link: LinkTransport = .memory
        /// Seconds of silence on a link before a ping (PROTOCOL.md §3 G); three unanswered
        /// pings are a split.
        public var linkPingInterval: Double = 60
    }

    /// `memory`: handed over in process, no serialization and no trip through the XMPP server
    /// (DESIGN.md §1); `server`: through the XMPP server, as between two processes.
    public enum LinkTransport: String, Sendable {
        case memory
        case server
    }

    public enum RoomCreation: String, Sendable {
        case onFederation = "on-federation"
        case anyone
        case admins
    }

    public struct Master: Sendable {
        public var domain: String
        public var secret: String
        public var allowedShadows: [String]
        public var createRooms: RoomCreation
        /// Rooms that exist from the start (local parts).
        public var rooms: [String]
        /// The SQLite file for rooms and their archive; nil keeps state in memory only.
        public var database: String?
        /// Rooms keep a message archive (MAM) unless a room's owner turns it off.
        public var archive: Bool = true
        /// Archived messages older than this many days are deleted; 0 keeps them forever.
        public var archiveRetentionDays: Int = 365
        /// What the master keeps for a shadow's `resync` (PROTOCOL.md §3 D): this many room
        /// stanzas, none older than `replaySeconds`.
        public var replayStanzas: Int = 500
        public var replaySeconds: Double = 600
        /// Seconds a split shadow's occupants stay in the room waiting for it to come back
        /// (a bridge restart); 0 removes them at the split.
        public var splitGrace: Double = 30
        /// How fast one XMPP client may send messages and presence to a room (per second,
        /// and at once); rate 0: no limit.
        public var occupantRate: Double = 2
        public var occupantBurst: Int = 10
        /// How fast one shadow node may submit messages for all its users; rate 0: no limit.
        public var shadowRate: Double = 50
        public var shadowBurst: Int = 600
    }

    public struct Bridge: Sendable {
        public var domain: String
        public var secret: String
        public var mappingsDirectory: String
        public var networks: [Network]
        /// Where the mappings were named, and the master domain they were checked against,
        /// so `reloadNetworks()` reads them again the same way.
        /// Where the ident server listens (`identd = "0.0.0.0:113"`), if anywhere.
        public var identd: (host: String, port: Int)?
        /// The SQLite file for where each shadow room stands in its master room's sequence;
        /// nil keeps none (a restart starts afresh).
        public var database: String?
        var configFile: String
        var mappingsLine: Int?
        var masterDomain: String?

        /// Reads the mapping files again (SIGHUP, the reload command). Throws, changing
        /// nothing, when any file is broken.
        public func reloadNetworks() throws(ConfigurationError) -> [Network] {
            try ShadowbridgeConfiguration.loadMappings(directory: mappingsDirectory, configFile: configFile, line: mappingsLine, masterDomain: masterDomain)
        }
    }

    public var xmpp: XMPPServer
    public var master: Master?
    public var bridge: Bridge?
    public var logLevel: String
    /// Where the Prometheus endpoint listens (`[metrics] listen`), if anywhere.
    public var metricsListen: (host: String, port: Int)?
    /// Bare JIDs allowed to run the ad-hoc commands (`[admin] jids`).
    public var admins: [JID]
    /// Warnings to print at start (inline secrets, for example).
    public var warnings: [String]
}

/// One IRC network and its channel mappings: one file under `bridges/`.
public struct Network: Sendable {
    public struct Server: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var tls: Bool
        public var description: String { "\(tls ? "ircs" : "irc")://\(host):\(port)" }
    }

    public struct TLS: Sendable, Hashable {
        public var verify = true
        public var caFile: String?
        public var pinnedSHA256: [UInt8]?
        public var certificateFile: String?
        public var keyFile: String?
    }

    public struct SASL: Sendable, Hashable {
        public enum Mechanism: String, Sendable {
            case plain, external
        }
        public var mechanism: Mechanism
        public var account: String
        /// PLAIN only. Never logged, never printed by `check`.
        public var password: String?
        var passwordInline: Bool
    }

    public struct WebIRC: Sendable, Hashable {
        /// Never logged, never printed by `check`.
        public var password: String
        public var gateway: String
        var passwordInline: Bool
    }

    public enum XMPPUsers: String, Sendable {
        case puppet
        case relay
    }

    /// How room events are shown on IRC, and IRC users in the room (PROTOCOL.md §4-§5).
    public struct Translation: Sendable, Equatable {
        /// Appended once to an IRC user's nick that the room has already (flow I): `alice|irc`.
        public var collisionSuffix = "|irc"
        /// Relayed occupants' joins and leaves as a NOTICE in the channel (relay mode).
        public var relayAnnounceJoins = false
        /// A zero-width space inside a relayed `<nick>`, so the line does not highlight an IRC
        /// user of the same nick.
        public var relayZeroWidthSpace = false
        /// XEP-0308 corrections: a new line marked as a correction, or nothing.
        public var corrections = Corrections.line
        /// XEP-0444 reactions as a short ACTION.
        public var reactions = true
        /// Room roles as channel status for puppets, where the bridge holds ops: moderator +o,
        /// participant +v.
        public var rolesAsModes = false
        /// Seconds an IRC user lost to a netsplit stays in the room waiting for the netjoin;
        /// 0 shows the split at once, as a plain quit.
        public var netsplitGrace: Double = 30
        /// IRC lines one XMPP message may become (`max_lines`); the rest is cut with a note.
        /// 0: no limit.
        public var maxLines = 0

        public enum Corrections: String, Sendable {
            case line
            case drop
        }

        public init() {}
    }

    public struct Channel: Sendable {
        public var irc: String
        public var room: JID
        /// Where it was written, for errors found later.
        public var file: String
        public var line: Int?
    }

    public var name: String
    public var file: String
    var nameLine: Int?
    public var servers: [Server]
    public var nick: String
    public var password: String?
    public var encodingFallback: String
    public var xmppUsers: XMPPUsers
    public var puppetNick: String
    public var maxPuppets: Int
    /// Puppets set the server's deaf user mode where it has one (`deaf_puppets`); a reload
    /// that changes it applies to puppets that connect afterwards.
    public var deafPuppets = true
    /// When an occupant's puppet joins IRC (`puppet_joins`): with the occupant, or at its first
    /// line; a reload that changes it applies to occupants who join afterwards.
    public var puppetJoins = PuppetJoins.eager
    /// Masks (`nick!user@host`) of another bridge's puppets on this network
    /// (`other_bridge_masks`, PROTOCOL.md flow J): their users reach the room another way, so
    /// they never become occupants and their lines are not relayed.
    public var otherBridgeMasks: [String] = []
    /// Another Shadowbridge's puppets are known by their realname under extended-join
    /// (`other_shadowbridges`); off by default, since anyone can choose a realname.
    public var otherShadowbridges = false

    public enum PuppetJoins: String, Sendable {
        case eager, lazy
    }
    /// Flood control for every connection to this network: lines at once, then per second.
    public var floodBurst: Int
    public var floodLinesPerSecond: Double
    /// New puppet connections per second at most, so a join storm does not look like a
    /// connection flood to the network.
    public var puppetConnectionsPerSecond: Double
    /// The local address (or prefix: one address per puppet) connections come from.
    public var bindAddress: BindAddress?
    /// How `ircs://` servers are secured (every connection to this network).
    public var tls: TLS
    /// SASL for the bridge's own connection; puppets do not log in.
    public var sasl: SASL?
    /// WEBIRC on every connection, where the network trusts this bridge as a gateway.
    public var webirc: WebIRC?
    public var channels: [Channel]
    public var translation = Translation()
    /// The server password was written in the mapping file rather than in password_file.
    var passwordInline = false
}

extension ShadowbridgeConfiguration {
    /// Reads the config file and every mapping file it names. Relative paths are relative to
    /// the working directory.
    public static func load(path: String) throws(ConfigurationError) -> ShadowbridgeConfiguration {
        let document = try TOMLDocument(path: path, text: readText(path, file: path, key: nil))
        var root = TableReader(document: document, table: document.table, path: "")
        var warnings: [String] = []

        guard let xmppTable = try root.table("xmpp") else {
            throw ConfigurationError(file: path, key: "xmpp", message: "is required: the XMPP server both components connect to")
        }
        var xmppReader = TableReader(document: document, table: xmppTable, path: "xmpp")
        var xmpp = XMPPServer(host: try xmppReader.string("host") ?? "127.0.0.1", port: try xmppReader.int("port") ?? 5347)
        if let raw = try xmppReader.string("link") {
            guard let link = LinkTransport(rawValue: raw) else {
                throw document.error("xmpp.link", "must be \"memory\" (master and bridge in this process talk directly) or \"server\" (through the XMPP server)")
            }
            xmpp.link = link
        }
        if let interval = try xmppReader.double("link_ping_interval") {
            guard interval > 0, interval <= 3600 else { throw document.error("xmpp.link_ping_interval", "must be a number of seconds above 0 and at most 3600") }
            xmpp.linkPingInterval = interval
        }
        try xmppReader.rejectUnknownKeys()

        var master: Master?
        if let table = try root.table("master") {
            var reader = TableReader(document: document, table: table, path: "master")
            let domain = try domainValue(&reader, document: document)
            let secret = try secretValue(&reader, document: document, warnings: &warnings)
            guard let allowed = try reader.strings("allowed_shadows") else {
                throw ConfigurationError(
                    file: path, line: document.line(of: "master.domain"), key: "master.allowed_shadows",
                    message: "is required: the bridge domains allowed to federate (may be [])")
            }
            let createRaw = try reader.string("create_rooms") ?? RoomCreation.onFederation.rawValue
            guard let create = RoomCreation(rawValue: createRaw) else {
                throw document.error("master.create_rooms", "must be \"on-federation\", \"anyone\" or \"admins\"")
            }
            var rooms: [String] = []
            for (index, roomTable) in try reader.tables("room").enumerated() {
                var roomReader = TableReader(document: document, table: roomTable, path: "master.room[\(index)]")
                let name = try roomReader.requiredString("name")
                guard JID(local: name, domain: domain).local == name.lowercased(), JID("\(name)@\(domain)") != nil else {
                    throw document.error("master.room[\(index)].name", "is not a valid room name")
                }
                rooms.append(name.lowercased())
                try roomReader.rejectUnknownKeys()
            }
            let database = try reader.string("database")
            if database == nil {
                warnings.append("\(path): master.database is not set: rooms, their configuration and archive last only until the process stops")
            }
            let archive = try reader.bool("archive") ?? true
            let retention = try reader.int("archive_retention_days") ?? 365
            guard retention >= 0 else { throw document.error("master.archive_retention_days", "must be 0 (keep forever) or a number of days") }
            let replayStanzas = try reader.int("replay_stanzas") ?? 500
            guard (0...100_000).contains(replayStanzas) else { throw document.error("master.replay_stanzas", "must be between 0 and 100000") }
            let replaySeconds = try reader.double("replay_seconds") ?? 600
            guard replaySeconds >= 0 else { throw document.error("master.replay_seconds", "must be 0 or a number of seconds") }
            let splitGrace = try reader.double("split_grace") ?? 30
            guard (0...3600).contains(splitGrace) else { throw document.error("master.split_grace", "must be between 0 and 3600 seconds") }
            let (occupantRate, occupantBurst) = try rateLimit(&reader, "occupant", rate: 2, burst: 10, document: document)
            let (shadowRate, shadowBurst) = try rateLimit(&reader, "shadow", rate: 50, burst: 600, document: document)
            try reader.rejectUnknownKeys()
            master = Master(
                domain: domain, secret: secret, allowedShadows: allowed, createRooms: create, rooms: rooms, database: database,
                archive: archive, archiveRetentionDays: retention, replayStanzas: replayStanzas, replaySeconds: replaySeconds,
                splitGrace: splitGrace, occupantRate: occupantRate, occupantBurst: occupantBurst, shadowRate: shadowRate, shadowBurst: shadowBurst)
        }

        var bridge: Bridge?
        if let table = try root.table("bridge") {
            var reader = TableReader(document: document, table: table, path: "bridge")
            let domain = try domainValue(&reader, document: document)
            let secret = try secretValue(&reader, document: document, warnings: &warnings)
            let mappings = try reader.string("mappings") ?? "bridges"
            let identd = try reader.string("identd").map { text throws(ConfigurationError) in try hostAndPort(text, key: "bridge.identd", document: document) }
            let database = try reader.string("database")
            if database == nil {
                warnings.append("\(path): bridge.database is not set: after a restart the bridge cannot fetch the room lines it missed meanwhile")
            }
            try reader.rejectUnknownKeys()
            let line = document.line(of: "bridge.mappings")
            let networks = try loadMappings(directory: mappings, configFile: path, line: line, masterDomain: master?.domain)
            for network in networks where network.passwordInline {
                warnings.append("\(network.file): network.password is written inline; use password_file outside tests and demos")
            }
            for network in networks where network.webirc?.passwordInline == true {
                warnings.append("\(network.file): network.webirc_password is written inline; use webirc_password_file outside tests and demos")
            }
            for network in networks where network.sasl?.passwordInline == true {
                warnings.append("\(network.file): network.sasl_password is written inline; use sasl_password_file outside tests and demos")
            }
            for network in networks where !network.tls.verify && network.tls.pinnedSHA256 == nil {
                warnings.append("\(network.file): network.tls_verify is false: anyone on the path can read and change this network's traffic")
            }
            bridge = Bridge(
                domain: domain, secret: secret, mappingsDirectory: mappings, networks: networks, identd: identd, database: database,
                configFile: path, mappingsLine: line, masterDomain: master?.domain)
        }

        var logLevel = "info"
        if let table = try root.table("log") {
            var reader = TableReader(document: document, table: table, path: "log")
            logLevel = try reader.string("level") ?? "info"
            guard ["trace", "debug", "info", "notice", "warning", "error", "critical"].contains(logLevel) else {
                throw document.error("log.level", "must be one of trace, debug, info, notice, warning, error, critical")
            }
            try reader.rejectUnknownKeys()
        }
        var metricsListen: (host: String, port: Int)?
        if let table = try root.table("metrics") {
            var reader = TableReader(document: document, table: table, path: "metrics")
            if let listen = try reader.string("listen") {
                metricsListen = try hostAndPort(listen, key: "metrics.listen", document: document)
            }
            try reader.rejectUnknownKeys()
        }
        var admins: [JID] = []
        if let table = try root.table("admin") {
            var reader = TableReader(document: document, table: table, path: "admin")
            for raw in try reader.strings("jids") ?? [] {
                guard let jid = JID(raw), jid.local != nil, jid.resource == nil else {
                    throw document.error("admin.jids", "\(raw) is not a bare JID (user@domain)")
                }
                admins.append(jid)
            }
            try reader.rejectUnknownKeys()
        }
        try root.rejectUnknownKeys()
        if master == nil && bridge == nil {
            throw ConfigurationError(file: path, message: "neither [master] nor [bridge] is configured: nothing to run")
        }
        // One file for both would mix two stores' tables and migration histories, and make each
        // store's writes wait on the other's.
        if let one = master?.database, let other = bridge?.database,
            URL(fileURLWithPath: one).standardizedFileURL.path == URL(fileURLWithPath: other).standardizedFileURL.path
        {
            throw ConfigurationError(
                file: path, line: document.line(of: "bridge.database"), key: "bridge.database",
                message: "names the same file as master.database: the master and the bridge each need their own")
        }
        return ShadowbridgeConfiguration(xmpp: xmpp, master: master, bridge: bridge, logLevel: logLevel, metricsListen: metricsListen, admins: admins, warnings: warnings)
    }

    /// Reads every `*.toml` in `directory`, sorted by name.
    static func loadMappings(directory: String, configFile: String, line: Int?, masterDomain: String?) throws(ConfigurationError) -> [Network] {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".toml") }.sorted()
        } catch {
            throw ConfigurationError(file: configFile, line: line, key: "bridge.mappings", message: "cannot read the directory \(directory)")
        }
        var networks: [Network] = []
        var errors: [ConfigurationError] = []
        for file in files {
            // Every file is read, so one pass reports every broken file.
            let network: Network
            do {
                network = try Network.load(path: directory + "/" + file, masterDomain: masterDomain)
            } catch {
                errors.append(contentsOf: error.all)
                continue
            }
            if let other = networks.first(where: { $0.name == network.name }) {
                errors.append(ConfigurationError(
                    file: network.file, line: network.nameLine, key: "network.name",
                    message: "\(network.name) is already the name of the network in \(other.file)"))
                continue
            }
            networks.append(network)
        }
        if var first = errors.first {
            first.more = Array(errors.dropFirst())
            throw first
        }
        return networks
    }

    /// `<name>_rate` (per second; 0: no limit) and `<name>_burst` (at once) of the master.
    private static func rateLimit(
        _ reader: inout TableReader, _ name: String, rate: Double, burst: Int, document: TOMLDocument
    ) throws(ConfigurationError) -> (Double, Int) {
        let perSecond = try reader.double(name + "_rate") ?? rate
        guard perSecond == 0 || (0.01...1_000_000).contains(perSecond) else {
            throw document.error("master.\(name)_rate", "must be 0 (no limit) or 0.01 to 1000000 a second")
        }
        let atOnce = try reader.int(name + "_burst") ?? burst
        guard (1...1_000_000).contains(atOnce) else { throw document.error("master.\(name)_burst", "must be between 1 and 1000000") }
        return (perSecond, atOnce)
    }

    private static func domainValue(_ reader: inout TableReader, document: TOMLDocument) throws(ConfigurationError) -> String {
        let domain = try reader.requiredString("domain")
        guard let jid = JID(domain), jid.local == nil, jid.resource == nil else {
            throw document.error(reader.keyPath("domain"), "\(domain) is not a domain")
        }
        return jid.domain
    }

    private static func secretValue(_ reader: inout TableReader, document: TOMLDocument, warnings: inout [String]) throws(ConfigurationError) -> String {
        guard let secret = try reader.secret("secret") else {
            throw ConfigurationError(file: document.path, key: reader.keyPath("secret_file"), message: "is required (or secret, for tests and demos)")
        }
        if secret.inline {
            warnings.append("\(document.path): \(reader.keyPath("secret")) is written inline; use secret_file outside tests and demos")
        }
        return secret.value
    }

    /// The most a configuration, mapping, secret or certificate file may hold. A path naming
    /// something else by mistake (`/dev/zero`, a FIFO, a log) is an error, never a read without
    /// end or a wait (a reload runs on the thread every socket shares).
    static let maximumFileBytes = 1 << 20

    static func readText(_ path: String, file: String, key: String?, line: Int? = nil) throws(ConfigurationError) -> String {
        func mistake(_ message: String) -> ConfigurationError {
            ConfigurationError(file: file, line: line, key: key, message: message)
        }
        let unreadable = mistake(key == nil ? "cannot read the file" : "cannot read \(path)")
        let tooLarge = mistake("\(path) is larger than 1 MiB: not a file this setting can name")
        // Non-blocking, so that opening a FIFO does not wait for a writer.
        let descriptor = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else { throw unreadable }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        var status = stat()
        guard fstat(descriptor, &status) == 0 else { throw unreadable }
        guard status.st_mode & S_IFMT == S_IFREG else {
            throw mistake("\(path) is not a regular file")
        }
        guard status.st_size <= maximumFileBytes else { throw tooLarge }
        let data: Data
        do {
            data = try handle.read(upToCount: maximumFileBytes + 1) ?? Data()
        } catch {
            throw unreadable
        }
        // The size can change between the two looks.
        guard data.count <= maximumFileBytes else { throw tooLarge }
        guard let text = String(data: data, encoding: .utf8) else { throw mistake("\(path) is not UTF-8 text") }
        return text
    }
}

extension Network {
    static func load(path: String, masterDomain: String?) throws(ConfigurationError) -> Network {
        let document = try TOMLDocument(path: path, text: ShadowbridgeConfiguration.readText(path, file: path, key: nil))
        var root = TableReader(document: document, table: document.table, path: "")
        guard let networkTable = try root.table("network") else {
            throw ConfigurationError(file: path, key: "network", message: "is required: every mapping file describes one IRC network")
        }
        var reader = TableReader(document: document, table: networkTable, path: "network")
        let name = try reader.requiredString("name")
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == ".") }) else {
            throw document.error("network.name", "must be letters, digits, '-', '_' or '.' (it becomes part of room addresses)")
        }
        guard let serverStrings = try reader.strings("servers"), !serverStrings.isEmpty else {
            throw ConfigurationError(file: path, line: document.line(of: "network._"), key: "network.servers", message: "is required: at least one irc:// or ircs:// address")
        }
        var servers: [Server] = []
        for s in serverStrings {
            guard let server = Server(parsing: s) else {
                throw document.error("network.servers", "\(s) is not an irc://host:port or ircs://host:port address")
            }
            servers.append(server)
        }
        let nick = try reader.requiredString("nick")
        let password = try reader.secret("password")
        let fallback = try reader.string("encoding_fallback") ?? "cp1252"
        guard ["cp1252", "latin-1"].contains(fallback) else {
            throw document.error("network.encoding_fallback", "must be cp1252 or latin-1")
        }
        let usersRaw = try reader.string("xmpp_users") ?? "puppet"
        guard let users = XMPPUsers(rawValue: usersRaw) else {
            throw document.error("network.xmpp_users", "must be \"puppet\" or \"relay\"")
        }
        var translation = Translation()
        if let suffix = try reader.string("collision_suffix") {
            guard !suffix.isEmpty, suffix.count <= 16, !suffix.contains(where: { $0.isWhitespace || $0.isNewline || $0 == "\0" }) else {
                throw document.error("network.collision_suffix", "must be 1 to 16 characters without spaces")
            }
            translation.collisionSuffix = suffix
        }
        translation.relayAnnounceJoins = try reader.bool("relay_announce_joins") ?? false
        translation.relayZeroWidthSpace = try reader.bool("relay_zero_width_space") ?? false
        if let corrections = try reader.string("corrections") {
            guard let parsed = Translation.Corrections(rawValue: corrections) else {
                throw document.error("network.corrections", "must be \"line\" or \"drop\"")
            }
            translation.corrections = parsed
        }
        translation.reactions = try reader.bool("reactions") ?? true
        translation.rolesAsModes = try reader.bool("roles_as_modes") ?? false
        translation.netsplitGrace = try reader.double("netsplit_grace") ?? 30
        guard translation.netsplitGrace >= 0, translation.netsplitGrace <= 3600 else {
            throw document.error("network.netsplit_grace", "must be 0 to 3600 seconds")
        }
        translation.maxLines = try reader.int("max_lines") ?? 0
        guard translation.maxLines == 0 || translation.maxLines >= 2 else {
            throw document.error("network.max_lines", "must be 0 (no limit) or at least 2")
        }
        let template = try reader.string("puppet_nick") ?? "{nick}"
        guard template.contains("{nick}") else { throw document.error("network.puppet_nick", "must contain {nick}") }
        let maxPuppets = try reader.int("max_puppets") ?? 500
        guard maxPuppets >= 0 else { throw document.error("network.max_puppets", "must be 0 or more") }
        let deafPuppets = try reader.bool("deaf_puppets") ?? true
        let otherBridgeMasks = try reader.strings("other_bridge_masks") ?? []
        for mask in otherBridgeMasks where !ShadowbridgeConfiguration.isMask(mask) {
            throw document.error("network.other_bridge_masks", "\(mask) is not a nick!user@host mask")
        }
        let otherShadowbridges = try reader.bool("other_shadowbridges") ?? false
        let joinsRaw = try reader.string("puppet_joins") ?? "eager"
        guard let puppetJoins = Network.PuppetJoins(rawValue: joinsRaw) else {
            throw document.error("network.puppet_joins", "must be \"eager\" or \"lazy\"")
        }
        let admission = try reader.double("puppet_connections_per_second") ?? 5
        guard admission > 0 else { throw document.error("network.puppet_connections_per_second", "must be more than 0") }
        let floodBurst = try reader.int("flood_burst") ?? 5
        guard floodBurst >= 1 else { throw document.error("network.flood_burst", "must be at least 1") }
        let floodRate = try reader.double("flood_lines_per_second") ?? 2
        guard floodRate > 0 else { throw document.error("network.flood_lines_per_second", "must be more than 0") }
        var bind: BindAddress?
        if let text = try reader.string("bind_address") {
            guard let parsed = BindAddress(parsing: text) else {
                throw document.error("network.bind_address", "\(text) is not an IPv4 or IPv6 address, or a prefix (address/length) leaving at least 8 bits for hosts")
            }
            bind = parsed
        }
        let tls = try TLS.load(&reader, document: document, path: path, servers: servers)
        let sasl = try SASL.load(&reader, document: document, nick: nick, tls: tls, servers: servers)
        let webircGateway = try reader.string("webirc_gateway")
        var webirc: WebIRC?
        if let password = try reader.secret("webirc_password") {
            let gateway = webircGateway ?? "shadowbridge"
            guard !password.value.isEmpty, !password.value.hasPrefix(":"), !password.value.contains(where: { $0 == " " || $0.isNewline || $0 == "\0" }) else {
                throw document.error("network.webirc_password", "must be one word (no spaces, line breaks or leading ':')")
            }
            guard !gateway.isEmpty, !gateway.hasPrefix(":"), !gateway.contains(where: { $0 == " " || $0.isNewline || $0 == "\0" }) else {
                throw document.error("network.webirc_gateway", "must be one word (no spaces, line breaks or leading ':')")
            }
            webirc = WebIRC(password: password.value, gateway: gateway, passwordInline: password.inline)
        } else if webircGateway != nil {
            throw document.error("network.webirc_gateway", "needs webirc_password_file (or webirc_password)")
        }
        try reader.rejectUnknownKeys()

        var channels: [Channel] = []
        for (index, table) in try root.tables("channel").enumerated() {
            var channelReader = TableReader(document: document, table: table, path: "channel[\(index)]")
            let irc = try channelReader.requiredString("irc")
            guard let first = irc.first, "#&+!".contains(first), irc.count > 1,
                !irc.contains(where: { $0 == " " || $0 == "," || $0 == "\u{7}" || $0.isNewline })
            else {
                throw document.error("channel[\(index)].irc", "\(irc) is not an IRC channel name")
            }
            if let bad = irc.first(where: { "\"&'/:<>@".contains($0) }) {
                // These need XEP-0106 escaping in the shadow room's address, not done yet.
                throw document.error("channel[\(index)].irc", "\(irc): channel names with '\(bad)' are not supported yet (XEP-0106 escaping)")
            }
            let roomString = try channelReader.requiredString("room")
            guard let room = JID(roomString), room.local != nil, room.resource == nil else {
                throw document.error("channel[\(index)].room", "\(roomString) is not a room address (name@domain)")
            }
            if let masterDomain, room.domain != masterDomain {
                throw document.error("channel[\(index)].room", "\(roomString) is not on the master's domain \(masterDomain)")
            }
            try channelReader.rejectUnknownKeys()
            if let other = channels.first(where: { $0.room == room }) {
                throw document.error("channel[\(index)].room", "\(room) is already mapped from \(other.irc) on this network: one IRC user would be two occupants")
            }
            if let other = channels.first(where: { $0.irc.lowercased() == irc.lowercased() }) {
                throw document.error("channel[\(index)].irc", "\(irc) is already mapped to \(other.room) in this file")
            }
            channels.append(Channel(irc: irc, room: room, file: path, line: document.line(of: "channel[\(index)].irc")))
        }
        try root.rejectUnknownKeys()
        var network = Network(
            name: name, file: path, nameLine: document.line(of: "network.name"), servers: servers, nick: nick, password: password?.value, encodingFallback: fallback, xmppUsers: users,
            puppetNick: template, maxPuppets: maxPuppets, floodBurst: floodBurst, floodLinesPerSecond: floodRate,
            puppetConnectionsPerSecond: admission, bindAddress: bind, tls: tls, sasl: sasl, webirc: webirc, channels: channels,
            translation: translation, passwordInline: password?.inline == true)
        network.deafPuppets = deafPuppets
        network.puppetJoins = puppetJoins
        network.otherBridgeMasks = otherBridgeMasks
        network.otherShadowbridges = otherShadowbridges
        return network
    }
}

extension ShadowbridgeConfiguration {
    /// `nick!user@host` with each part non-empty and no spaces: what an IRC mask looks like.
    static func isMask(_ text: String) -> Bool {
        let parts = text.split(separator: "!", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !text.contains(where: { $0.isWhitespace || $0 == "\0" }) else { return false }
        let userHost = parts[1].split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        return userHost.count == 2 && !userHost[0].isEmpty && !userHost[1].isEmpty
    }

    /// `host:port` or `[v6]:port`.
    static func hostAndPort(_ text: String, key: String, document: TOMLDocument) throws(ConfigurationError) -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port), colon > text.startIndex else {
            throw document.error(key, "\(text) is not host:port")
        }
        return (String(text[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]")), port)
    }
}

extension Network.TLS {
    static func load(_ reader: inout TableReader, document: TOMLDocument, path: String, servers: [Network.Server]) throws(ConfigurationError) -> Network.TLS {
        var tls = Network.TLS()
        tls.verify = try reader.bool("tls_verify") ?? true
        tls.caFile = try reader.string("tls_ca_file")
        if let caFile = tls.caFile {
            _ = try ShadowbridgeConfiguration.readText(caFile, file: path, key: "network.tls_ca_file", line: document.line(of: "network.tls_ca_file"))
        }
        if let fingerprint = try reader.string("tls_fingerprint") {
            guard let bytes = Self.parseFingerprint(fingerprint) else {
                throw document.error("network.tls_fingerprint", "must be the certificate's SHA-256 fingerprint: 64 hex digits, colons allowed")
            }
            tls.pinnedSHA256 = bytes
        }
        tls.certificateFile = try reader.string("tls_certificate")
        tls.keyFile = try reader.string("tls_key")
        if (tls.certificateFile == nil) != (tls.keyFile == nil) {
            throw document.error(tls.certificateFile == nil ? "network.tls_key" : "network.tls_certificate", "give tls_certificate and tls_key together")
        }
        for (key, file) in [("tls_certificate", tls.certificateFile), ("tls_key", tls.keyFile)] {
            if let file { _ = try ShadowbridgeConfiguration.readText(file, file: path, key: "network.\(key)", line: document.line(of: "network.\(key)")) }
        }
        let given = [("tls_verify", !tls.verify), ("tls_ca_file", tls.caFile != nil), ("tls_fingerprint", tls.pinnedSHA256 != nil), ("tls_certificate", tls.certificateFile != nil)]
        if let (key, _) = given.first(where: { $0.1 }), !servers.contains(where: \.tls) {
            throw document.error("network.\(key)", "applies to ircs:// servers, and this network has none")
        }
        return tls
    }

    /// `AB:CD:...` or `abcd...`: 32 bytes.
    static func parseFingerprint(_ text: String) -> [UInt8]? {
        let hex = Array(text.filter { $0 != ":" && !$0.isWhitespace }.lowercased().utf8)
        guard hex.count == 64 else { return nil }
        var bytes: [UInt8] = []
        for index in stride(from: 0, to: 64, by: 2) {
            guard let byte = UInt8(String(decoding: hex[index..<index + 2], as: UTF8.self), radix: 16) else { return nil }
            bytes.append(byte)
        }
        return bytes
    }
}

extension Network.SASL {
    static func load(
        _ reader: inout TableReader, document: TOMLDocument, nick: String, tls: Network.TLS, servers: [Network.Server]
    ) throws(ConfigurationError) -> Network.SASL? {
        let account = try reader.string("sasl_account")
        let inline = try reader.string("sasl_password")
        let file = try reader.string("sasl_password_file")
        guard let mechanismName = try reader.string("sasl") else {
            let given = [("sasl_account", account), ("sasl_password", inline), ("sasl_password_file", file)]
            if let (key, _) = given.first(where: { $0.1 != nil }) {
                throw document.error("network.\(key)", "needs sasl = \"plain\" or \"external\"")
            }
            return nil
        }
        guard let mechanism = Mechanism(rawValue: mechanismName) else {
            throw document.error("network.sasl", "must be \"plain\" or \"external\"")
        }
        switch mechanism {
        case .plain:
            guard let password = try reader.secret("sasl_password"), !password.value.isEmpty else {
                throw document.error("network.sasl", "plain needs sasl_password_file (or sasl_password)")
            }
            return Network.SASL(mechanism: .plain, account: account ?? nick, password: password.value, passwordInline: password.inline)
        case .external:
            if inline != nil || file != nil { throw document.error("network.sasl_password", "external uses the TLS client certificate, not a password") }
            guard tls.certificateFile != nil, servers.allSatisfy(\.tls) else {
                throw document.error("network.sasl", "external needs tls_certificate and tls_key, and ircs:// servers only")
            }
            return Network.SASL(mechanism: .external, account: account ?? nick, password: nil, passwordInline: false)
        }
    }
}

extension Network.Server {
    /// `irc://host:port` (plain, default port 6667) or `ircs://host:port` (TLS, default 6697).
    init?(parsing s: String) {
        let tls: Bool
        var rest: Substring
        if s.hasPrefix("ircs://") {
            tls = true
            rest = s.dropFirst(7)
        } else if s.hasPrefix("irc://") {
            tls = false
            rest = s.dropFirst(6)
        } else {
            return nil
        }
        if rest.hasSuffix("/") { rest = rest.dropLast() }
        var port = tls ? 6697 : 6667
        var host = rest
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
            host = rest[..<colon]
        }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = host.dropFirst().dropLast() }
        guard !host.isEmpty, !host.contains("/") else { return nil }
        self.init(host: String(host), port: port, tls: tls)
    }
}

extension Network {
    /// Whether `other` connects to IRC the same way (servers, identity, pacing, puppets): when
    /// it does, a reload changes only the channel mappings and keeps every connection.
    public func sameConnection(as other: Network) -> Bool {
        servers == other.servers && nick == other.nick && password == other.password
            && encodingFallback == other.encodingFallback && xmppUsers == other.xmppUsers && puppetNick == other.puppetNick
            && maxPuppets == other.maxPuppets && floodBurst == other.floodBurst && floodLinesPerSecond == other.floodLinesPerSecond
            && puppetConnectionsPerSecond == other.puppetConnectionsPerSecond && tls == other.tls && sasl == other.sasl && bindAddress == other.bindAddress
            && webirc == other.webirc && otherBridgeMasks == other.otherBridgeMasks && otherShadowbridges == other.otherShadowbridges
    }
}
