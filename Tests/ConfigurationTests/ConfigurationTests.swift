@testable import Configuration
import Foundation
import Testing

/// Every configuration mistake names the file, the line and the key (issue 3, DESIGN.md §4).
@Suite("Configuration errors")
struct ConfigurationTests {
    /// A scratch directory with a config file and a mappings directory.
    struct Files {
        let directory: URL
        var config: String { directory.appendingPathComponent("shadowbridge.toml").path }
        var bridges: String { directory.appendingPathComponent("bridges").path }

        init(config: String, mappings: [String: String] = [:]) throws {
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(atPath: directory.appendingPathComponent("bridges").path, withIntermediateDirectories: true)
            try config.replacingOccurrences(of: "BRIDGES", with: directory.appendingPathComponent("bridges").path)
                .write(toFile: directory.appendingPathComponent("shadowbridge.toml").path, atomically: true, encoding: .utf8)
            for (name, text) in mappings {
                try text.write(toFile: directory.appendingPathComponent("bridges/\(name)").path, atomically: true, encoding: .utf8)
            }
        }

        func remove() { try? FileManager.default.removeItem(at: directory) }
    }

    static let good = """
        [xmpp]
        host = "127.0.0.1"
        port = 5347

        [master]
        domain = "rooms.example.org"
        secret = "s1"
        allowed_shadows = ["irc.example.org"]
        database = "state/master.sqlite"
        archive_retention_days = 30

        [bridge]
        domain = "irc.example.org"
        secret = "s2"
        mappings = "BRIDGES"
        database = "state/bridge.sqlite"
        """

    static let network = """
        [network]
        name = "example"
        servers = ["irc://127.0.0.1:6667"]
        nick = "bridge"

        [[channel]]
        irc = "#ops"
        room = "ops@rooms.example.org"
        """

    static func load(_ config: String, mappings: [String: String] = ["example.toml": network]) throws -> (ShadowbridgeConfiguration?, ConfigurationError?, Files) {
        let files = try Files(config: config, mappings: mappings)
        do {
            return (try ShadowbridgeConfiguration.load(path: files.config), nil, files)
        } catch {
            return (nil, error, files)
        }
    }

    @Test("a good configuration loads, with a warning for inline secrets")
    func good() throws {
        let (config, error, files) = try Self.load(Self.good)
        defer { files.remove() }
        #expect(error == nil)
        #expect(config?.master?.domain == "rooms.example.org")
        #expect(config?.bridge?.networks.first?.channels.first?.room.description == "ops@rooms.example.org")
        #expect(config?.bridge?.networks.first?.servers.first?.port == 6667)
        #expect(config?.warnings.count == 2)
        #expect(config?.master?.database == "state/master.sqlite" && config?.master?.archive == true)
        #expect(config?.master?.archiveRetentionDays == 30)
        #expect(config?.bridge?.database == "state/bridge.sqlite" && config?.master?.splitGrace == 30)
    }

    @Test("link settings: in memory and a 60 s keepalive by default; a bad transport or interval names its key")
    func linkSettings() throws {
        var (config, error, files) = try Self.load(Self.good)
        files.remove()
        #expect(error == nil && config?.xmpp.link == .memory && config?.xmpp.linkPingInterval == 60)
        #expect(config?.master?.replayStanzas == 500 && config?.master?.replaySeconds == 600)
        (config, error, files) = try Self.load(Self.good.replacingOccurrences(of: "port = 5347", with: "port = 5347\nlink = \"server\"\nlink_ping_interval = 1.5"))
        files.remove()
        #expect(error == nil && config?.xmpp.link == .server && config?.xmpp.linkPingInterval == 1.5)
        (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "port = 5347", with: "port = 5347\nlink = \"carrier-pigeon\""))
        files.remove()
        #expect(error?.key == "xmpp.link" && error?.line == 4)
        (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "port = 5347", with: "port = 5347\nlink_ping_interval = 0"))
        files.remove()
        #expect(error?.key == "xmpp.link_ping_interval")
        (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "archive_retention_days = 30", with: "replay_stanzas = -1"))
        files.remove()
        #expect(error?.key == "master.replay_stanzas")
        for (setting, key) in [("occupant_rate = -1", "master.occupant_rate"), ("occupant_burst = 0", "master.occupant_burst"), ("shadow_rate = \"fast\"", "master.shadow_rate"), ("shadow_rate = 0.001", "master.shadow_rate")] {
            (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "archive_retention_days = 30", with: setting))
            files.remove()
            #expect(error?.key == key, "\(setting)")
        }
        (config, error, files) = try Self.load(Self.good.replacingOccurrences(of: "archive_retention_days = 30", with: "occupant_rate = 0\nshadow_rate = 0.5\nshadow_burst = 3"))
        files.remove()
        #expect(error == nil && config?.master?.occupantRate == 0 && config?.master?.occupantBurst == 10 && config?.master?.shadowRate == 0.5 && config?.master?.shadowBurst == 3)
        (config, error, files) = try Self.load(Self.good)
        files.remove()
        #expect(config?.master?.occupantRate == 2 && config?.master?.occupantBurst == 10 && config?.master?.shadowRate == 50 && config?.master?.shadowBurst == 600)
    }

    @Test("a TOML syntax error names file, line and column")
    func syntax() throws {
        let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "port = 5347", with: "port = = 5347"))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.file == files.config)
        #expect(e.line == 3)
        #expect(e.column != nil)
        #expect(e.description.hasPrefix("\(files.config):3:"))
    }

    /// TOMLKit's parser asserts (the process aborts) on these instead of reporting them; found
    /// by the config fuzzer. `[#ops]` is a plausible slip in a mapping file, and a reload would
    /// have taken the running bridge down with it.
    @Test("a table header without a key is a syntax error with its line, never an abort", arguments: ["[#ops]", "[=]", "[[ =]]", "[", "[é]", "[[#]]", "[.b]"])
    func headerWithoutKey(header: String) throws {
        let (_, error, files) = try Self.load(Self.good + "\n" + header + "\n")
        defer { files.remove() }
        let e = try #require(error)
        let lines = Self.good.split(separator: "\n", omittingEmptySubsequences: false).count + 1
        #expect(e.line == lines && e.message.contains("table header starts with a key"), "\(e)")
    }

    @Test("brackets inside values, strings and comments are not taken for table headers")
    func bracketsInValues() throws {
        let text = #"""
            a = [
              [
                1
              ],
              "[#",
            ]
            b = """
            [=]
            """
            c = '''
            [#'''
            # [=]
            d = { e = [ "x" ] }
            ["quoted [#] key"]
            [ table ]
            [[ array ]]
            """#
        #expect(TOMLDocument.headerWithoutKey(in: text) == nil)
        #expect(throws: Never.self) { try TOMLDocument(path: "t.toml", text: text) }
        #expect(TOMLDocument.headerWithoutKey(in: "\u{FEFF}[#ops]\n")! == (1, 2))
        #expect(TOMLDocument.headerWithoutKey(in: #"x = [""""a"""", '''b''''']"# + "\n[#ops]\n")! == (2, 2))
        #expect(TOMLDocument.headerWithoutKey(in: #"x = [""""a"""", '''b''''']"# + "\n[ops]\n") == nil)
        let bad = try #require(TOMLDocument.headerWithoutKey(in: text + "\n  [ \t#x]"))
        #expect(bad.line == 17 && bad.column == 6, "\(bad)")
    }

    @Test("an unknown key names file, key and line")
    func unknownKey() throws {
        let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "secret = \"s2\"", with: "secret = \"s2\"\nmapings = \"x\""))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "bridge.mapings" && e.line == 15 && e.message == "unknown key")
    }

    @Test("a missing required key names file and key")
    func missingKey() throws {
        let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "allowed_shadows = [\"irc.example.org\"]\n", with: ""))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "master.allowed_shadows" && e.file == files.config && e.line != nil)
    }

    @Test("the master and the bridge naming one database file is refused at bridge.database")
    func sharedDatabase() throws {
        let (_, error, files) = try Self.load(
            Self.good.replacingOccurrences(of: "database = \"state/bridge.sqlite\"", with: "database = \"state/../state/master.sqlite\""))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "bridge.database" && e.line == 16 && e.message.contains("same file as master.database"))
    }

    @Test("a value of the wrong type names its key and line")
    func wrongType() throws {
        let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "port = 5347", with: "port = \"5347\""))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "xmpp.port" && e.line == 3 && e.message == "must be an integer")
    }

    @Test("errors in a mapping file name that file")
    func mappingErrors() throws {
        let cases: [(String, String, Int, String)] = [
            (Self.network.replacingOccurrences(of: "ops@rooms.example.org", with: "ops@conference.other.org"), "channel[0].room", 8, "is not on the master's domain rooms.example.org"),
            (Self.network.replacingOccurrences(of: "irc = \"#ops\"", with: "irc = \"ops\""), "channel[0].irc", 7, "is not an IRC channel name"),
            (Self.network.replacingOccurrences(of: "irc://127.0.0.1:6667", with: "http://x"), "network.servers", 3, "is not an irc://host:port"),
            (Self.network + "\ncolour = \"blue\"", "channel[0].colour", 9, "unknown key"),
            (Self.network.replacingOccurrences(of: "irc = \"#ops\"", with: "irc = \"&ops\""), "channel[0].irc", 7, "not supported yet"),
            (Self.network.replacingOccurrences(of: "irc = \"#ops\"", with: "irc = \"#a/b\""), "channel[0].irc", 7, "not supported yet"),
            (Self.network + "\n[[channel]]\nirc = \"#ops2\"\nroom = \"ops@rooms.example.org\"\n", "channel[1].room", 11, "already mapped from #ops"),
        ]
        for (mapping, key, line, message) in cases {
            let (_, error, files) = try Self.load(Self.good, mappings: ["example.toml": mapping])
            defer { files.remove() }
            let e = try #require(error, "\(key)")
            #expect(e.file == files.bridges + "/example.toml", "\(e)")
            #expect(e.key == key, "\(e)")
            #expect(e.line == line, "\(e)")
            #expect(e.description.contains(message), "\(e)")
        }
    }

    @Test("translation settings: relay mode, lazy joins, announcements, the collision suffix, corrections and reactions; bad values name their key")
    func translation() throws {
        let settings = "xmpp_users = \"relay\"\nrelay_announce_joins = true\nrelay_zero_width_space = true\ncollision_suffix = \"[irc]\"\ncorrections = \"drop\"\nreactions = false\npuppet_joins = \"lazy\"\n"
        let mapping = Self.network.replacingOccurrences(of: "nick = \"bridge\"\n", with: "nick = \"bridge\"\n" + settings)
        let (config, error, files) = try Self.load(Self.good, mappings: ["example.toml": mapping])
        defer { files.remove() }
        #expect(error == nil, "\(String(describing: error))")
        let network = try #require(config?.bridge?.networks.first)
        #expect(network.xmppUsers == .relay && network.puppetJoins == .lazy)
        #expect(network.translation.relayAnnounceJoins && network.translation.relayZeroWidthSpace && !network.translation.reactions)
        #expect(network.translation.collisionSuffix == "[irc]" && network.translation.corrections == .drop)

        let (defaults, _, defaultFiles) = try Self.load(Self.good)
        defer { defaultFiles.remove() }
        #expect(defaults?.bridge?.networks.first?.translation == Network.Translation())
        #expect(defaults?.bridge?.networks.first?.puppetJoins == .eager)

        for (bad, key) in [("collision_suffix = \"a b\"", "network.collision_suffix"), ("corrections = \"maybe\"", "network.corrections"), ("puppet_joins = \"sometimes\"", "network.puppet_joins"), ("max_lines = 1", "network.max_lines"),
            ("other_bridge_masks = [\"bob[m]\"]", "network.other_bridge_masks"), ("other_bridge_masks = \"*!*@*\"", "network.other_bridge_masks")] {
            let (_, error, files) = try Self.load(Self.good, mappings: ["example.toml": Self.network.replacingOccurrences(of: "nick = \"bridge\"\n", with: "nick = \"bridge\"\n\(bad)\n")])
            defer { files.remove() }
            #expect(error?.key == key, "\(String(describing: error))")
        }
    }

    @Test("a channel mapped twice is refused")
    func duplicateChannel() throws {
        let twice = Self.network + "\n[[channel]]\nirc = \"#OPS\"\nroom = \"other@rooms.example.org\"\n"
        let (_, error, files) = try Self.load(Self.good, mappings: ["example.toml": twice])
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "channel[1].irc" && e.line == 10 && e.description.contains("#OPS is already mapped to ops@rooms.example.org"), "\(e)")
    }

    @Test("every broken mapping file is reported in one pass, each with file, line and key")
    func everyBrokenFile() throws {
        let badRoom = Self.network.replacingOccurrences(of: "ops@rooms.example.org", with: "not a room")
        let badNick = Self.network.replacingOccurrences(of: "name = \"example\"", with: "name = \"second\"")
            .replacingOccurrences(of: "nick = \"bridge\"", with: "nick = 7")
        let (_, error, files) = try Self.load(Self.good, mappings: ["a.toml": badRoom, "b.toml": badNick, "c.toml": Self.network])
        defer { files.remove() }
        let all = try #require(error).all
        #expect(all.count == 2, "\(all)")
        #expect(all.first?.file == files.bridges + "/a.toml" && all.first?.key == "channel[0].room" && all.first?.line == 8, "\(all)")
        #expect(all.last?.file == files.bridges + "/b.toml" && all.last?.key == "network.nick" && all.last?.line == 4, "\(all)")
    }

    @Test("two files naming the same network: the second is refused at its network.name line")
    func duplicateNetwork() throws {
        let other = Self.network.replacingOccurrences(of: "#ops", with: "#dev")
        let (_, error, files) = try Self.load(Self.good, mappings: ["a.toml": Self.network, "b.toml": other])
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.file == files.bridges + "/b.toml" && e.key == "network.name" && e.line == 2 && e.description.contains("a.toml"), "\(e)")
    }

    @Test("password_file is read and trimmed; inline password warns; both at once is an error")
    func passwordFile() throws {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("pw-\(UUID().uuidString.prefix(8))").path
        try "hunter2\n".write(toFile: secret, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secret) }
        let withFile = Self.network.replacingOccurrences(of: "nick = \"bridge\"", with: "nick = \"bridge\"\npassword_file = \"\(secret)\"")
        let (loaded, _, files) = try Self.load(Self.good, mappings: ["example.toml": withFile])
        defer { files.remove() }
        #expect(loaded?.bridge?.networks.first?.password == "hunter2")
        #expect(loaded?.warnings.contains { $0.contains("network.password") } == false)

        let inline = Self.network.replacingOccurrences(of: "nick = \"bridge\"", with: "nick = \"bridge\"\npassword = \"x\"")
        let (loadedInline, _, files2) = try Self.load(Self.good, mappings: ["example.toml": inline])
        defer { files2.remove() }
        #expect(loadedInline?.warnings.contains { $0.contains("network.password is written inline") } == true)

        let both = withFile.replacingOccurrences(of: "password_file", with: "password = \"x\"\npassword_file")
        let (_, error, files3) = try Self.load(Self.good, mappings: ["example.toml": both])
        defer { files3.remove() }
        #expect(try #require(error).key == "network.password")

        let missing = Self.network.replacingOccurrences(of: "nick = \"bridge\"", with: "nick = \"bridge\"\npassword_file = \"/nonexistent/pw\"")
        let (_, error4, files4) = try Self.load(Self.good, mappings: ["example.toml": missing])
        defer { files4.remove() }
        let e = try #require(error4)
        #expect(e.key == "network.password_file" && e.line == 5 && e.description.contains("/nonexistent/pw"), "\(e)")
    }

    @Test("[admin] jids: bare JIDs only")
    func admins() throws {
        let (loaded, _, files) = try Self.load(Self.good + "\n[admin]\njids = [\"Boss@Example.org\"]\n")
        defer { files.remove() }
        #expect(loaded?.admins.map(\.description) == ["boss@example.org"])
        let (_, error, files2) = try Self.load(Self.good + "\n[admin]\njids = [\"boss@example.org/phone\"]\n")
        defer { files2.remove() }
        let e = try #require(error)
        #expect(e.key == "admin.jids" && e.line == 18, "\(e)")
    }

    @Test("a reload reads the mapping files again the same way")
    func reload() throws {
        let (loaded, _, files) = try Self.load(Self.good)
        defer { files.remove() }
        let bridge = try #require(loaded?.bridge)
        try (Self.network + "\n[[channel]]\nirc = \"#dev\"\nroom = \"dev@rooms.example.org\"\n")
            .write(toFile: files.bridges + "/example.toml", atomically: true, encoding: .utf8)
        #expect(try bridge.reloadNetworks().first?.channels.map(\.irc) == ["#ops", "#dev"])
        try "[network]\nname = 1\n".write(toFile: files.bridges + "/example.toml", atomically: true, encoding: .utf8)
        #expect(throws: ConfigurationError.self) { try bridge.reloadNetworks() }
    }

    @Test("channels alone changing keep the connection; a server, nick or pacing change does not")
    func sameConnection() throws {
        let (loaded, _, files) = try Self.load(Self.good)
        defer { files.remove() }
        let network = try #require(loaded?.bridge?.networks.first)
        var channelsOnly = network
        channelsOnly.channels = []
        #expect(network.sameConnection(as: channelsOnly))
        var nick = network
        nick.nick = "other"
        #expect(!network.sameConnection(as: nick))
        var pacing = network
        pacing.floodLinesPerSecond = 9
        #expect(!network.sameConnection(as: pacing))
    }

    @Test("a missing secret file is named")
    func secretFile() throws {
        let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "secret = \"s1\"", with: "secret_file = \"/nonexistent/secret\""))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "master.secret_file" && e.line == 7 && e.description.contains("/nonexistent/secret"))
    }

    @Test("a secret file naming a device, a FIFO, a directory or a huge file is an error, not a read without end or a wait")
    func secretFileNotAFile() throws {
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("secret-fifo-\(getpid())").path
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let huge = FileManager.default.temporaryDirectory.appendingPathComponent("secret-huge-\(getpid())").path
        #expect(FileManager.default.createFile(atPath: huge, contents: Data(count: (1 << 20) + 1)))
        defer { unlink(huge) }
        for (path, says) in [("/dev/zero", "not a regular file"), (fifo, "not a regular file"), ("/tmp", "not a regular file"), (huge, "larger than 1 MiB")] {
            let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "secret = \"s1\"", with: "secret_file = \"\(path)\""))
            defer { files.remove() }
            let e = try #require(error)
            #expect(e.key == "master.secret_file" && e.line == 7 && e.description.contains(says), "\(e)")
        }
    }

    @Test("an unknown quoted key with brackets is an error, not a crash (found in review)")
    func bracketKey() throws {
        let (_, error, files) = try Self.load(Self.good + "\n\n[weird]\n\"]x[.y\" = 1\n")
        defer { files.remove() }
        #expect(error != nil)
    }

    @Test("a missing config file is named")
    func missingFile() {
        #expect(throws: ConfigurationError.self) { try ShadowbridgeConfiguration.load(path: "/nonexistent/shadowbridge.toml") }
    }

    /// The repository's root, from this file's place in it.
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// `table.key` for every key a sample file sets or shows commented out.
    static func keys(in text: String) -> Set<String> {
        var table = ""
        var keys: Set<String> = []
        for raw in text.split(separator: "\n") {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("# [") || line.hasPrefix("[") {
                line = line.replacingOccurrences(of: "# ", with: "")
                table = line.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
                continue
            }
            if line.hasPrefix("# ") { line = String(line.dropFirst(2)) }
            guard let equals = line.range(of: " = "), line[..<equals.lowerBound].allSatisfy({ $0.isLetter || $0 == "_" }) else { continue }
            keys.insert("\(table).\(line[..<equals.lowerBound])")
        }
        return keys
    }

    @Test("the shipped samples load, and README's configuration reference documents every key in them")
    func samples() throws {
        let config = try String(contentsOf: Self.root.appendingPathComponent("Config/shadowbridge.toml"), encoding: .utf8)
        let mapping = try String(contentsOf: Self.root.appendingPathComponent("bridges/example.toml"), encoding: .utf8)
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let documented = Self.keys(in: config).union(Self.keys(in: mapping))
        #expect(documented.count >= 25, "\(documented.sorted())")
        for key in documented.sorted() {
            #expect(readme.contains("`\(key)`"), "README does not document \(key)")
        }
        // Secrets and the mappings directory as a deployment has them.
        let files = try Files(config: "", mappings: ["example.toml": mapping])
        defer { files.remove() }
        for secret in ["master", "bridge"] {
            try "s-\(secret)\n".write(toFile: files.directory.appendingPathComponent(secret).path, atomically: true, encoding: .utf8)
        }
        let adjusted = config
            .replacingOccurrences(of: "\"secrets/", with: "\"\(files.directory.path)/")
            .replacingOccurrences(of: "mappings = \"bridges\"", with: "mappings = \"\(files.bridges)\"")
        try adjusted.write(toFile: files.config, atomically: true, encoding: .utf8)
        let loaded = try ShadowbridgeConfiguration.load(path: files.config)
        #expect(loaded.master?.secret == "s-master" && loaded.bridge?.secret == "s-bridge")
        #expect(loaded.bridge?.networks.first?.channels.first?.room.description == "ops@rooms.example.org")
        #expect(loaded.warnings.isEmpty, "\(loaded.warnings)")
    }
}

/// Issue 5's keys: TLS and SASL per network.
@Suite("Configuration: TLS and SASL")
struct TLSAndSASLConfigurationTests {
    typealias C = ConfigurationTests

    static func network(servers: String = "ircs://irc.example.org", _ settings: String) -> String {
        C.network.replacingOccurrences(of: "servers = [\"irc://127.0.0.1:6667\"]", with: "servers = [\"\(servers)\"]")
            .replacingOccurrences(of: "nick = \"bridge\"", with: "nick = \"bridge\"\n\(settings)")
    }

    static func error(_ mapping: String) throws -> ConfigurationError? {
        let (_, error, files) = try C.load(C.good, mappings: ["example.toml": mapping])
        files.remove()
        return error
    }

    @Test("ircs:// with a pin, a CA file and SASL PLAIN from a file load; the secrets stay out of warnings")
    func good() throws {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("sasl-\(UUID().uuidString.prefix(8))").path
        try "s3cret\n".write(toFile: secret, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secret) }
        let pin = String(repeating: "AB:", count: 31) + "AB"
        let mapping = Self.network("tls_fingerprint = \"\(pin)\"\ntls_ca_file = \"\(secret)\"\nsasl = \"plain\"\nsasl_password_file = \"\(secret)\"")
        let (loaded, error, files) = try C.load(C.good, mappings: ["example.toml": mapping])
        defer { files.remove() }
        #expect(error == nil)
        let network = try #require(loaded?.bridge?.networks.first)
        #expect(network.servers.first?.tls == true && network.servers.first?.port == 6697)
        #expect(network.tls.pinnedSHA256 == [UInt8](repeating: 0xAB, count: 32))
        #expect(network.sasl?.mechanism == .plain && network.sasl?.account == "bridge" && network.sasl?.password == "s3cret")
        #expect(loaded?.warnings.contains { $0.contains("s3cret") } == false)
    }

    @Test("each mistake names its key: bad pin, TLS keys without ircs://, half a client certificate, SASL without a password or a mechanism, EXTERNAL without a certificate")
    func mistakes() throws {
        let cases: [(String, String, String)] = [
            (Self.network("tls_fingerprint = \"abc\""), "network.tls_fingerprint", "64 hex digits"),
            (Self.network(servers: "irc://irc.example.org", "tls_verify = false"), "network.tls_verify", "applies to ircs:// servers"),
            (Self.network("tls_certificate = \"/etc/hostname\""), "network.tls_certificate", "together"),
            (Self.network("tls_ca_file = \"/nonexistent/ca.pem\""), "network.tls_ca_file", "/nonexistent/ca.pem"),
            (Self.network("sasl = \"plain\""), "network.sasl", "sasl_password_file"),
            (Self.network("sasl = \"scram\""), "network.sasl", "\"plain\" or \"external\""),
            (Self.network("sasl_account = \"x\""), "network.sasl_account", "needs sasl"),
            (Self.network("sasl = \"external\""), "network.sasl", "tls_certificate"),
            (Self.network("sasl = \"plain\"\nsasl_password = \"a\"\nsasl_password_file = \"/etc/hostname\""), "network.sasl_password", "not both"),
        ]
        for (mapping, key, text) in cases {
            let error = try #require(try Self.error(mapping), "\(key)")
            #expect(error.key == key && error.description.contains(text), "\(error)")
            #expect(error.line != nil, "\(error)")
        }
    }

    @Test("an inline SASL password and tls_verify = false warn")
    func warnings() throws {
        let (loaded, _, files) = try C.load(C.good, mappings: ["example.toml": Self.network("tls_verify = false\nsasl = \"plain\"\nsasl_password = \"pw\"")])
        defer { files.remove() }
        let warnings = try #require(loaded?.warnings)
        #expect(warnings.contains { $0.contains("sasl_password is written inline") })
        #expect(warnings.contains { $0.contains("tls_verify is false") })
    }
}

/// Issue 5's keys: WEBIRC per network, the ident server per bridge.
@Suite("Configuration: WEBIRC and identd")
struct WebIRCAndIdentdConfigurationTests {
    typealias C = ConfigurationTests

    @Test("webirc_password_file and identd load; an inline WEBIRC password warns without showing it")
    func good() throws {
        let secret = FileManager.default.temporaryDirectory.appendingPathComponent("webirc-\(UUID().uuidString.prefix(8))").path
        try "gw-s3cret\n".write(toFile: secret, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: secret) }
        let mapping = TLSAndSASLConfigurationTests.network(servers: "irc://irc.example.org", "webirc_password_file = \"\(secret)\"\nwebirc_gateway = \"example-gw\"")
        let (loaded, error, files) = try C.load(C.good + "\nidentd = \"[::]:1113\"", mappings: ["example.toml": mapping])
        defer { files.remove() }
        #expect(error == nil, "\(String(describing: error))")
        #expect(loaded?.bridge?.identd?.host == "::" && loaded?.bridge?.identd?.port == 1113)
        let webirc = try #require(loaded?.bridge?.networks.first?.webirc)
        #expect(webirc.password == "gw-s3cret" && webirc.gateway == "example-gw")
        #expect(loaded?.warnings.contains { $0.contains("webirc") || $0.contains("gw-s3cret") } == false, "\(loaded?.warnings ?? [])")

        let inline = TLSAndSASLConfigurationTests.network(servers: "irc://irc.example.org", "webirc_password = \"gw-inline\"")
        let (warned, _, more) = try C.load(C.good, mappings: ["example.toml": inline])
        defer { more.remove() }
        #expect(warned?.bridge?.networks.first?.webirc?.gateway == "shadowbridge")
        #expect(warned?.warnings.contains { $0.contains("webirc_password is written inline") } == true)
        #expect(warned?.warnings.contains { $0.contains("gw-inline") } == false)
    }

    @Test("each mistake names its key")
    func mistakes() throws {
        let network = { (settings: String) in TLSAndSASLConfigurationTests.network(servers: "irc://irc.example.org", settings) }
        let cases: [(String, String, String, String)] = [
            (C.good, network("webirc_gateway = \"gw\""), "network.webirc_gateway", "needs webirc_password_file"),
            (C.good, network("webirc_password = \"two words\""), "network.webirc_password", "one word"),
            (C.good, network("webirc_password = \"p\"\nwebirc_gateway = \":gw\""), "network.webirc_gateway", "one word"),
            (C.good + "\nidentd = \"113\"", C.network, "bridge.identd", "host:port"),
        ]
        for (config, mapping, key, text) in cases {
            let (_, error, files) = try C.load(config, mappings: ["example.toml": mapping])
            files.remove()
            let found = try #require(error, "\(key)")
            #expect(found.key == key && found.description.contains(text), "\(found)")
        }
    }
}

@Suite("Configuration: bind_address")
struct BindAddressTests {
    @Test("a single address is used by every connection; a prefix gives the bridge its first host and each puppet its own stable one")
    func addresses() throws {
        let single = try #require(BindAddress(parsing: "192.0.2.7"))
        #expect(!single.isPrefix && single.bridgeAddress == "192.0.2.7" && single.puppetAddress(for: "a@x/r") == "192.0.2.7")
        let v4 = try #require(BindAddress(parsing: "127.77.9.9/16"))
        #expect(v4.description == "127.77.0.0/16" && v4.bridgeAddress == "127.77.0.1")
        let alice = v4.puppetAddress(for: "alice@xmpp.test/r1")
        #expect(alice.hasPrefix("127.77.") && alice != v4.bridgeAddress && alice != "127.77.0.0" && alice != "127.77.255.255")
        #expect(alice == v4.puppetAddress(for: "alice@xmpp.test/r1"), "stable")
        let many = Set((0..<200).map { v4.puppetAddress(for: "user\($0)@xmpp.test") })
        #expect(many.count > 190, "spread over the prefix: \(many.count)")
        let v6 = try #require(BindAddress(parsing: "2001:db8:5::/64"))
        #expect(v6.bridgeAddress == "2001:db8:5::1")
        #expect(v6.puppetAddress(for: "bob@xmpp.test").hasPrefix("2001:db8:5:0:"))
        for bad in ["", "example.org", "10.0.0.0/25", "10.0.0.0/0", "::1/121", "1.2.3.4/x"] {
            #expect(BindAddress(parsing: bad) == nil, "\(bad)")
        }
    }
}
