import Configuration
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

        [bridge]
        domain = "irc.example.org"
        secret = "s2"
        mappings = "BRIDGES"
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

    @Test("an unknown key names file, key and line")
    func unknownKey() throws {
        let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "secret = \"s2\"", with: "secret = \"s2\"\nmapings = \"x\""))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "bridge.mapings" && e.line == 13 && e.message == "unknown key")
    }

    @Test("a missing required key names file and key")
    func missingKey() throws {
        let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "allowed_shadows = [\"irc.example.org\"]\n", with: ""))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "master.allowed_shadows" && e.file == files.config && e.line != nil)
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

    @Test("a channel mapped twice is refused")
    func duplicateChannel() throws {
        let twice = Self.network + "\n[[channel]]\nirc = \"#OPS\"\nroom = \"other@rooms.example.org\"\n"
        let (_, error, files) = try Self.load(Self.good, mappings: ["example.toml": twice])
        defer { files.remove() }
        #expect(try #require(error).description.contains("mapped twice"))
    }

    @Test("a missing secret file is named")
    func secretFile() throws {
        let (_, error, files) = try Self.load(Self.good.replacingOccurrences(of: "secret = \"s1\"", with: "secret_file = \"/nonexistent/secret\""))
        defer { files.remove() }
        let e = try #require(error)
        #expect(e.key == "master.secret_file" && e.line == 7 && e.description.contains("/nonexistent/secret"))
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
}
