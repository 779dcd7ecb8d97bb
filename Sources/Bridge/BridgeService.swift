import Configuration
import DMUC
import IRCCore
import IRCNIO
import Logging
import NIOCore
import Store
import XMPPCore
import XMPPNIO

/// The bridge role (DESIGN.md §1): one shadow room per mapped IRC channel.
///
/// Per network, one bridge connection reads the channels: its IRC users become the shadow's
/// local occupants and their lines are submitted to the master. Remote occupants (XMPP users,
/// other networks' IRC users) appear on IRC through one puppet connection each, and speak
/// only what the master's fanout says they said.
public actor BridgeService {
    let domain: String
    public nonisolated let session: ComponentSession
    let group: any EventLoopGroup
    let logger: Logger
    /// Bare JIDs that may run the ad-hoc commands.
    let admins: Set<JID>
    var networks: [String: NetworkState] = [:]
    var shadows: [JID: ShadowState] = [:]
    /// The task running each network's bridge connection.
    var networkTasks: [String: Task<Void, Never>] = [:]
    /// Numbers network starts (see `NetworkState.generation`).
    var networkGeneration = 0
    /// Reads the mapping files again and applies them (set by the process, which also tells
    /// the master about new rooms); used by the reload command.
    var reloader: (@Sendable () async -> (ok: Bool, text: String))?
    /// Numbers puppet connections, so a late event from a replaced one is ignored.
    var puppetGeneration = 0
    /// The IRC nick each occupant's puppet last had, by network and bare JID
    /// (`bridge.database`): a puppet that connects again asks for it first, so a restart or a
    /// reconnection does not turn `Jurgen_` into `Jurgen` or back.
    var storedPuppetNicks: [String: [String: BridgeStore.PuppetNick]] = [:]
    /// The last IRC line seen per network and channel (draft/chathistory), as stored: where a
    /// restarted bridge's catch-up starts.
    var storedSeen: [String: [String: BridgeStore.Seen]] = [:]
    let metrics = BridgeMetrics()
    private var componentConnections = 0
    /// Set by `shutdown()`: connections closing now are not reconnected.
    var stopping = false
    /// Set by `handOver()`: IRC connections end without closing, and XMPP stanzas are left to
    /// the master's replay to the next process.
    var handingOver = false
    /// Connections whose events have ended during a handover (network, or network and
    /// puppet key).
    var handoverDone: Set<String> = []
    /// What the process before handed over (a live restart), taken up when `run` starts.
    var handover: BridgeHandover?
    /// While a handler holds a copy of a network's state, room actions wait here and run after
    /// the copy is written back, so no action's change to the network is overwritten.
    private var holdingNetworkCopy = 0
    private var deferredActions: [(JID, [ShadowRoom.Action])] = []
    /// Seconds between link keepalive ticks (`xmpp.link_ping_interval`).
    let pingInterval: Double
    /// Link stanzas from a master in this process (`xmpp.link = "memory"`).
    let inbox = AsyncStream<XMLElement>.makeStream()
    /// The ident server's address (`bridge.identd`), and the user names it answers with.
    let identd: (host: String, port: Int)?
    let identTable: IdentTable?
    /// Keys the hash behind puppets' user and host names (the component secret).
    let identitySecret: [UInt8]
    /// The running ident server, once started.
    var identServer: IdentServer?
    /// RELAYMSG lines sent and not yet echoed back (channel, the occupant's room nick, the text
    /// as sent), per network, oldest first: a FAIL names
    /// no line, so it refers to the oldest, which is sent again the plain way. Kept beside
    /// `networks`, not in it, because lines are relayed while a handler holds a copy of the
    /// network's state.
    var relaymsgPending: [String: [(channel: String, nick: String, text: String)]] = [:]

    /// Runs `body` with a copy of the network's state, writes the copy back, then performs the
    /// room actions `body` raised.
    func withNetwork(_ name: String, _ body: (inout NetworkState) -> Void) {
        guard var network = networks[name] else { return }
        holdingNetworkCopy += 1
        body(&network)
        networks[name] = network
        holdingNetworkCopy -= 1
        guard holdingNetworkCopy == 0 else { return }
        while !deferredActions.isEmpty {
            let (jid, actions) = deferredActions.removeFirst()
            perform(actions, shadow: jid)
        }
    }

    struct ShadowState: Sendable {
        var room: ShadowRoom
        let network: String
        let channel: String
        /// Federation attempts that failed in a row, for the retry backoff.
        var federationFailures = 0
        /// The position last written to the store.
        var savedPosition: BridgeStore.Position?
    }

    /// Where each shadow room stands in its master room's sequence (`bridge.database`).
    let store: BridgeStore?

    public init(
        configuration: ShadowbridgeConfiguration.Bridge, xmpp: ShadowbridgeConfiguration.XMPPServer, admins: [JID] = [],
        store: BridgeStore? = nil, handover: BridgeHandover? = nil, group: any EventLoopGroup, logger: Logger
    ) {
        self.handover = handover
        self.store = store
        self.domain = configuration.domain
        self.identd = configuration.identd
        self.identitySecret = Array(configuration.secret.utf8)
        self.identTable = configuration.identd == nil ? nil : IdentTable()
        self.pingInterval = xmpp.linkPingInterval
        self.admins = Set(admins.map(\.bare))
        self.group = group
        var logger = logger
        logger[metadataKey: "role"] = "bridge"
        self.logger = logger
        self.session = ComponentSession(
            configuration: ComponentConfiguration(
                host: xmpp.host, port: xmpp.port, domain: configuration.domain, secret: configuration.secret,
                identity: ("gateway", "irc", "Shadowbridge IRC gateway"), features: [NS.discoItems, NS.commands]),
            group: group, logger: logger)
        for network in configuration.networks {
            networkGeneration += 1
            networks[network.name] = NetworkState(configuration: network, generation: networkGeneration)
            for channel in network.channels {
                let (jid, state) = Self.shadow(for: channel, network: network, domain: configuration.domain)
                shadows[jid] = state
            }
        }
    }

    /// After a restart: puppets' nicks and where each channel stood in its server's history
    /// come back, and each shadow room federates from where it stood, so the master sends
    /// the lines said meanwhile and nothing relayed before. A position stored for another
    /// master room (the mapping changed) is not used.
    func restoreStoredState() {
        guard let store else { return }
        do {
            storedPuppetNicks = try store.puppetNicks()
            storedSeen = try store.seen()
        } catch {
            logger.error("puppet nicks and IRC positions unreadable; puppets ask for fresh nicks", metadata: ["database": "\(store.path ?? "memory")", "error": "\(error)"])
        }
        // Channels unmapped while the bridge was down start afresh if mapped again. (The
        // stored name is folded under the server's case mapping, not known yet: either fold.)
        var unmappedSeen: [(String, String)] = []
        for (name, channels) in storedSeen {
            let mapped = Set((networks[name]?.configuration.channels ?? []).flatMap { [IRCCaseMapping.ascii.fold($0.irc), IRCCaseMapping.rfc1459.fold($0.irc)] })
            unmappedSeen += channels.keys.filter { !mapped.contains($0) }.map { (name, $0) }
        }
        forgetSeen(unmappedSeen)
        let stored: [String: (master: String, position: BridgeStore.Position)]
        do {
            stored = try store.positions()
        } catch {
            logger.error("bridge state unreadable; rooms federate afresh", metadata: ["database": "\(store.path ?? "memory")", "error": "\(error)"])
            return
        }
        // Rooms no mapping names any more (removed while the bridge was down) start afresh
        // if they are ever mapped again.
        let unmapped = stored.keys.filter { JID($0).map { shadows[$0] == nil } ?? true }
        do {
            try store.forget(shadows: unmapped.sorted())
        } catch {
            logger.error("bridge state not written", metadata: ["error": "\(error)"])
        }
        for (jid, state) in shadows {
            guard let (master, position) = stored[jid.description], master == state.room.masterRoom.description, state.savedPosition == nil else { continue }
            shadows[jid]?.room.resume(epoch: position.epoch, seq: position.seq)
            shadows[jid]?.savedPosition = position
            logger.info("shadow resumes from its stored position", metadata: ["shadow": "\(jid)", "seq": "\(position.seq)"])
        }
    }

    /// Writes the room's position before anything up to it is relayed to IRC: a kill can lose
    /// the lines in flight but never relay one twice (BridgeStore). A failed write (a full
    /// disk) does not hold the room up: its lines are relayed, counted as `state_not_written`,
    /// and a restart before the next good write may show them on IRC again.
    private func savePosition(_ jid: JID) {
        guard let state = shadows[jid], let (epoch, seq) = state.room.position else { return }
        let position = BridgeStore.Position(epoch: epoch, seq: seq)
        guard position != state.savedPosition else { return }
        if writeState(["shadow": "\(jid)"], { try $0.savePosition(position, shadow: jid.description, master: state.room.masterRoom.description) }) {
            shadows[jid]?.savedPosition = position
        }
    }

    /// One write of the bridge's state; a failure (a full disk) is logged and counted as
    /// `state_not_written`, never thrown: the bridge goes on relaying. True when it landed.
    func writeState(_ metadata: Logger.Metadata, failure message: Logger.Message = "bridge state not written", _ write: (BridgeStore) throws -> Void) -> Bool {
        guard let store else { return false }
        do {
            try write(store)
            return true
        } catch {
            metrics.stateWriteFailures.increment()
            logger.error(message, metadata: metadata.merging(["error": "\(error)"]) { $1 })
            return false
        }
    }

    /// Forgets where channels no longer bridged stood in their server's history.
    func forgetSeen(_ channels: [(network: String, channel: String)]) {
        guard !channels.isEmpty else { return }
        for (name, channel) in channels { storedSeen[name]?[channel] = nil }
        _ = writeState(["channels": "\(channels.count)"]) { try $0.forgetSeen(channels) }
    }

    /// Stores the newest channel line seen before it is relayed, like a room's position: a
    /// restart asks the server for what came after it, and a kill loses at most the line in
    /// flight, never relays one twice.
    private func saveSeen(_ seen: BridgeStore.Seen, channel: String, network name: String) {
        guard storedSeen[name]?[channel] != seen else { return }
        if writeState(["network": "\(name)"], { try $0.saveSeen(seen, channel: channel, network: name) }) {
            storedSeen[name, default: [:]][channel] = seen
        }
    }

    static func shadow(for channel: Network.Channel, network: Network, domain: String) -> (JID, ShadowState) {
        let jid = shadowJID(channel: channel.irc, network: network.name, domain: domain)
        let room = ShadowRoom(masterRoom: channel.room, jid: jid, collisionSuffix: network.translation.collisionSuffix)
        return (jid, ShadowState(room: room, network: network.name, channel: channel.irc))
    }

    /// `#ops%example@irc.example.org` (PROTOCOL.md §2).
    static func shadowJID(channel: String, network: String, domain: String) -> JID {
        JID(local: "\(channel.lowercased())%\(network)", domain: domain)
    }

    /// Runs the component session and every network until the task is cancelled.
    public func run() async {
        restoreStoredState()
        await startIdentd()
        // Networks handed over are started once the component is connected (`takeUpHandover`;
        // `startNetworkTask` skips them until then): a line read before could not reach the room.
        for name in networks.keys.sorted() { startNetworkTask(name) }
        if handover != nil {
            Task {
                try? await Task.sleep(for: .seconds(15))
                self.takeUpHandover()
            }
        }
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { tasks in
                tasks.addTask { await self.session.run(onConnected: { await self.componentConnected() }, onStanza: { stanza in await self.handleStanza(stanza) }) }
                tasks.addTask { await self.keepLinksAlive() }
                tasks.addTask {
                    for await stanza in self.inbox.stream { await self.handleStanza(stanza) }
                }
                await tasks.next()
                tasks.cancelAll()
            }
        } onCancel: {
            Task { await self.cancelNetworkTasks() }
        }
        cancelNetworkTasks()
        await identServer?.stop()
    }

    /// The ident server is optional: when its port cannot be had (113 needs root or
    /// CAP_NET_BIND_SERVICE), the bridge says so and goes on, and networks show `~user`.
    private func startIdentd() async {
        guard let identd, let identTable else { return }
        do {
            identServer = try await IdentServer.start(host: identd.host, port: identd.port, table: identTable, group: group, logger: logger)
        } catch {
            logger.error(
                "identd cannot listen; IRC connections go on without ident",
                metadata: ["address": "\(identd.host):\(identd.port)", "error": "\(error)"])
        }
    }

    /// A link stanza from the master in this process, handed over without the XMPP server.
    public nonisolated func deliverInMemory(_ stanza: XMLElement) {
        inbox.continuation.yield(stanza)
    }

    /// Flow G: every `pingInterval`, each federated shadow pings a silent master and federates
    /// again after three unanswered pings.
    private func keepLinksAlive() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int(pingInterval * 1000)))
            if Task.isCancelled { return }
            for jid in shadows.keys.sorted() {
                guard var room = shadows[jid]?.room, room.isFederated else { continue }
                let actions = room.tick()
                shadows[jid]?.room = room
                perform(actions, shadow: jid)
            }
        }
    }

    func startNetworkTask(_ name: String) {
        guard let generation = networks[name]?.generation else { return }
        // A handover not yet taken up starts its networks itself.
        if let handover, handover.networks.contains(where: { $0.name == name }) { return }
        networkTasks[name] = Task { await self.runNetwork(name, generation: generation) }
    }

    private func cancelNetworkTasks() {
        for task in networkTasks.values { task.cancel() }
        networkTasks.removeAll()
    }

    /// Sets what the reload command runs.
    public func setReloader(_ reloader: @escaping @Sendable () async -> (ok: Bool, text: String)) {
        self.reloader = reloader
    }

    /// Leaves IRC politely (DESIGN.md §5). The IRC users are not taken out of the rooms: the
    /// master keeps them through its split grace (`master.split_grace`), so a restart shows
    /// nobody leave; if the bridge does not come back, they leave then, with 333.
    public func shutdown() async {
        stopping = true
        for network in networks.values {
            for puppet in network.puppets.values { puppet.connection?.quit("Shadowbridge is shutting down", immediately: true) }
            network.connection?.quit("Shadowbridge is shutting down", immediately: true)
        }
        await session.close()
    }

    // MARK: - The bridge connection of a network

    /// Connects the bridge's own connection, keeps it up, and rotates through the network's
    /// servers. A server that bans us, refuses our SASL credentials or fails TLS is not tried
    /// again (the same attempt would fail the same way, and hammering a ban gets the whole
    /// address range banned); when no server is left the network stops and says why, until a
    /// reload. A throttle waits longer than a plain loss.
    private func runNetwork(_ name: String, generation: Int) async {
        guard let network = networks[name]?.configuration else { return }
        var reconnects = Reconnects()
        var serverIndex = networks[name]?.resumeServerIndex ?? 0
        var refusedBy: [Network.Server: IRCDisconnect] = [:]
        func current() -> Bool { networks[name]?.generation == generation && !Task.isCancelled && !stopping }
        // During a handover the connection's last events are handled, but nothing new starts.
        func mayConnect() -> Bool { current() && !handingOver }
        while mayConnect() {
            // The next server, from the current one on, that has not refused us for good.
            guard let index = (0..<network.servers.count).lazy.map({ (serverIndex + $0) % network.servers.count })
                .first(where: { refusedBy[network.servers[$0]] == nil })
            else {
                let why = refusedBy.map { "\($0.key): \($0.value.reason)" }.sorted().joined(separator: "; ")
                networks[name]?.lastError = "stopped: no server will take the bridge (\(why)); fix the mapping and reload"
                logger.error("IRC network stopped: every server refused the bridge; fix the mapping and reload", metadata: ["network": "\(name)", "why": "\(why)"])
                return
            }
            serverIndex = index
            let server = network.servers[index]
            let irc = connectionSettings(network, server: server, nick: network.nick, username: "shadowbridge", realname: "Shadowbridge IRC-XMPP bridge", bridge: true)
            var disconnect: IRCDisconnect
            var connected = false
            do {
                let connection: IRCConnection
                if let handover = networks[name]?.resumeConnection {
                    networks[name]?.resumeConnection = nil
                    connection = try await IRCConnection.adopt(handover, configuration: irc, group: group, logger: logger.with("network", name))
                } else {
                    connection = try await IRCConnection.connect(irc, group: group, logger: logger.with("network", name))
                }
                guard current() else {
                    // Removed by a reload while connecting.
                    connection.quit("This network is no longer bridged", immediately: true)
                    return
                }
                connected = true
                networks[name]?.connection = connection
                networks[name]?.server = server
                disconnect = IRCDisconnect(.lost, "connection closed")
                for await event in connection.events {
                    guard current() else { break }
                    if case .closed(let reason) = event { disconnect = reason }
                    if case .registered = event { reconnects.registered() }
                    if case .resumed = event { reconnects.registered() }
                    handleNetworkEvent(name, event)
                }
                if handingOver {
                    handoverDone.insert(name)
                    return
                }
                guard current() else { return }
                metrics.ircReconnects.increment()
                networkLost(name)
            } catch let error as IRCTLSSetupError {
                metrics.ircConnectFailures.increment()
                disconnect = IRCDisconnect(.tlsFailed, "\(error)")
            } catch {
                metrics.ircConnectFailures.increment()
                disconnect = IRCDisconnect(.lost, "cannot connect: \(error)")
            }
            let failures = reconnects.lost()
            networks[name]?.lastError = "\(server): \(disconnect.reason)"
            let metadata: Logger.Metadata = ["network": "\(name)", "server": "\(server)", "reason": "\(disconnect.reason)", "attempt": "\(failures)"]
            if disconnect.isPermanent {
                refusedBy[server] = disconnect
                logger.error("IRC server refused the bridge; not trying it again until a reload", metadata: metadata)
                serverIndex += 1
                continue
            }
            let delay: Duration
            switch disconnect.kind {
            case .throttled, .connectionLimit, .unavailable:
                logger.warning("IRC server asks us to slow down; waiting before the next attempt", metadata: metadata)
                serverIndex += 1
                delay = Backoff.delay(attempt: failures + 6, base: 1, cap: 300)
            default:
                logger.warning(connected ? "IRC connection lost; reconnecting" : "cannot connect to the IRC server", metadata: metadata)
                if failures > 1 { serverIndex += 1 }
                delay = Backoff.delay(attempt: failures)
            }
            guard mayConnect() else { return }
            try? await Task.sleep(for: delay)
        }
    }

    /// How one connection to `network` is made: TLS for ircs:// servers (every connection);
    /// the client certificate, SASL and the bot mode for the bridge's own connection only (a
    /// network that identifies by certificate fingerprint must not log puppets in as the bridge).
    func connectionSettings(
        _ network: Network, server: Network.Server, nick: String, username: String, realname: String, bridge: Bool, puppetKey: String? = nil
    ) -> IRCConnectionConfiguration {
        let tls = server.tls
            ? IRCTLSConfiguration(
                verify: network.tls.verify, caFile: network.tls.caFile, pinnedSHA256: network.tls.pinnedSHA256,
                certificateFile: bridge ? network.tls.certificateFile : nil, keyFile: bridge ? network.tls.keyFile : nil)
            : nil
        var sasl: IRCSASL?
        if bridge, let settings = network.sasl {
            switch settings.mechanism {
            case .plain: sasl = .plain(account: settings.account, password: settings.password ?? "")
            case .external: sasl = .external
            }
        }
        var configuration = IRCConnectionConfiguration(
            host: server.host, port: server.port, nick: nick, username: username, realname: realname, password: network.password,
            fallbackEncoding: IRCTextEncoding(rawValue: network.encodingFallback) ?? .cp1252,
            floodBurst: network.floodBurst, floodLinesPerSecond: network.floodLinesPerSecond, tls: tls, sasl: sasl, markAsBot: bridge,
            bindAddress: network.bindAddress.map { address in puppetKey.map(address.puppetAddress(for:)) ?? address.bridgeAddress },
            webirc: network.webirc.map { settings in
                IRCWebIRC(
                    password: settings.password, gateway: settings.gateway,
                    hostname: puppetKey.map { PuppetNick.host(for: $0, secret: identitySecret, domain: domain) } ?? domain)
            },
            identTable: identTable)
        configuration.deaf = !bridge && network.deafPuppets
        return configuration
    }

    private func handleNetworkEvent(_ name: String, _ event: IRCConnectionEvent) {
        withNetwork(name) { network in handleNetworkEvent(name, event, network: &network) }
    }

    private func handleNetworkEvent(_ name: String, _ event: IRCConnectionEvent, network: inout NetworkState) {
        switch event {
        case .registered(let nick):
            network.nick = nick
            network.relaymsgRefused = false
            relaymsgPending[name] = nil
            logger.info("IRC bridge connection registered", metadata: ["network": "\(name)", "nick": "\(nick)"])
            let channels = network.configuration.channels.map(\.irc)
            network.connection?.send(channels.map { IRCMessage(command: "JOIN", $0) })
        case .resumed(let nick):
            // Handed over in its channels: the IRC users the process before knew there are in
            // the rooms again (as NAMES after a JOIN would put them), and the lines that follow
            // in the connection take it on from there. Nothing was missed: no catch-up.
            network.nick = nick
            network.joined = network.resumeJoined
            network.resumeJoined = []
            logger.info("IRC bridge connection taken over from the process before", metadata: ["network": "\(name)", "nick": "\(nick)"])
            for (channel, members) in network.resumeMembers.sorted(by: { $0.key < $1.key }) where network.joined.contains(channel) {
                for member in members {
                    network.memberModes[channel, default: [:]][network.fold(member.nick)] = Set(member.modes)
                    ircUserJoined(member.nick, channel: channel, network: &network)
                }
            }
            network.resumeMembers = [:]
            let channels = network.configuration.channels.map(\.irc)
            network.connection?.send(channels.filter { !network.joined.contains(network.fold($0)) }.map { IRCMessage(command: "JOIN", $0) })
        case .isupport(let isupport):
            network.isupport = isupport
        case .capabilities(let capabilities, let values):
            network.capabilities = capabilities
            network.capabilityValues = values
            logger.info("IRC capabilities", metadata: ["network": "\(name)", "enabled": "\(capabilities.sorted().joined(separator: " "))"])
        case .authenticated(let account):
            logger.info("IRC bridge connection logged in with SASL", metadata: ["network": "\(name)", "account": "\(account)"])
        case .closed:
            break
        case .message(let message):
            handleBridgeMessage(message, network: &network)
        }
    }

    private func handleBridgeMessage(_ message: IRCMessage, network: inout NetworkState) {
        let sourceNick = message.sourceNick ?? ""
        let fromSelf = network.fold(sourceNick) == network.fold(network.nick ?? "")
        let otherBridgePuppet = network.otherBridgePuppets[network.fold(sourceNick)] != nil
        let fromPuppet = network.puppetNicks[network.fold(sourceNick)] != nil || otherBridgePuppet
        switch message.command {
        case "353":
            // RPL_NAMREPLY: me, symbol, channel, names.
            guard message.parameters.count >= 4 else { return }
            let channel = network.fold(message.parameters[2])
            let prefixes = network.isupport.prefixCharacters
            let modeFor = Dictionary(network.isupport.prefixes.map { ($0.prefix, $0.mode) }, uniquingKeysWith: { a, _ in a })
            for name in message.parameters[3].split(separator: " ") {
                // multi-prefix gives "@+nick", userhost-in-names "nick!user@host".
                let source = name.drop(while: { prefixes.contains($0) })
                let nick = String(source.prefix(while: { $0 != "!" }))
                if network.puppetNicks[network.fold(nick)] == nil,
                    network.otherBridgePuppets[network.fold(nick)] != nil || network.isOtherBridgePuppet(String(source))
                {
                    network.otherBridgePuppets[network.fold(nick), default: []].insert(channel)
                    continue
                }
                let modes = Set(name.prefix(while: { prefixes.contains($0) }).compactMap { modeFor[$0] })
                network.memberModes[channel, default: [:]][network.fold(nick)] = modes
                network.pendingNames[channel, default: []].append(nick)
            }
        case "366":
            guard message.parameters.count >= 2 else { return }
            let channel = network.fold(message.parameters[1])
            let names = network.pendingNames.removeValue(forKey: channel) ?? []
            if network.lastSeen[channel] == nil, let seen = storedSeen[network.configuration.name]?[channel] {
                // Restarted: the catch-up starts from the last line the previous process saw
                // (rows stored before tokens were checked may hold anything).
                network.lastSeen[channel] = (seen.msgid.flatMap(NetworkState.token), seen.time.flatMap(NetworkState.token))
                // The server's answer starts after it, or (some servers) with it.
                if let msgid = seen.msgid { network.recentMessageIDs[channel, default: []].append(msgid) }
            }
            for nick in names where !nick.isEmpty {
                // After the bridge's own reconnection, NAMES is the netjoin.
                netjoin(nick, host: nil, channel: channel, network: &network)
                ircUserJoined(nick, channel: channel, network: &network)
            }
            // The users are back in the room; now what they said while the bridge was away.
            if let request = network.catchUpRequest(channel: channel, name: message.parameters[1]) {
                logger.info("IRC catch-up: asking for the lines said while the bridge was away", metadata: ["network": "\(network.configuration.name)", "channel": "\(channel)"])
                network.connection?.send(request)
            }
        case "JOIN":
            guard let channel = message.parameters.first.map(network.fold) else { return }
            if fromSelf {
                network.joined.insert(channel)
            } else if !fromPuppet, network.isOtherBridgePuppet(message.source ?? sourceNick, realname: message.parameters.dropFirst(2).first) {
                // Another bridge's puppet (flow J): its user reaches the room another way. One
                // taken for an IRC user before (NAMES shows no realname) leaves the room now.
                let key = network.fold(sourceNick)
                for other in network.members.keys.sorted() where network.members[other]!.contains(key) {
                    ircUserLeft(sourceNick, channel: other, reason: "another bridge's user", network: &network)
                    network.otherBridgePuppets[key, default: []].insert(other)
                }
                network.otherBridgePuppets[key, default: []].insert(channel)
                logger.debug("another bridge's puppet is not an occupant", metadata: ["network": "\(network.configuration.name)", "nick": "\(sourceNick)"])
            } else if otherBridgePuppet {
                network.otherBridgePuppets[network.fold(sourceNick), default: []].insert(channel)
            } else if !fromPuppet {
                let host = message.source?.split(separator: "@", maxSplits: 1).dropFirst().first.map(String.init)
                netjoin(sourceNick, host: host, channel: channel, network: &network)
                if let host { network.userHosts[network.fold(sourceNick)] = host }
                ircUserJoined(sourceNick, channel: channel, network: &network)
                lazyOccupantsNotice(to: sourceNick, channel: channel, network: network)
            }
        case "PART":
            guard let channel = message.parameters.first.map(network.fold) else { return }
            if fromSelf {
                network.joined.remove(channel)
                channelLost(channel, network: &network, reason: "the bridge left the channel")
            } else if otherBridgePuppet {
                network.otherBridgePuppetLeft(sourceNick, channel: channel)
            } else if !fromPuppet {
                ircUserLeft(sourceNick, channel: channel, reason: message.parameters.dropFirst().first, network: &network)
            }
        case "KICK":
            guard message.parameters.count >= 2 else { return }
            let channel = network.fold(message.parameters[0])
            let target = message.parameters[1]
            let reason = message.parameters.count > 2 ? message.parameters[2] : nil
            if network.fold(target) == network.fold(network.nick ?? "") {
                network.joined.remove(channel)
                channelLost(channel, network: &network, reason: "the bridge was kicked")
                network.connection?.send(IRCMessage(command: "JOIN", message.parameters[0]))
            } else if network.otherBridgePuppets[network.fold(target)] != nil {
                network.otherBridgePuppetLeft(target, channel: channel)
            } else if network.puppetNicks[network.fold(target)] == nil {
                ircUserLeft(target, channel: channel, reason: reason, kickedBy: sourceNick, network: &network)
            }
        case "BATCH":
            network.noteBatch(message.parameters)
        case "QUIT":
            if otherBridgePuppet { network.otherBridgePuppetLeft(sourceNick, channel: nil) }
            guard !fromSelf && !fromPuppet else { return }
            // In a netsplit batch the batch names the servers; the reason may hide them
            // (`*.net *.split`) or be anything the server chose.
            if let servers = network.netsplitServers(of: message), network.configuration.translation.netsplitGrace > 0 {
                netsplitQuit(sourceNick, reason: servers, network: &network)
                return
            }
            if let reason = message.parameters.first, NetworkState.isNetsplit(reason), network.configuration.translation.netsplitGrace > 0 {
                netsplitQuit(sourceNick, reason: reason, network: &network)
                return
            }
            if let reason = message.parameters.first, NetworkState.isServerShutdown(reason), network.configuration.translation.netsplitGrace > 0 {
                netsplitQuit(sourceNick, reason: connectionEnds(network), network: &network)
                return
            }
            for channel in network.members.keys.sorted() where network.members[channel]!.contains(network.fold(sourceNick)) {
                ircUserLeft(sourceNick, channel: channel, reason: message.parameters.first.map { "Quit: \($0)" }, network: &network)
            }
        case "NICK":
            guard let newNick = message.parameters.first else { return }
            if fromSelf {
                // Its channel status goes with it.
                let oldKey = network.fold(sourceNick), newKey = network.fold(newNick)
                for channel in network.memberModes.keys {
                    if let modes = network.memberModes[channel]?.removeValue(forKey: oldKey) { network.memberModes[channel]?[newKey] = modes }
                }
                network.nick = newNick
                return
            }
            if otherBridgePuppet, let channels = network.otherBridgePuppets.removeValue(forKey: network.fold(sourceNick)) {
                network.otherBridgePuppets[network.fold(newNick)] = channels
            }
            guard !fromPuppet else { return }
            // One nick change in every room the user is in (303), never a leave and a join.
            let oldKey = network.fold(sourceNick)
            let newKey = network.fold(newNick)
            // Taking the nick of a user lost to a netsplit: she is not coming back as herself.
            if newKey != oldKey { splitEnded(newKey, network: &network) }
            if let id = network.userIDs.removeValue(forKey: oldKey) { network.userIDs[newKey] = id }
            if let host = network.userHosts.removeValue(forKey: oldKey) { network.userHosts[newKey] = host }
            for channel in network.members.keys.sorted() where network.members[channel]!.contains(oldKey) {
                network.members[channel]!.remove(oldKey)
                network.members[channel]!.insert(newKey)
                if let modes = network.memberModes[channel]?.removeValue(forKey: oldKey) { network.memberModes[channel, default: [:]][newKey] = modes }
                withShadow(network: network.configuration.name, channel: channel) { $0.ircNickChanged(from: sourceNick, to: newNick) }
            }
        case "MODE":
            guard message.parameters.count >= 2, network.isupport.isChannel(message.parameters[0]) else { return }
            let channel = network.fold(message.parameters[0])
            let changes = IRCModeChange.parse(message.parameters[1], arguments: Array(message.parameters.dropFirst(2)), isupport: network.isupport)
            let prefixModes = Set(network.isupport.prefixes.map(\.mode))
            for change in changes where prefixModes.contains(change.mode) {
                guard let target = change.argument else { continue }
                let key = network.fold(target)
                if key == network.fold(network.nick ?? "") {
                    // The bridge's own: whether it may KICK and ban for the room's moderators.
                    if change.adding { network.memberModes[channel, default: [:]][key, default: []].insert(change.mode) } else { network.memberModes[channel]?[key]?.remove(change.mode) }
                    continue
                }
                guard network.members[channel]?.contains(key) == true else { continue }
                var modes = network.memberModes[channel]?[key] ?? []
                let before = NetworkState.role(for: modes)
                if change.adding { modes.insert(change.mode) } else { modes.remove(change.mode) }
                network.memberModes[channel, default: [:]][key] = modes
                let after = NetworkState.role(for: modes)
                if after != before {
                    withShadow(network: network.configuration.name, channel: channel) { $0.ircRoleChanged(nick: target, role: after) }
                }
            }
        case "TOPIC":
            guard !fromSelf && !fromPuppet, message.parameters.count >= 2 else { return }
            let channel = network.fold(message.parameters[0])
            let topic = XMLEscaping.xmlSafe(message.parameters[1])
            withShadow(network: network.configuration.name, channel: channel) { $0.ircTopic(nick: sourceNick, topic: topic) }
        case "AWAY":
            // away-notify: AWAY with a message is away, without one is back.
            guard !fromSelf && !fromPuppet else { return }
            let key = network.fold(sourceNick)
            let away = message.parameters.first.map { XMLEscaping.xmlSafe(IRCFormatting(parsing: $0).plainText) }
            for channel in network.members.keys.sorted() where network.members[channel]!.contains(key) {
                withShadow(network: network.configuration.name, channel: channel) { $0.ircAway(nick: sourceNick, message: away) }
            }
        case "CHGHOST":
            // chghost: a new user@host is not a leave and a join; bans use the new host.
            guard !fromSelf && !fromPuppet, message.parameters.count >= 2, network.userHosts[network.fold(sourceNick)] != nil else { return }
            network.userHosts[network.fold(sourceNick)] = message.parameters[1]
        case "FAIL" where message.parameters.first?.uppercased() == "RELAYMSG":
            relaymsgFailed(message, network: &network)
        case "PRIVMSG", "NOTICE":
            if message.parameters.count >= 2, network.isupport.isChannel(message.parameters[0]) {
                let channel = network.fold(message.parameters[0])
                let before = network.lastSeen[channel]
                guard network.noteSeen(message, channel: channel) else { return }  // history repeating a line already relayed
                if let seen = network.lastSeen[channel], seen.msgid != before?.msgid || seen.time != before?.time {
                    saveSeen(.init(msgid: seen.msgid, time: seen.time), channel: channel, network: network.configuration.name)
                }
            }
            if let relayer = message.tags.first(where: { $0.key == "draft/relaymsg" || $0.key == "relaymsg" })?.value,
                network.fold(relayer) == network.fold(network.nick ?? "")
            {
                // The echo of a line we relayed: it went out; it is not news for the room.
                let name = network.configuration.name
                if let index = relaymsgPending[name]?.firstIndex(where: { $0.text == message.parameters.last && network.fold($0.channel) == network.fold(message.parameters[0]) }) {
                    relaymsgPending[name]?.removeSubrange(...index)
                }
                return
            }
            if fromPuppet && !otherBridgePuppet {
                puppetLineSeen(message, network: &network)
                return
            }
            guard !fromSelf && !fromPuppet, message.parameters.count >= 2 else { return }
            let target = network.fold(message.parameters[0])
            if message.command == "PRIVMSG", target == network.fold(network.nick ?? "") {
                privateMessageToBridge(from: sourceNick, text: message.parameters[1], network: &network)
                return
            }
            guard network.members[target] != nil else { return }
            guard var body = Self.bodyFromIRC(message.parameters[1]) else { return }
            if message.command == "NOTICE" {
                // A CTCP reply is not conversation. A notice is marked, so that XMPP users can
                // tell it from a line (PROTOCOL §4), as mIRC shows it apart.
                guard !message.parameters[1].hasPrefix("\u{01}") else { return }
                body = Self.noticeMark + body
            }
            // The line's XMPP id and origin-id (XEP-0359): the server's msgid, so that XMPP
            // clients, the archive and the server's history name the line alike; a random id
            // when it gave none, or one that is not a short printable token.
            let msgid = message.tag("msgid").flatMap(NetworkState.token)
            let originID = msgid ?? RandomID.make(bytes: 12)
            // An IRCv3 client's reply (client tag, ircv3 reply spec) names a line by its msgid.
            let inReplyTo = message.tag("+draft/reply").flatMap(NetworkState.token)
            withShadow(network: network.configuration.name, channel: target) { room in
                room.ircMessage(nick: sourceNick, body: body, originID: originID, isIRCMsgID: msgid != nil, inReplyTo: inReplyTo)
            }
        default:
            break
        }
    }

    /// CTCP ACTION becomes `/me`; other CTCP is not conversation and is not relayed. mIRC
    /// formatting becomes XEP-0393 styling where it maps and is dropped where it does not
    /// (colours), never leaving its digits in the text.
    static func bodyFromIRC(_ text: String) -> String? {
        if text.hasPrefix("\u{1}") {
            var inner = text.dropFirst()
            if inner.hasSuffix("\u{1}") { inner = inner.dropLast() }
            if inner.hasPrefix("ACTION ") { return XMLEscaping.xmlSafe("/me " + IRCFormatting(parsing: String(inner.dropFirst(7))).styledText) }
            return nil
        }
        let safe = XMLEscaping.xmlSafe(IRCFormatting(parsing: text).styledText)
        return safe.isEmpty ? nil : safe
    }

    private func ircUserJoined(_ nick: String, channel: String, network: inout NetworkState) {
        let key = network.fold(nick)
        guard key != network.fold(network.nick ?? ""), network.puppetNicks[key] == nil else { return }
        network.members[channel, default: []].insert(key)
        let id = network.userIDs[key] ?? "u" + RandomID.make(bytes: 5)
        network.userIDs[key] = id
        let real = JID(local: "\(id)%\(network.configuration.name)", domain: domain, resource: "irc")
        let role = NetworkState.role(for: network.memberModes[channel]?[key] ?? [])
        withShadow(network: network.configuration.name, channel: channel) { $0.ircJoined(nick: nick, realJID: real, role: role) }
    }

    private func ircUserLeft(_ nick: String, channel: String, reason: String?, kickedBy: String? = nil, netsplit: Bool = false, network: inout NetworkState) {
        let key = network.fold(nick)
        guard network.members[channel]?.remove(key) != nil else { return }
        network.memberModes[channel]?.removeValue(forKey: key)
        if !network.members.values.contains(where: { $0.contains(key) }) { network.forget(key) }
        withShadow(network: network.configuration.name, channel: channel) { $0.ircLeft(nick: nick, reason: reason, kickedBy: kickedBy, netsplit: netsplit) }
    }

    /// A netsplit took this user's server away: she stays in the room for the grace period,
    /// and a netjoin within it shows nothing at all (PROTOCOL.md §4: no flood, a diffed
    /// rejoin). Whoever is not back by then leaves with 333, the split's servers as status.
    private func netsplitQuit(_ nick: String, reason: String, network: inout NetworkState) {
        let key = network.fold(nick)
        let channels = Set(network.members.filter { $0.value.contains(key) }.keys)
        guard !channels.isEmpty else { return }
        if network.splitUsers.isEmpty {
            network.splits += 1
            let split = network.splits, name = network.configuration.name, generation = network.generation
            let grace = network.configuration.translation.netsplitGrace
            logger.info("IRC netsplit: its users stay in the rooms until the netjoin or the grace period ends", metadata: ["network": "\(name)", "servers": "\(reason)", "grace": "\(grace)"])
            Task { [self] in
                try? await Task.sleep(for: .milliseconds(Int(grace * 1000)))
                self.netsplitOver(name, split: split, generation: generation)
            }
        }
        network.splitUsers[key] = (nick, channels, reason, network.splits)
    }

    /// A JOIN from a user lost to a netsplit: she is back in that channel (already in the room).
    /// Someone else with her nick (another host) is not her netjoin: her split ends first.
    private func netjoin(_ nick: String, host: String?, channel: String, network: inout NetworkState) {
        let key = network.fold(nick)
        guard var split = network.splitUsers[key] else { return }
        if let host, let known = network.userHosts[key], host != known {
            splitEnded(key, network: &network)
            return
        }
        split.channels.remove(channel)
        network.splitUsers[key] = split.channels.isEmpty ? nil : split
    }

    /// A user lost to a netsplit leaves the room now, with 333.
    private func splitEnded(_ key: String, network: inout NetworkState) {
        guard let user = network.splitUsers.removeValue(forKey: key) else { return }
        for channel in user.channels.sorted() {
            ircUserLeft(user.nick, channel: channel, reason: user.reason, netsplit: true, network: &network)
        }
    }

    /// The grace period of a netsplit ended: whoever has not come back leaves, all at once
    /// (users lost while it ran, the same split seen late, go with it).
    private func netsplitOver(_ name: String, split: Int, generation: Int) {
        withNetwork(name) { network in
            guard network.generation == generation else { return }
            for key in network.splitUsers.filter({ $0.value.split <= split }).keys.sorted() {
                splitEnded(key, network: &network)
            }
        }
    }

    /// The bridge is no longer in the channel: its IRC users leave the room.
    private func channelLost(_ channel: String, network: inout NetworkState, reason: String) {
        for key in (network.members[channel] ?? []).sorted() {
            ircUserLeft(key, channel: channel, reason: reason, network: &network)
        }
        network.memberModes[channel] = nil
        for nick in network.otherBridgePuppets.keys.sorted() { network.otherBridgePuppetLeft(nick, channel: channel) }
    }

    /// What an IRC NOTICE's body starts with in the room.
    static let noticeMark = "[notice] "

    /// What the bridge tells one XMPP user about a channel: a chat message from the channel's
    /// shadow room address.
    static func chatFromChannel(_ room: JID, to user: JID, _ body: String) -> XMLElement {
        .stanza(.message, from: room, to: user, type: "chat", id: RandomID.make(), children: [.text("body", namespace: NS.component, body)])
    }

    /// Flow E: an XMPP moderator removed an IRC user from the room, and the bridge has no
    /// operator rights on IRC to do the same.
    static func cannotRemoveMessage(from room: JID, to moderator: JID, nick: String, channel: String, banned: Bool) -> XMLElement {
        chatFromChannel(
            room, to: moderator,
            "\(nick) is still in \(channel) on IRC: the bridge has no operator rights there, so it could not \(banned ? "ban" : "kick") them. "
                + "Their messages are no longer relayed to the room until they leave the channel and join again.")
    }

    /// What an IRC user the room refused or removed is told, once (PROTOCOL.md flows E and I).
    static func notRelayedNotice(to nick: String, channel: String, why: String) -> IRCMessage {
        IRCMessage(command: "NOTICE", nick, "\(channel) is bridged to XMPP, but the room refused you (\(why)); your messages are not relayed.")
    }

    /// How often one IRC user hears that the room refused a line of theirs.
    static let refusalNoticeInterval = Duration.seconds(10)

    static func lineRefusedNotice(to nick: String, channel: String, why: String, body: String) -> IRCMessage {
        let quoted = body.count > 60 ? body.prefix(60) + "…" : Substring(body)
        return IRCMessage(command: "NOTICE", nick, "Not relayed to XMPP through \(channel) (\(why)): \"\(clip(String(quoted)))\"")
    }

    /// XMPP text in a line the bridge writes itself (a KICK reason, a notice, a topic): one
    /// line, cut at a character boundary, so no server refuses the line as too long.
    static func clip(_ text: String, bytes: Int = 300) -> String {
        let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return IRCLineSplitter.pieces(flat, maximumBytes: bytes).first?.text ?? ""
    }

    /// The two ends of the bridge's IRC connection, netsplit-style: `irc.example.org bridge.example.org`.
    private func connectionEnds(_ network: NetworkState) -> String {
        "\((network.server ?? network.configuration.servers[0]).host) \(domain)"
    }

    /// The bridge's IRC connection is gone (the server restarted, the network dropped). Like a
    /// netsplit between the bridge and its server: IRC users stay in the rooms for
    /// `netsplit_grace`; the NAMES after the reconnection are the netjoin, so whoever is back
    /// shows nothing, and whoever is not leaves with 333 and the two ends as status. With no
    /// grace they leave at once.
    private func networkLost(_ name: String) {
        withNetwork(name) { network in
            network.connection = nil
            network.joined.removeAll()
            network.memberModes.removeAll()
            // A new connection's batch references may repeat an old one's.
            network.netsplitBatches.removeAll()
            // otherBridgePuppets stays: NAMES after the reconnection shows no realnames.
            guard network.configuration.translation.netsplitGrace > 0, !stopping else {
                network.splitUsers.removeAll()
                for channel in network.members.keys.sorted() {
                    channelLost(channel, network: &network, reason: "The bridge lost its IRC connection")
                }
                return
            }
            let reason = connectionEnds(network)
            for key in Set(network.members.values.flatMap { $0 }).sorted() where network.splitUsers[key] == nil {
                netsplitQuit(key, reason: reason, network: &network)
            }
        }
    }

    // MARK: - The master's stanzas

    /// Whatever was sent before this stream may be lost: every shadow with IRC users federates
    /// again, and the burst it gets back is diffed against what IRC already shows.
    private func componentConnected() {
        componentConnections += 1
        if componentConnections > 1 { metrics.xmppReconnects.increment() }
        takeUpHandover()
        for jid in shadows.keys.sorted() {
            // A link in memory did not pass through the stream that just came back.
            guard var room = shadows[jid]?.room, !room.localNicks.isEmpty, !session.isShortcut(room.masterRoom.domain) else { continue }
            if room.isFederated { metrics.resyncs.increment() }
            let actions = room.refederate(resuming: true)
            shadows[jid]?.room = room
            perform(actions, shadow: jid)
        }
    }

    func handleStanza(_ stanza: XMLElement) {
        // Stopping: IRC is gone, so nothing is relayed, and no position moves past a line IRC
        // never got; the next start asks the master for these again.
        guard !stopping, !handingOver, let to = stanza["to"].flatMap(JID.init) else { return }
        if stanza.name == "iq", answerAdmin(stanza, to: to) { return }
        guard shadows[to.bare] != nil else {
            if to.local != nil, stanza["type"] != "error", stanza.name != "presence" || stanza["type"] != "unavailable" {
                session.send(stanza.errorReply(type: "cancel", condition: "item-not-found", text: "no such bridged channel"))
            } else if to.local == nil, stanza.name == "iq", stanza["type"] == "get" || stanza["type"] == "set" {
                session.send(stanza.errorReply(type: "cancel", condition: "service-unavailable"))
            }
            return
        }
        // In place: a copy of the room would make every collection it changes copy itself.
        let actions = shadows[to.bare]!.room.receive(stanza)
        savePosition(to.bare)
        perform(actions, shadow: to.bare)
    }

    // MARK: - Actions

    /// The first of `channels` (folded) whose room has `ircNick` as a local user and
    /// `roomNick` as a remote occupant.
    func shadowsShared(network: String, ircNick: String, roomNick: String, channels: [String]) -> String? {
        channels.first { channel in
            shadows.values.contains { $0.network == network && networks[network]?.fold($0.channel) == channel && $0.room.shares(ircNick: ircNick, withRemote: roomNick) }
        }
    }

    /// Puppet connections and relayed occupants, over every network.
    func updatePuppetGauges() {
        let puppets = networks.values.flatMap(\.puppets.values)
        metrics.puppetConnections.record(puppets.filter { $0.connection != nil }.count)
        metrics.relayedOccupants.record(puppets.filter { $0.relayed }.count)
    }

    /// Runs `body` on the room of `channel`, in place (a copy would make every collection the
    /// room changes copy itself), so `body` must not touch the bridge's own state.
    func withShadow(network: String, channel: String, _ body: (inout ShadowRoom) -> [ShadowRoom.Action]) {
        guard let mapping = networks[network]?.isupport.caseMapping,
            let jid = shadows.first(where: { $0.value.network == network && mapping.fold($0.value.channel) == channel })?.key
        else { return }
        let actions = body(&shadows[jid]!.room)
        if holdingNetworkCopy > 0 {
            deferredActions.append((jid, actions))
        } else {
            perform(actions, shadow: jid)
        }
    }

    func perform(_ actions: [ShadowRoom.Action], shadow jid: JID) {
        guard let state = shadows[jid] else { return }
        let metadata: Logger.Metadata = ["network": "\(state.network)", "channel": "\(state.channel)"]
        var outgoing: [XMLElement] = []
        for action in actions {
            switch action {
            case .send(let stanza):
                outgoing.append(stanza)
                // Link upkeep (pings, resync) is not IRC users' traffic.
                if stanza.name == "message" { metrics.messagesIRCToXMPP.increment() } else if stanza.name == "presence" { metrics.presenceIRCToXMPP.increment() }
            case .remoteJoined(let occupant):
                metrics.presenceXMPPToIRC.increment()
                puppetEnsure(occupant, network: state.network, channel: state.channel)
            case .remoteLeft(let occupant, let reason):
                metrics.presenceXMPPToIRC.increment()
                puppetLeave(occupant, network: state.network, channel: state.channel, reason: reason)
            case .remoteMessage(let occupant, let body, let lineID):
                metrics.messagesXMPPToIRC.increment()
                puppetSay(occupant, network: state.network, channel: state.channel, body: body, lineID: lineID)
            case .remoteLine(let occupant, let line, let lineID):
                guard let body = ircText(line, network: state.network) else { break }
                metrics.messagesXMPPToIRC.increment()
                var inReplyTo: String?
                if case .reply(_, _, let msgid) = line { inReplyTo = msgid }
                puppetSay(occupant, network: state.network, channel: state.channel, body: body, lineID: lineID, inReplyTo: inReplyTo)
            case .remoteNickChanged(let occupant, let newNick):
                metrics.presenceXMPPToIRC.increment()
                puppetRename(occupant, to: newNick, network: state.network)
            case .remoteSubject(let occupant, let subject):
                puppetTopic(occupant, network: state.network, channel: state.channel, subject: subject)
            case .remoteRole(let occupant, let role):
                puppetRole(occupant, network: state.network, channel: state.channel, role: role)
            case .remoteAway(let occupant, let message):
                puppetAway(occupant, network: state.network, message: message)
            case .privateMessage(let occupant, let nick, let body):
                metrics.messagesXMPPToIRC.increment()
                puppetPrivateMessage(occupant, to: nick, network: state.network, body: body)
            case .localRefused(let nick, let condition, let text):
                metrics.refusedByRoom.increment()
                logger.info("the room refused an IRC user", metadata: metadata.merging(["nick": "\(nick)", "condition": "\(condition)"]) { $1 })
                networks[state.network]?.connection?.send(Self.notRelayedNotice(to: nick, channel: state.channel, why: Self.clip(text ?? condition)))
            case .lineRefused(let nick, let condition, let text, let body):
                metrics.refusedByRoom.increment()
                logger.info("the room refused a line from an IRC user", metadata: metadata.merging(["nick": "\(nick)", "condition": "\(condition)"]) { $1 })
                guard var network = networks[state.network] else { break }
                let folded = network.fold(nick), now = ContinuousClock.now
                if let last = network.lineRefusalNoticed[folded], now - last < Self.refusalNoticeInterval { break }
                if network.lineRefusalNoticed.count > 10_000 { network.lineRefusalNoticed = [:] }
                network.lineRefusalNoticed[folded] = now
                networks[state.network] = network
                network.connection?.send(Self.lineRefusedNotice(to: nick, channel: state.channel, why: Self.clip(text ?? condition), body: body))
            case .localRemoved(let nick, let banned, let actor, let reason):
                metrics.refusedByRoom.increment()
                let why = Self.clip("\(banned ? "banned" : "kicked") from the XMPP room" + (actor.map { " by \($0)" } ?? "") + (reason.map { ": \($0)" } ?? ""))
                logger.info("an XMPP moderator removed an IRC user", metadata: metadata.merging(["nick": "\(nick)", "why": "\(why)"]) { $1 })
                guard let network = networks[state.network], network.holdsOps(in: state.channel) else {
                    // Flow E without ops: the user stays on IRC but is no longer relayed. Both
                    // are told: the user on IRC, and the moderator, who would otherwise believe
                    // the user gone.
                    networks[state.network]?.connection?.send(Self.notRelayedNotice(to: nick, channel: state.channel, why: "you were \(why)"))
                    if let actor, let moderator = state.room.remote(nick: actor) {
                        outgoing.append(
                            Self.cannotRemoveMessage(from: state.room.jid, to: moderator.realJID, nick: nick, channel: state.channel, banned: banned))
                    }
                    break
                }
                var lines: [IRCMessage] = []
                if banned { lines.append(IRCMessage(command: "MODE", state.channel, "+b", network.banMask(for: nick))) }
                lines.append(IRCMessage(command: "KICK", state.channel, nick, why.prefix(1).uppercased() + why.dropFirst()))
                network.connection?.send(lines)
            case .localRenamed(let nick, let roomNick):
                logger.info("an IRC user's nick is taken in the room; suffixed", metadata: metadata.merging(["nick": "\(nick)", "room_nick": "\(roomNick)"]) { $1 })
                networks[state.network]?.connection?.send(
                    IRCMessage(command: "NOTICE", nick, "\(state.channel) is bridged to XMPP, where someone is called \(nick) already; there you are \(roomNick)."))
            case .federationFailed(let condition):
                metrics.federationFailures.increment()
                let attempt = (shadows[jid]?.federationFailures ?? 0) + 1
                shadows[jid]?.federationFailures = attempt
                let delay = Backoff.delay(attempt: attempt)
                logger.warning("federation with the master failed; retrying", metadata: metadata.merging(["condition": "\(condition)", "attempt": "\(attempt)", "after": "\(delay)"]) { $1 })
                Task { [self] in
                    try? await Task.sleep(for: delay)
                    self.retryFederation(jid)
                }
            case .note(let note):
                switch note {
                case .federated:
                    shadows[jid]?.federationFailures = 0
                    handoverShadowFederated(network: state.network, channel: state.channel, awayNicks: shadows[jid]?.room.awayNicks ?? [])
                case .seqGap: metrics.seqGaps.increment()
                case .duplicateDropped: metrics.duplicatesDropped.increment()
                case .epochChanged: metrics.resyncs.increment()
                case .echoMatched: break
                case .resynced(let replayed):
                    metrics.resyncs.increment()
                    logger.info("link resync answered", metadata: metadata.merging(["answer": "\(replayed.map { "replay \($0)" } ?? "full")"]) { $1 })
                case .split(let why):
                    metrics.splits.increment()
                    logger.warning("link to the master split; federating again", metadata: metadata.merging(["why": "\(why)"]) { $1 })
                }
                logger.debug("shadow", metadata: metadata.merging(["note": "\(note)"]) { $1 })
            }
        }
        session.send(outgoing)
    }

    func retryFederation(_ jid: JID) {
        guard var room = shadows[jid]?.room else { return }
        let actions = room.retryFederation()
        shadows[jid]?.room = room
        perform(actions, shadow: jid)
    }
}

extension Logger {
    func with(_ key: String, _ value: String) -> Logger {
        var copy = self
        copy[metadataKey: key] = "\(value)"
        return copy
    }
}
