import Configuration
import DMUC
import IRCCore
import IRCNIO
import Logging
import XMPPCore

/// What a reload changed, said to the admin and logged.
public struct ReloadReport: Sendable, CustomStringConvertible {
    public var networksAdded: [String] = []
    public var networksRemoved: [String] = []
    /// Networks whose connection settings changed: stopped and started again.
    public var networksRestarted: [String] = []
    public var channelsAdded: [String] = []
    public var channelsRemoved: [String] = []
    public var unchangedChannels = 0

    public var description: String {
        var parts: [String] = []
        func add(_ label: String, _ items: [String]) {
            if !items.isEmpty { parts.append("\(label): \(items.joined(separator: ", "))") }
        }
        add("networks added", networksAdded)
        add("networks removed", networksRemoved)
        add("networks restarted", networksRestarted)
        add("channels added", channelsAdded)
        add("channels removed", channelsRemoved)
        parts.append("\(unchangedChannels) mapping\(unchangedChannels == 1 ? "" : "s") unchanged")
        return parts.joined(separator: "; ")
    }
}

extension BridgeService {
    // MARK: - Reload (SIGHUP and the reload command)

    /// Brings the running mappings to `newNetworks`: added ones start, removed ones leave
    /// cleanly, a network whose connection settings changed restarts, and a network whose
    /// channels alone changed keeps its connections and joins or leaves only those channels.
    /// Unchanged mappings are not touched.
    public func apply(_ newNetworks: [Network]) -> ReloadReport {
        var report = ReloadReport()
        // Certificates and keys rotated at the same paths are read again by new connections.
        IRCTLSConfiguration.forgetContexts()
        let wanted = Dictionary(newNetworks.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for name in networks.keys.sorted() where wanted[name] == nil {
            stopNetwork(name, reason: "This channel is no longer bridged to XMPP")
            report.networksRemoved.append(name)
        }
        for network in newNetworks {
            guard let running = networks[network.name]?.configuration else {
                startNetwork(network)
                report.networksAdded.append(network.name)
                continue
            }
            guard running.sameConnection(as: network) else {
                stopNetwork(network.name, reason: "The bridge's settings for this network changed; reconnecting")
                startNetwork(network)
                report.networksRestarted.append(network.name)
                continue
            }
            let old = Dictionary(running.channels.map { ($0.irc.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
            let new = Dictionary(network.channels.map { ($0.irc.lowercased(), $0) }, uniquingKeysWith: { a, _ in a })
            networks[network.name]?.configuration = network
            for (key, channel) in old.sorted(by: { $0.key < $1.key }) where new[key]?.room != channel.room {
                removeChannel(channel, network: network.name, reason: "This channel is no longer bridged to \(channel.room)")
                report.channelsRemoved.append("\(channel.irc) on \(network.name)")
            }
            for (key, channel) in new.sorted(by: { $0.key < $1.key }) {
                if old[key]?.room == channel.room {
                    report.unchangedChannels += 1
                } else {
                    addChannel(channel, network: network.name)
                    report.channelsAdded.append("\(channel.irc) on \(network.name)")
                }
            }
        }
        metrics.reloads.increment()
        updatePuppetGauges()
        return report
    }

    /// Counts a refused reload (a broken mapping file): the running mappings stay.
    public func reloadRefused() {
        metrics.reloadFailures.increment()
    }

    private func startNetwork(_ network: Network) {
        networkGeneration += 1
        networks[network.name] = NetworkState(configuration: network, generation: networkGeneration)
        for channel in network.channels {
            let (jid, state) = Self.shadow(for: channel, network: network, domain: domain)
            shadows[jid] = state
        }
        startNetworkTask(network.name)
    }

    /// Takes the network's IRC users out of its rooms, QUITs its puppets and its own
    /// connection with `reason`, and forgets it.
    private func stopNetwork(_ name: String, reason: String) {
        guard let network = networks[name] else { return }
        for channel in network.configuration.channels {
            removeShadow(Self.shadowJID(channel: channel.irc, network: name, domain: domain), reason: reason)
        }
        for puppet in network.puppets.values { puppet.connection?.quit(reason) }
        network.connection?.quit(reason)
        networks[name] = nil
        networkTasks.removeValue(forKey: name)?.cancel()
    }

    /// The shadow's IRC users leave the room (a plain unavailable with `reason`), so the
    /// master sees the node go; then the shadow is forgotten.
    private func removeShadow(_ jid: JID, reason: String) {
        guard var room = shadows[jid]?.room else { return }
        var actions: [ShadowRoom.Action] = []
        for nick in room.localNicks { actions += room.ircLeft(nick: nick, reason: reason) }
        shadows[jid]?.room = room
        perform(actions, shadow: jid)
        shadows[jid] = nil
        // Bridged again later, it starts afresh: no lines from before it was removed.
        do {
            try store?.forget(shadows: [jid.description])
        } catch {
            logger.error("bridge state not written", metadata: ["shadow": "\(jid)", "error": "\(error)"])
        }
    }

    private func removeChannel(_ channel: Network.Channel, network name: String, reason: String) {
        removeShadow(Self.shadowJID(channel: channel.irc, network: name, domain: domain), reason: reason)
        var leaving: [ShadowRoom.RemoteOccupant] = []
        withNetwork(name) { network in
            let folded = network.fold(channel.irc)
            for key in network.members.removeValue(forKey: folded) ?? [] where !network.members.values.contains(where: { $0.contains(key) }) {
                network.forget(key)
            }
            network.memberModes[folded] = nil
            network.pendingNames[folded] = nil
            // Bridged again later, no catch-up from where it stood before.
            network.lastSeen[folded] = nil
            network.recentMessageIDs[folded] = nil
            forgetSeen([(name, folded)])
            if network.joined.remove(folded) != nil {
                network.connection?.send(IRCMessage(command: "PART", channel.irc, reason))
            }
            for puppet in network.puppets.values.sorted(by: { $0.key < $1.key }) where puppet.wanted[folded] != nil {
                if let real = JID(puppet.key) { leaving.append(.init(nick: puppet.roomNick, realJID: real)) }
            }
        }
        // Puppets PART (or QUIT, when it was their last channel) with the reason.
        for occupant in leaving { puppetLeave(occupant, network: name, channel: channel.irc, reason: reason) }
        updatePuppetGauges()
    }

    private func addChannel(_ channel: Network.Channel, network name: String) {
        guard let network = networks[name]?.configuration else { return }
        let (jid, state) = Self.shadow(for: channel, network: network, domain: domain)
        shadows[jid] = state
        // Its IRC users federate the shadow as the NAMES reply arrives.
        if networks[name]?.nick != nil {
            networks[name]?.connection?.send(IRCMessage(command: "JOIN", channel.irc))
        }
    }

    // MARK: - Disco and ad-hoc commands (issue 7)

    /// Answers the iqs the bridge itself serves: the room list, the shadow rooms' info and the
    /// ad-hoc commands. False when the stanza is not one of them.
    func answerAdmin(_ stanza: XMLElement, to: JID) -> Bool {
        let type = stanza["type"]
        guard type == "get" || type == "set", let from = stanza["from"].flatMap(JID.init) else { return false }
        let payload = stanza.elements.first
        if to.local == nil, to.resource == nil {
            if type == "get", payload?.name == "query", payload?.namespace == NS.discoItems {
                if payload?["node"] == NS.commands {
                    session.send(AdHoc.items(stanza, commands: isAdmin(from) ? commands() : [], domain: domain))
                } else if payload?["node"] == nil {
                    session.send(stanza.iqResult(roomList()))
                } else {
                    session.send(stanza.errorReply(type: "cancel", condition: "item-not-found"))
                }
                return true
            }
            if let request = AdHoc.request(stanza) {
                runCommand(stanza, request: request, from: from)
                return true
            }
            return false
        }
        if to.resource == nil, type == "get", payload?.name == "query", payload?.namespace == NS.discoInfo, payload?["node"] == nil,
            let state = shadows[to]
        {
            session.send(stanza.iqResult(shadowInfo(state)))
            return true
        }
        return false
    }

    private func isAdmin(_ jid: JID) -> Bool { admins.contains(jid.bare) }

    /// disco#items on the bridge domain: one item per shadow room (PROTOCOL.md §3, room list).
    private func roomList() -> XMLElement {
        var query = XMLElement("query", namespace: NS.discoItems)
        for (jid, state) in shadows.sorted(by: { $0.key.description < $1.key.description }) {
            query.append(XMLElement("item", namespace: NS.discoItems, attributes: [
                "jid": jid.description, "name": "\(state.channel) on \(state.network) (bridged to \(state.room.masterRoom))",
            ]))
        }
        return query
    }

    /// A shadow room's disco#info: a room whose conversation lives at `dmuc-source`.
    private func shadowInfo(_ state: ShadowState) -> XMLElement {
        var query = XMLElement("query", namespace: NS.discoInfo)
        query.append(XMLElement("identity", namespace: NS.discoInfo, attributes: [
            "category": "conference", "type": "text", "name": "\(state.channel) on \(state.network)",
        ]))
        query.append(XMLElement("feature", namespace: NS.discoInfo, attributes: ["var": NS.muc]))
        let form = DataForm(type: "result", formType: NS.roomInfo, fields: [
            .init("muc#roominfo_description", label: "Description", values: ["IRC channel \(state.channel) on \(state.network), bridged; join \(state.room.masterRoom)"]),
            .init("muc#roominfo_occupants", label: "Number of occupants", values: [String(state.room.localNicks.count + state.room.remoteOccupants.count)]),
            .init("dmuc-source", type: "jid-single", label: "The room this channel is bridged to", values: [state.room.masterRoom.description]),
        ])
        query.append(form.element)
        return query
    }

    private func commands() -> [AdHoc.Command] {
        let rooms = shadows.keys.map(\.description).sorted()
        let networkNames = networks.keys.sorted()
        return [
            AdHoc.Command(node: "status", name: "Status: networks, connections, puppets, queues, last errors"),
            AdHoc.Command(node: "mappings", name: "List the channel mappings"),
            AdHoc.Command(node: "reload", name: "Reload the mapping files"),
            AdHoc.Command(node: "resync", name: "Resync a room with the master", form: DataForm(
                type: "form", title: "Resync a room", instructions: "The shadow federates again and applies the difference to IRC.",
                fields: [
                    DataForm.Field("room", type: "list-single", label: "Shadow room", options: rooms.map { .init(label: $0, value: $0) }, required: true),
                ])),
            AdHoc.Command(node: "disconnect-puppet", name: "Disconnect a puppet", form: DataForm(
                type: "form", title: "Disconnect a puppet",
                instructions: "The occupant's IRC connection QUITs; until they rejoin, their lines come through the bridge's own connection.",
                fields: [
                    DataForm.Field(
                        "network", type: "list-single", label: "Network", values: Array(networkNames.prefix(1)),
                        options: networkNames.map { .init(label: $0, value: $0) }, required: true),
                    DataForm.Field("nick", type: "text-single", label: "Puppet nick (IRC) or room nick", required: true),
                ])),
        ]
    }

    private func runCommand(_ stanza: XMLElement, request: AdHoc.Request, from: JID) {
        let metadata: Logger.Metadata = ["from": "\(from)", "command": "\(request.node)"]
        switch AdHoc.route(stanza, request: request, commands: isAdmin(from) ? commands() : [], allowed: isAdmin(from)) {
        case .reply(let reply):
            if reply["type"] == "error" { logger.notice("ad-hoc command refused", metadata: metadata) }
            session.send(reply)
        case .run(let command, let form):
            logger.notice("ad-hoc command", metadata: metadata)
            switch command.node {
            case "status":
                session.send(AdHoc.completed(stanza, request: request, outcome: AdHoc.Outcome(note: statusText())))
            case "mappings":
                session.send(AdHoc.completed(stanza, request: request, outcome: AdHoc.Outcome(note: mappingsText())))
            case "reload":
                guard let reloader else {
                    session.send(AdHoc.completed(stanza, request: request, outcome: .error("reload is not available in this process")))
                    return
                }
                let session = self.session
                Task {
                    let (ok, text) = await reloader()
                    session.send(AdHoc.completed(stanza, request: request, outcome: AdHoc.Outcome(note: text, noteType: ok ? "info" : "error")))
                }
            case "resync":
                session.send(AdHoc.completed(stanza, request: request, outcome: resync(form?["room"]?.value)))
            case "disconnect-puppet":
                session.send(AdHoc.completed(stanza, request: request, outcome: disconnectPuppet(network: form?["network"]?.value, nick: form?["nick"]?.value)))
            default:
                session.send(stanza.errorReply(type: "cancel", condition: "item-not-found"))
            }
        }
    }

    func statusText() -> String {
        var lines: [String] = []
        for name in networks.keys.sorted() {
            let network = networks[name]!
            let connected = network.nick.map { "connected as \($0)" } ?? (network.connection == nil ? "not connected" : "registering")
            let puppets = network.puppets.values
            lines.append("network \(name): \(connected); channels \(network.joined.count)/\(network.configuration.channels.count) joined; "
                + "IRC users \(Set(network.members.values.flatMap { $0 }).count); puppets \(puppets.filter { $0.connection != nil }.count) connected, "
                + "\(puppets.filter(\.relayed).count) relayed; flood queue \(network.connection?.queuedLines ?? 0) lines (puppets \(puppets.compactMap { $0.connection?.queuedLines }.reduce(0, +))); "
                + "last error: \(network.lastError ?? "none")")
        }
        for (jid, state) in shadows.sorted(by: { $0.key.description < $1.key.description }) {
            lines.append("room \(jid) -> \(state.room.masterRoom): \(state.room.isFederated ? "federated" : "not federated"); "
                + "\(state.room.localNicks.count) IRC users, \(state.room.remoteOccupants.count) remote occupants")
        }
        return lines.isEmpty ? "no networks" : lines.joined(separator: "\n")
    }

    func mappingsText() -> String {
        let lines = networks.keys.sorted().flatMap { name in
            networks[name]!.configuration.channels.map { "\(name) \($0.irc) <-> \($0.room)" }
        }
        return lines.isEmpty ? "no mappings" : lines.joined(separator: "\n")
    }

    private func resync(_ room: String?) -> AdHoc.Outcome {
        guard let room, let jid = JID(room), shadows[jid] != nil else { return .error("no such shadow room: \(room ?? "")") }
        guard var shadow = shadows[jid]?.room, !shadow.localNicks.isEmpty else {
            return AdHoc.Outcome(note: "\(jid) has no IRC users: it federates with the first one", noteType: "warn")
        }
        let actions = shadow.refederate()
        shadows[jid]?.room = shadow
        metrics.resyncs.increment()
        perform(actions, shadow: jid)
        return AdHoc.Outcome(note: "\(jid) is federating again with \(shadow.masterRoom); the new roster is diffed against IRC")
    }

    private func disconnectPuppet(network name: String?, nick: String?) -> AdHoc.Outcome {
        guard let name, let network = networks[name] else { return .error("no such network: \(name ?? "")") }
        guard let nick, !nick.isEmpty else { return .error("which nick?") }
        let folded = network.fold(nick)
        let key = network.puppetNicks[folded] ?? network.puppets.values.first { network.fold($0.roomNick) == folded }?.key
        guard let key, let puppet = network.puppets[key], let connection = puppet.connection else {
            return .error("no puppet connection for \(nick) on \(name)")
        }
        // Relayed from now on: the puppet is not reconnected when its connection ends.
        networks[name]?.puppets[key]?.relayed = true
        connection.quit("Disconnected by a Shadowbridge admin")
        logger.notice("puppet disconnected by an admin", metadata: ["network": "\(name)", "puppet": "\(puppet.roomNick)"])
        return AdHoc.Outcome(note: "\(puppet.nick ?? nick) (\(puppet.roomNick)) disconnected from \(name); their lines are relayed through the bridge's connection until they rejoin the room")
    }
}
