import Foundation
import IRCCore
import IRCNIO
import Logging

/// A live restart (SIGUSR2): the bridge hands its IRC connections to the process that
/// replaces it (the same binary, or a newer one, started with `exec`), so IRC sees no QUIT and
/// no JOIN of the bridge or its puppets. The XMPP side restarts as it does on SIGTERM: the
/// master keeps the bridge's IRC users through its split grace, and the shadows federate again
/// from their stored positions. Plain connections only: TLS state cannot change processes.
public struct BridgeHandover: Codable, Sendable {
    public struct NetworkPart: Codable, Sendable {
        public var name: String
        /// The server the connection is on: taken up only if the mapping still lists it.
        public var host: String
        public var port: Int
        /// The bridge's own connection, and the channels (folded) it is in.
        public var connection: IRCConnectionHandover?
        public var joined: [String]
        /// Who the connection knew in each channel (folded) as the lines it read left them:
        /// the next process reads on from there, so it must know the same people.
        public var members: [String: [Member]]
        /// The opaque id behind each IRC user's real JID, by folded nick.
        public var userIDs: [String: String]
        public var userHosts: [String: String]
        public var otherBridgePuppets: [String: [String]]
        public var puppets: [PuppetPart]
    }

    /// An IRC user in a channel: the nick as written, and their channel modes (o, v...).
    public struct Member: Codable, Sendable {
        public var nick: String
        public var modes: String
    }

    /// A puppet as the occupant's room showed it; its connection if it had one.
    public struct PuppetPart: Codable, Sendable {
        public var key: String
        public var roomNick: String
        /// Folded channel -> as written.
        public var wanted: [String: String]
        public var joined: [String]
        public var away: String?
        public var roles: [String: String]
        public var roleModes: [String: String]
        public var relayed: Bool
        public var relayedChannels: [String]
        public var dormant: Bool
        public var connection: IRCConnectionHandover?
    }

    public var networks: [NetworkPart]
}

extension BridgeService {
    /// Stops the IRC side for another process to go on with: no more lines are read, those
    /// already read are relayed, and what each connection knew comes back. XMPP stanzas that
    /// arrive from now on are left to the master's replay, as when stopping. Connections that
    /// cannot be handed over (TLS, not registered) QUIT as on SIGTERM. Then the component
    /// stream closes, once what was relayed is written.
    public func handOver() async -> BridgeHandover {
        handingOver = true
        let sockets = IRCConnectionHandover.openSockets()
        var bridgeConnections: [String: IRCConnectionHandover] = [:]
        var puppetConnections: [String: [String: IRCConnectionHandover]] = [:]
        var ending: Set<String> = []
        for name in networks.keys.sorted() {
            guard let network = networks[name] else { continue }
            let plain = network.server?.tls == false
            if let connection = network.connection {
                if plain, network.nick != nil, let handover = await handOver(connection, sockets: sockets, what: "the bridge's connection", network: name) {
                    bridgeConnections[name] = handover
                    ending.insert(name)
                } else {
                    connection.quit("Shadowbridge is restarting", immediately: true)
                }
            }
            for key in network.puppets.keys.sorted() {
                guard let puppet = networks[name]?.puppets[key], let connection = puppet.connection else { continue }
                if plain, puppet.nick != nil, let handover = await handOver(connection, sockets: sockets, what: "a puppet's connection", network: name) {
                    puppetConnections[name, default: [:]][key] = handover
                    ending.insert("\(name) \(key)")
                } else {
                    connection.quit("Shadowbridge is restarting", immediately: true)
                }
            }
        }
        // Each connection's events end after the last line it read; wait until those are
        // handled, so what they changed is what is handed over.
        let deadline = ContinuousClock.now + .seconds(5)
        while !ending.isSubset(of: handoverDone), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if !ending.isSubset(of: handoverDone) {
            logger.warning("some IRC connections' last lines were not handled before the handover", metadata: ["connections": "\(ending.subtracting(handoverDone).count)"])
        }
        var parts: [BridgeHandover.NetworkPart] = []
        for name in networks.keys.sorted() {
            guard let network = networks[name], let server = network.server else { continue }
            let puppets = network.puppets.values.sorted { $0.key < $1.key }.map { puppet in
                let connection = puppetConnections[name]?[puppet.key]
                return BridgeHandover.PuppetPart(
                    key: puppet.key, roomNick: puppet.roomNick, wanted: puppet.wanted, joined: connection == nil ? [] : puppet.joined.sorted(),
                    away: puppet.away, roles: puppet.roles, roleModes: puppet.roleModes.mapValues(String.init),
                    relayed: puppet.relayed, relayedChannels: puppet.relayedChannels.sorted(), dormant: puppet.dormant, connection: connection)
            }
            var members: [String: [BridgeHandover.Member]] = [:]
            if bridgeConnections[name] != nil {
                for mapping in network.configuration.channels {
                    let channel = network.fold(mapping.irc)
                    // The nicks as written are the shadow room's IRC users.
                    let written = Dictionary(
                        (shadows[Self.shadowJID(channel: mapping.irc, network: name, domain: domain)]?.room.localNicks ?? []).map { (network.fold($0), $0) },
                        uniquingKeysWith: { a, _ in a })
                    members[channel] = (network.members[channel] ?? []).sorted().map { key in
                        BridgeHandover.Member(nick: written[key] ?? key, modes: String((network.memberModes[channel]?[key] ?? []).sorted()))
                    }
                }
            }
            parts.append(BridgeHandover.NetworkPart(
                name: name, host: server.host, port: server.port, connection: bridgeConnections[name],
                joined: bridgeConnections[name] == nil ? [] : network.joined.sorted(), members: members,
                userIDs: network.userIDs, userHosts: network.userHosts, otherBridgePuppets: network.otherBridgePuppets.mapValues { $0.sorted() },
                puppets: puppets))
        }
        await session.close()
        logger.info(
            "IRC connections handed over",
            metadata: ["bridge": "\(bridgeConnections.count)", "puppets": "\(puppetConnections.values.map(\.count).reduce(0, +))"])
        return BridgeHandover(networks: parts)
    }

    private func handOver(_ connection: IRCConnection, sockets: [String: Int32], what: String, network: String) async -> IRCConnectionHandover? {
        do {
            return try await connection.handOver(descriptors: sockets)
        } catch {
            logger.error("\(what) cannot be handed over; it QUITs", metadata: ["network": "\(network)", "error": "\(error)"])
            return nil
        }
    }

    /// Takes up the handover once the component is connected (or after 15 s without it), and
    /// starts the networks it names.
    func takeUpHandover() {
        guard let handover else { return }
        self.handover = nil
        adoptHandover(handover)
        for part in handover.networks where networks[part.name] != nil { startNetworkTask(part.name) }
    }

    /// Takes up what the process before handed over, before its networks connect: each
    /// network's connection is adopted in place of a new one, and each puppet's occupant keeps
    /// its puppet. A puppet stays until its shadow has federated; an occupant the room no
    /// longer has then leaves IRC, once. A network no longer mapped, or on another server, QUITs.
    func adoptHandover(_ handover: BridgeHandover) {
        for part in handover.networks {
            guard var network = networks[part.name], let index = network.configuration.servers.firstIndex(where: {
                $0.host == part.host && $0.port == part.port && !$0.tls
            }) else {
                logger.info("a handed-over network is no longer mapped here; its connections QUIT", metadata: ["network": "\(part.name)"])
                for connection in [part.connection] + part.puppets.map(\.connection) {
                    if let connection { Self.quitDescriptor(connection.descriptor, reason: "This network is no longer bridged") }
                }
                continue
            }
            network.resumeServerIndex = index
            network.resumeConnection = part.connection
            network.resumeJoined = Set(part.joined)
            network.resumeMembers = part.members
            if let connection = part.connection {
                // Folded as the server folds, before any line is read.
                network.isupport.apply(connection.isupport.sorted { $0.key < $1.key }.map { $0.value.isEmpty ? $0.key : "\($0.key)=\($0.value)" })
                network.userIDs = part.userIDs
                network.userHosts = part.userHosts
                network.otherBridgePuppets = part.otherBridgePuppets.mapValues(Set.init)
            }
            for handed in part.puppets {
                puppetGeneration += 1
                var puppet = Puppet(key: handed.key, roomNick: handed.roomNick)
                puppet.generation = puppetGeneration
                puppet.wanted = handed.wanted
                puppet.joined = Set(handed.joined)
                puppet.away = handed.away
                puppet.roles = handed.roles
                puppet.roleModes = handed.roleModes.compactMapValues(\.first)
                puppet.relayed = handed.relayed
                puppet.relayedChannels = Set(handed.relayedChannels)
                puppet.dormant = handed.dormant
                puppet.unconfirmed = Set(handed.wanted.keys)
                if let connection = handed.connection {
                    // Known as the bridge's own before NAMES names it.
                    network.puppetNicks[network.fold(connection.nick)] = handed.key
                } else if !handed.relayed && !handed.dormant {
                    // It had no connection (it was reconnecting): it connects when its
                    // occupant is confirmed, like any new puppet.
                    continue
                }
                network.puppets[handed.key] = puppet
            }
            networks[part.name] = network
            for handed in part.puppets {
                if let connection = handed.connection { puppetConnect(key: handed.key, network: part.name, after: .zero, resuming: connection) }
            }
        }
    }

    /// A shadow has federated: puppets handed over for its channel whose occupant the room did
    /// not name have left while the bridge restarted.
    func handoverShadowFederated(network name: String, channel: String) {
        guard let network = networks[name] else { return }
        let folded = network.fold(channel)
        for key in network.puppets.keys.sorted() {
            guard let puppet = networks[name]?.puppets[key], puppet.unconfirmed.contains(folded) else { continue }
            networks[name]?.puppets[key]?.unconfirmed.remove(folded)
            logger.info("a handed-over puppet's occupant left the room meanwhile", metadata: ["network": "\(name)", "puppet": "\(puppet.roomNick)"])
            puppetLeave(key: key, network: name, channel: channel, reason: nil)
        }
    }

    /// Writes QUIT on a handed-over socket nobody takes up, and closes it.
    static func quitDescriptor(_ descriptor: Int32, reason: String) {
        let line = Array("QUIT :\(reason)\r\n".utf8)
        _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        close(descriptor)
    }
}
