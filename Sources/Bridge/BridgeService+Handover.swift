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
        /// Lines it had to say once in a channel (folded channel, text), and private ones
        /// (nick, text): the room's positions are past them already.
        public var queued: [[String]]
        public var queuedPrivate: [[String]]
    }

    public var networks: [NetworkPart]
}

extension BridgeService {
    /// Stops the IRC side for another process to go on with, in two steps. First every
    /// plain, registered connection stops reading, and the lines already read are handled
    /// (relayed to the rooms). Then each stops writing, and what it knew and had still to send
    /// comes back, including what those last lines made the bridge send. XMPP stanzas that
    /// arrive from the start are left to the master's replay, as when stopping. Connections
    /// that cannot be handed over (TLS, not registered) QUIT as on SIGTERM. Then the component
    /// stream closes, once what was relayed is written.
    public func handOver() async -> BridgeHandover {
        handingOver = true
        typealias Entry = (id: String, network: String, puppet: String?, connection: IRCConnection)
        func cannotHandOver(_ entry: Entry, _ error: any Error) {
            logger.error("an IRC connection cannot be handed over; it QUITs", metadata: ["network": "\(entry.network)", "error": "\(error)"])
            entry.connection.quit("Shadowbridge is restarting", immediately: true)
        }
        var pausing: [Entry] = []
        for name in networks.keys.sorted() {
            guard let network = networks[name] else { continue }
            let plain = network.server?.tls == false
            if let connection = network.connection {
                if plain, network.nick != nil { pausing.append((name, name, nil, connection)) } else { connection.quit("Shadowbridge is restarting", immediately: true) }
            }
            for key in network.puppets.keys.sorted() {
                guard let puppet = network.puppets[key], let connection = puppet.connection else { continue }
                if plain, puppet.nick != nil { pausing.append(("\(name) \(key)", name, key, connection)) } else { connection.quit("Shadowbridge is restarting", immediately: true) }
            }
        }
        var paused: [Entry] = []
        for entry in pausing {
            do {
                try await entry.connection.pauseForHandover()
                paused.append(entry)
            } catch {
                cannotHandOver(entry, error)
            }
        }
        // Each paused connection's events end after the last line it read; wait until those
        // are handled, so what they changed is what is handed over.
        let ending = Set(paused.map(\.id))
        let deadline = ContinuousClock.now + .seconds(5)
        while !ending.isSubset(of: handoverDone), ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(10))
        }
        if !ending.isSubset(of: handoverDone) {
            logger.warning("some IRC connections' last lines were not handled before the handover", metadata: ["connections": "\(ending.subtracting(handoverDone).count)"])
        }
        let sockets = IRCConnectionHandover.openSockets()
        var bridgeConnections: [String: IRCConnectionHandover] = [:]
        var puppetConnections: [String: [String: IRCConnectionHandover]] = [:]
        for entry in paused {
            do {
                let handover = try await entry.connection.handOver(descriptors: sockets)
                if let key = entry.puppet { puppetConnections[entry.network, default: [:]][key] = handover } else { bridgeConnections[entry.network] = handover }
            } catch {
                cannotHandOver(entry, error)
            }
        }
        var parts: [BridgeHandover.NetworkPart] = []
        for name in networks.keys.sorted() {
            guard let network = networks[name], let server = network.server, bridgeConnections[name] != nil || puppetConnections[name] != nil else { continue }
            let puppets = network.puppets.values.sorted { $0.key < $1.key }.map { puppet in
                let connection = puppetConnections[name]?[puppet.key]
                return BridgeHandover.PuppetPart(
                    key: puppet.key, roomNick: puppet.roomNick, wanted: puppet.wanted, joined: connection == nil ? [] : puppet.joined.sorted(),
                    away: puppet.away, roles: puppet.roles, roleModes: puppet.roleModes.mapValues(String.init),
                    relayed: puppet.relayed, relayedChannels: puppet.relayedChannels.sorted(), dormant: puppet.dormant, connection: connection,
                    queued: puppet.queued.map { [$0.channel, $0.text] }, queuedPrivate: puppet.queuedPrivate.map { [$0.target, $0.text] })
            }
            var members: [String: [BridgeHandover.Member]] = [:]
            if bridgeConnections[name] != nil {
                for mapping in network.configuration.channels {
                    let channel = network.fold(mapping.irc)
                    // The nicks as written are the shadow room's IRC users.
                    let written = Dictionary(
                        (shadows[Self.shadowJID(channel: mapping.irc, network: name, domain: domain)]?.room.localNicks ?? []).map { (network.fold($0), $0) },
                        uniquingKeysWith: { a, _ in a })
                    // Users waiting out a netsplit are not handed over: their grace ends with
                    // this process, so the next one has them leave as a plain quit would.
                    members[channel] = (network.members[channel] ?? []).filter { network.splitUsers[$0] == nil }.sorted().map { key in
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

    /// Whether a live restart may start: not while one is under way, nor before the last one's
    /// connections are taken up (they would not be handed on).
    public var mayHandOver: Bool { handover == nil && !handingOver && !stopping }

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
                    if let connection { Self.quitDescriptor(connection, reason: "This network is no longer bridged") }
                }
                continue
            }
            network.resumeServerIndex = index
            network.resumeConnection = part.connection
            network.resumeJoined = Set(part.joined)
            network.resumeMembers = part.members
            if let isupport = (part.connection ?? part.puppets.lazy.compactMap(\.connection).first)?.isupport {
                // Folded as the server folds, before any line is read.
                network.isupport = ISupport(tokens: isupport)
            }
            if part.connection != nil {
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
                puppet.awayUnconfirmed = handed.away != nil
                puppet.queued = handed.queued.compactMap { $0.count == 2 ? ($0[0], $0[1]) : nil }
                puppet.queuedPrivate = handed.queuedPrivate.compactMap { $0.count == 2 ? ($0[0], $0[1]) : nil }
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
    func handoverShadowFederated(network name: String, channel: String, awayNicks: Set<String>) {
        guard let network = networks[name] else { return }
        let folded = network.fold(channel)
        for key in network.puppets.keys.sorted() {
            // Away before the restart and not away in the room now: back.
            if let puppet = networks[name]?.puppets[key], puppet.awayUnconfirmed, puppet.wanted[folded] != nil, !puppet.unconfirmed.contains(folded) {
                networks[name]?.puppets[key]?.awayUnconfirmed = false
                if !awayNicks.contains(puppet.roomNick) {
                    networks[name]?.puppets[key]?.away = nil
                    puppet.connection?.send(IRCMessage(command: "AWAY"))
                }
            }
            guard let puppet = networks[name]?.puppets[key], puppet.unconfirmed.contains(folded) else { continue }
            networks[name]?.puppets[key]?.unconfirmed.remove(folded)
            logger.info("a handed-over puppet's occupant left the room meanwhile", metadata: ["network": "\(name)", "puppet": "\(puppet.roomNick)"])
            puppetLeave(key: key, network: name, channel: channel, reason: nil)
        }
    }

    /// Writes QUIT on a handed-over socket nobody takes up, and closes it.
    static func quitDescriptor(_ connection: IRCConnectionHandover, reason: String) {
        guard connection.isSocket(connection.descriptor) else { return }
        let line = Array("QUIT :\(reason)\r\n".utf8)
        _ = line.withUnsafeBytes { write(connection.descriptor, $0.baseAddress, $0.count) }
        close(connection.descriptor)
    }
}
