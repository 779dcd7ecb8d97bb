import Foundation
import Lab
import Testing

/// One bridged channel with IRC users and XMPP users already in, for one scenario: fresh
/// channel, room, accounts and bridge process each time.
final class BridgedRoom: Sendable {
    let directory: URL
    let agent: LabAgent
    let bridge: ShadowbridgeProcess
    let channel: String
    let room: String
    /// IRC nicks, in join order (the first one creates the channel, so she is its operator).
    let ircUsers: [String]
    /// XMPP user -> room nick (also the puppet's IRC nick).
    let xmppUsers: [(user: String, nick: String)]

    init(
        servers: LabServers, irc: IRCServerKind = .ngircd, name: String, ircUsers: [String], xmppUsers: [(user: String, nick: String)], metricsPort: Int? = nil,
        link: ShadowbridgeProcess.LinkTransport = .memory, extraConfig: String = "", ircPort: Int? = nil, server: String? = nil, networkSettings: String = "",
        notOccupants: [String] = [], masterSettings: String = "", bridgeSettings: String = "", ircCaps: [String: String] = [:]
    ) throws {
        directory = try Lab.makeTemporaryDirectory(prefix: name)
        channel = "#\(name)"
        room = "\(name)@\(LabServers.masterDomain)"
        self.ircUsers = ircUsers
        self.xmppUsers = xmppUsers
        agent = try LabAgent(directory: directory)
        let port = try ircPort ?? irc.port(servers)
        for nick in ircUsers + notOccupants { try agent.ircUserJoins(nick, port: port, channel: channel, caps: ircCaps[nick]) }
        bridge = try ShadowbridgeProcess(
            servers: servers, directory: directory, channels: [(channel, name)], metricsPort: metricsPort, link: link, extraConfig: extraConfig,
            server: server ?? "irc://127.0.0.1:\(port)", networkSettings: networkSettings, bridgeSettings: bridgeSettings, masterSettings: masterSettings)
        if ircUsers.isEmpty {
            // Nobody to federate the room yet: the bridge is in the channel first (and holds ops).
            try bridge.waitForLog("IRC bridge connection registered")
            Thread.sleep(forTimeInterval: 1)
        } else {
            try bridge.waitForLog("link federated", "shadow=\(channel)%lab@")
        }
        for (user, nick) in xmppUsers { try agent.xmppUserJoins(user, prosody: servers.prosody, room: room, nick: nick) }
        if let watcher = ircUsers.first {
            for (_, nick) in xmppUsers {
                try agent.waitFor("the puppet \(nick) joins", timeout: 20) { $0.user == watcher && $0.command == "JOIN" && $0.nick == nick }
            }
        }
        for (user, _) in xmppUsers {
            for nick in ircUsers {
                try agent.waitFor("\(user) sees \(nick)") { $0.user == user && $0.kind == "presence" && $0.from == "\(self.room)/\(nick)" }
            }
        }
        Thread.sleep(forTimeInterval: 0.5)
    }

    func occupant(_ nick: String) -> String { "\(room)/\(nick)" }

    func irc(_ user: String, _ line: String) { agent.send(["cmd": "irc_send", "user": user, "line": line]) }

    func close() {
        agent.stop()
        _ = bridge.stop()
        Lab.removeUnlessKept(directory)
    }
}

/// The IRC server a scenario runs against: the bridge-semantics scenarios run on both.
enum IRCServerKind: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case ngircd, inspircd

    var testDescription: String { rawValue }

    /// The plain-text port of the lab's server of this kind; the suite must have started it.
    func port(_ servers: LabServers) throws -> Int {
        switch self {
        case .ngircd: servers.ngircd.port
        case .inspircd: try #require(servers.inspircd, "the suite must carry the .labServersWithInspIRCd trait").port
        }
    }
}
