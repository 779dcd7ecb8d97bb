import Foundation
import DMUC
import IRCCore
import IRCNIO
import Logging
import Store
import XMPPCore
import XMPPNIO

extension BridgeService {
    func puppetEnsure(_ occupant: ShadowRoom.RemoteOccupant, network name: String, channel: String) {
        guard var network = networks[name] else { return }
        let key = occupant.realJID.description
        let folded = network.fold(channel)
        if var puppet = network.puppets[key] {
            puppet.unconfirmed.remove(folded)
            let new = puppet.wanted.updateValue(channel, forKey: folded) == nil
            if puppet.nick != nil && !puppet.joined.contains(folded) {
                puppet.connection?.send(IRCMessage(command: "JOIN", channel))
            }
            network.puppets[key] = puppet
            networks[name] = network
            if new { relayAnnounce(network: name, channel: channel, "\(occupant.nick) joined the XMPP room") }
            return
        }
        puppetGeneration += 1
        let generation = puppetGeneration
        var puppet = Puppet(key: key, roomNick: occupant.nick)
        puppet.generation = generation
        puppet.wanted[folded] = channel
        if network.configuration.xmppUsers == .relay {
            // Relay mode: no connection of its own; the bridge's connection speaks for it.
            puppet.relayed = true
            network.puppets[key] = puppet
            networks[name] = network
            relayAnnounce(network: name, channel: channel, "\(occupant.nick) joined the XMPP room")
            return
        }
        if network.configuration.puppetJoins == .lazy {
            // Lazy: no connection until the occupant first says something; IRC users who
            // join meanwhile are told who is in the room (lazyOccupantsNotice).
            puppet.dormant = true
            network.puppets[key] = puppet
            networks[name] = network
            return
        }
        startPuppet(&puppet, network: &network)
        networks[name] = network
    }

    /// Connects a new puppet through the admission rate, or relays the occupant through the
    /// bridge's connection when `max_puppets` is reached.
    private func startPuppet(_ puppet: inout Puppet, network: inout NetworkState) {
        let name = network.configuration.name
        puppet.dormant = false
        if network.puppets.values.filter({ !$0.relayed && !$0.dormant && $0.key != puppet.key }).count >= network.configuration.maxPuppets {
            // max_puppets reached: this occupant is relayed through the bridge's connection.
            puppet.relayed = true
            network.puppets[puppet.key] = puppet
            if !network.relayAnnounced {
                network.relayAnnounced = true
                logger.warning("max_puppets reached; further occupants are relayed through the bridge's connection", metadata: ["network": "\(name)", "max_puppets": "\(network.configuration.maxPuppets)"])
            }
            return
        }
        // Admission: at most puppet_connections_per_second new connections to this network.
        let wait = network.admitPuppet()
        network.puppets[puppet.key] = puppet
        networks[name] = network
        puppetConnect(key: puppet.key, network: name, after: wait)
    }

    /// A lazily joined occupant speaks: its puppet connects now and says the line once in.
    private func wake(_ puppet: inout Puppet, network: inout NetworkState) {
        guard puppet.dormant else { return }
        logger.info("a lazily joined occupant speaks; its puppet connects", metadata: ["network": "\(network.configuration.name)", "puppet": "\(puppet.roomNick)"])
        startPuppet(&puppet, network: &network)
    }

    /// `puppet_joins = "lazy"`: an IRC user joining the channel is told, once, which XMPP
    /// occupants are in the room without a puppet yet, so nobody is there unseen.
    func lazyOccupantsNotice(to nick: String, channel: String, network: NetworkState) {
        let dormant = network.puppets.values.filter { $0.dormant && $0.wanted[channel] != nil }.map(\.roomNick).sorted()
        guard !dormant.isEmpty, let connection = network.connection else { return }
        let text = "Also in the XMPP room (they join IRC when they speak): " + dormant.joined(separator: ", ")
        connection.send(IRCMessage(command: "NOTICE", nick, Self.clip(text)))
    }

    /// Connects the puppet `key` (again) after `delay`, to the server the bridge's own
    /// connection is on; its events are ignored once a newer generation exists.
    /// `resuming`: the connection the process before handed over, taken up instead.
    func puppetConnect(key: String, network name: String, after delay: Duration, resuming: IRCConnectionHandover? = nil) {
        guard let network = networks[name], let puppet = network.puppets[key] else { return }
        let generation = puppet.generation
        let server = network.server ?? network.configuration.servers[0]
        let irc = connectionSettings(
            network.configuration, server: server,
            nick: preferredNick(for: puppet, network: network),
            username: PuppetNick.ident(for: key, secret: identitySecret), realname: "\(puppet.roomNick) \(NetworkState.puppetRealnameMarker)", bridge: false, puppetKey: key)
        let logger = self.logger.with("network", name).with("puppet", puppet.roomNick)
        let group = self.group
        Task { [self] in
            var outcome = IRCDisconnect(.lost, "connection closed")
            do {
                if delay > .zero { try await Task.sleep(for: delay) }
                guard self.networks[name]?.puppets[key]?.generation == generation, !self.handingOver else { return }
                let connection: IRCConnection
                if let resuming {
                    connection = try await IRCConnection.adopt(resuming, configuration: irc, group: group, logger: logger)
                } else {
                    connection = try await IRCConnection.connect(irc, group: group, logger: logger)
                }
                guard self.puppetConnected(connection, key: key, generation: generation, network: name) else { return }
                for await event in connection.events {
                    if case .closed(let why) = event { outcome = why }
                    self.puppetEvent(event, key: key, generation: generation, network: name)
                }
                if self.handingOver {
                    self.handoverDone.insert("\(name) \(key)")
                    return
                }
            } catch {
                outcome = IRCDisconnect(error is IRCTLSSetupError ? .tlsFailed : .lost, "cannot connect: \(error)")
                logger.warning("puppet cannot connect", metadata: ["error": "\(error)"])
            }
            self.puppetGone(key: key, generation: generation, network: name, outcome: outcome)
        }
    }

    /// False when the occupant left while the puppet was connecting.
    private func puppetConnected(_ connection: IRCConnection, key: String, generation: Int, network name: String) -> Bool {
        guard networks[name]?.puppets[key]?.generation == generation else {
            connection.quit("Left the room")
            return false
        }
        networks[name]?.puppets[key]?.connection = connection
        updatePuppetGauges()
        return true
    }

    private func puppetEvent(_ event: IRCConnectionEvent, key: String, generation: Int, network name: String) {
        withNetwork(name) { network in
            guard var puppet = network.puppets[key], puppet.generation == generation else { return }
            puppetEvent(event, puppet: &puppet, network: &network, name: name)
            network.puppets[key] = puppet
        }
    }

    private func puppetEvent(_ event: IRCConnectionEvent, puppet: inout Puppet, network: inout NetworkState, name: String) {
        let key = puppet.key
        switch event {
        case .registered(let nick):
            puppet.nick = nick
            rememberNick(of: puppet, network: name)
            puppet.reconnects.registered()
            network.puppetNicks[network.fold(nick)] = key
            puppet.connection?.send(puppet.wanted.values.sorted().map { IRCMessage(command: "JOIN", $0) })
            if let away = puppet.away { puppet.connection?.send(IRCMessage(command: "AWAY", away)) }
            sendQueuedPrivate(&puppet, nick: nick, network: network)
        case .resumed(let nick):
            // Handed over in its channels, away message and modes as they were: only what the
            // room asked of it meanwhile is sent.
            puppet.nick = nick
            puppet.reconnects.registered()
            network.puppetNicks[network.fold(nick)] = key
            puppet.connection?.send(puppet.wanted.filter { !puppet.joined.contains($0.key) }.values.sorted().map { IRCMessage(command: "JOIN", $0) })
            let joined = puppet.joined
            sendQueued(&puppet, nick: nick, network: network) { joined.contains($0) }
            sendQueuedPrivate(&puppet, nick: nick, network: network)
        case .message(let message):
            let ownNick = puppet.nick.map(network.fold)
            if message.command == "PRIVMSG", message.parameters.count >= 2, network.fold(message.parameters[0]) == ownNick,
                let sender = message.sourceNick, network.fold(sender) != ownNick, network.puppetNicks[network.fold(sender)] == nil,
                network.fold(sender) != network.fold(network.nick ?? "")
            {
                privateMessageToPuppet(from: sender, text: message.parameters[1], puppet: puppet, network: name)
                return
            }
            if message.command == "KICK", message.parameters.count >= 2, network.fold(message.parameters[1]) == ownNick {
                let reason = message.parameters.count >= 3 && !message.parameters[2].isEmpty ? ": \(message.parameters[2])" : ""
                cannotBeIn(network.fold(message.parameters[0]), why: "kicked by \(message.sourceNick ?? "?")\(reason)", puppet: &puppet, network: name)
                return
            }
            if ["471", "473", "474", "475", "477", "405"].contains(message.command), message.parameters.count >= 2 {
                cannotBeIn(network.fold(message.parameters[1]), why: message.parameters.last ?? message.command, puppet: &puppet, network: name)
                return
            }
            guard let source = message.sourceNick.map(network.fold), source == ownNick else { return }
            switch message.command {
            case "JOIN":
                guard let channel = message.parameters.first.map(network.fold) else { return }
                puppet.joined.insert(channel)
                // In the channel again (a reconnect's JOIN went through after a kick): its
                // lines go from the puppet again, and a later kick is news again.
                puppet.relayedChannels.remove(channel)
                if let mode = network.roleModeChange(&puppet, channel: puppet.wanted[channel] ?? channel) { network.connection?.send(mode) }
                sendQueued(&puppet, nick: puppet.nick ?? "", network: network) { $0 == channel }
            case "PART", "KICK":
                if let channel = message.parameters.first.map(network.fold) {
                    puppet.joined.remove(channel)
                    puppet.roleModes.removeValue(forKey: channel)
                }
            case "MODE" where message.parameters.first.map(network.fold) == ownNick:
                // The server confirms the puppet's own user modes (deaf_puppets).
                logger.debug("puppet user modes", metadata: ["network": "\(name)", "puppet": "\(puppet.roomNick)", "modes": "\(message.parameters.dropFirst().joined(separator: " "))"])
            case "NICK":
                if let newNick = message.parameters.first {
                    network.puppetNicks.removeValue(forKey: network.fold(puppet.nick ?? ""))
                    puppet.nick = newNick
                    network.puppetNicks[network.fold(newNick)] = key
                    // Only a nick the bridge asked for is kept: one services forced on the
                    // puppet (a guest nick) is not what it should ask for next time.
                    if puppet.requestedNick.map(network.fold) == network.fold(newNick) { rememberNick(of: puppet, network: name) }
                    puppet.requestedNick = nil
                }
            default:
                break
            }
        case .capabilities(let enabled, let values):
            // draft/multiline needs batch and message-tags to be on as well.
            puppet.multiline = enabled.isSuperset(of: ["draft/multiline", "batch", "message-tags"])
                ? values["draft/multiline"].flatMap(IRCMultiline.init(capabilityValue:)) : nil
            puppet.messageTags = enabled.contains("message-tags")
        case .isupport, .authenticated:
            break
        case .closed(let reason):
            logger.info("puppet connection closed", metadata: ["network": "\(name)", "puppet": "\(puppet.roomNick)", "reason": "\(reason)"])
        }
    }

    /// Channel lines said before the puppet was in the channel, for the channels (folded)
    /// `isIn` accepts, now that it is.
    private func sendQueued(_ puppet: inout Puppet, nick: String, network: NetworkState, in isIn: (String) -> Bool) {
        let ready = puppet.queued.filter { isIn($0.channel) }
        puppet.queued.removeAll { isIn($0.channel) }
        puppet.connection?.send(ready.flatMap { privmsgs(channel: puppet.wanted[$0.channel] ?? $0.channel, text: $0.text, nick: nick, lineLength: network.isupport.lineLength, maxLines: network.configuration.translation.maxLines, multiline: puppet.multiline) })
    }

    /// Private messages written before the puppet could speak, now that it can.
    private func sendQueuedPrivate(_ puppet: inout Puppet, nick: String, network: NetworkState) {
        let direct = puppet.queuedPrivate
        puppet.queuedPrivate = []
        puppet.connection?.send(direct.flatMap { privmsgs(channel: $0.target, text: $0.text, nick: nick, lineLength: network.isupport.lineLength, maxLines: network.configuration.translation.maxLines) })
    }

    /// The puppet's connection ended while the occupant is still in a room. A connection that
    /// was merely lost (the server restarted, the network dropped) connects again with backoff,
    /// its lines queued meanwhile; one the network refused (a connection limit, a ban) leaves
    /// the occupant speaking through the bridge's own connection, so nothing is lost.
    private func puppetGone(key: String, generation: Int, network name: String, outcome: IRCDisconnect) {
        guard var network = networks[name], var puppet = network.puppets[key], puppet.generation == generation else { return }
        if let nick = puppet.nick { network.puppetNicks.removeValue(forKey: network.fold(nick)) }
        guard !puppet.wanted.isEmpty, !stopping else {
            network.puppets.removeValue(forKey: key)
            networks[name] = network
            return
        }
        puppet.connection = nil
        puppet.nick = nil
        puppet.joined = []
        puppet.roleModes = [:]
        puppet.multiline = nil
        // Lost connections are retried; but a network that is up (the bridge's own connection
        // is in) and drops this puppet three times in a row is refusing it without saying so.
        let networkUp = network.connection != nil && !network.joined.isEmpty
        let attempt = puppet.reconnects.lost()
        if outcome.kind == .lost && !puppet.relayed && !(networkUp && attempt > 3) {
            puppetGeneration += 1
            puppet.generation = puppetGeneration
            logger.info("puppet connection lost; reconnecting", metadata: ["network": "\(name)", "puppet": "\(puppet.roomNick)", "reason": "\(outcome.reason)", "attempt": "\(attempt)"])
            // Through the admission rate too, so an outage's reconnects do not come in one burst.
            let wait = network.admitPuppet(notBefore: .now + Backoff.delay(attempt: attempt))
            network.puppets[key] = puppet
            networks[name] = network
            updatePuppetGauges()
            puppetConnect(key: key, network: name, after: wait)
            return
        }
        puppet.relayed = true
        if !network.relayAnnounced {
            network.relayAnnounced = true
            logger.warning(
                "the IRC network refused a puppet connection; occupants beyond its limit are relayed through the bridge's connection",
                metadata: ["network": "\(name)", "reason": "\(outcome.reason)"])
        }
        let queued = puppet.queued
        let direct = puppet.queuedPrivate
        puppet.queued = []
        puppet.queuedPrivate = []
        for line in direct { relayPrivateMessage(from: puppet.roomNick, to: line.target, body: line.text, network: &network) }
        network.puppets[key] = puppet
        networks[name] = network
        for line in queued { relaySay(nick: puppet.roomNick, network: name, channel: puppet.wanted[line.channel] ?? line.channel, body: line.text) }
        updatePuppetGauges()
    }

    /// The puppet cannot be in a channel (kicked, banned, +i, +k, +r, too many channels): the
    /// occupant is relayed there through the bridge's connection, queued lines included.
    private func cannotBeIn(_ channel: String, why: String, puppet: inout Puppet, network name: String) {
        guard puppet.wanted[channel] != nil else { return }
        puppet.joined.remove(channel)
        let newlyRelayed = puppet.relayedChannels.insert(channel).inserted
        logger.info("a puppet cannot be in a channel; relaying there", metadata: ["network": "\(name)", "puppet": "\(puppet.roomNick)", "reason": "\(why)"])
        // The XMPP user is still in the room and would not know: they hear it from the
        // channel's address, once (a refused JOIN again after a reconnect says nothing new).
        // An IRC user of another network bridged by this process has no XMPP client to tell.
        if newlyRelayed, let real = JID(puppet.key), real.domain != domain, let written = puppet.wanted[channel] {
            session.send(Self.relayedNowMessage(from: Self.shadowJID(channel: written, network: name, domain: domain), to: real, channel: written, why: why))
        }
        let lines = puppet.queued.filter { $0.channel == channel }
        puppet.queued.removeAll { $0.channel == channel }
        for line in lines { relaySay(nick: puppet.roomNick, network: name, channel: puppet.wanted[channel] ?? channel, body: line.text) }
    }

    /// Tells an XMPP user that their IRC puppet cannot be in `channel` (kicked, banned, the
    /// channel full...), and that their lines there come from the bridge from now on.
    static func relayedNowMessage(from room: JID, to user: JID, channel: String, why: String) -> XMLElement {
        chatFromChannel(
            room, to: user,
            "On IRC you are no longer in \(channel) (\(why)). You are still in the room; "
                + "what you say there reaches \(channel) through the bridge, as <your nick> text.")
    }

    /// `<nick> text` (or `* nick action`) from the bridge's own connection.
    func relaySay(nick: String, network name: String, channel: String, body: String) {
        guard let network = networks[name], let connection = network.connection, let bridgeNick = network.nick else {
            logger.warning("a relayed line was not sent: the bridge is not connected", metadata: ["network": "\(name)", "channel": "\(channel)"])
            return
        }
        if let separator = network.relaymsgSeparator {
            let relayNick = network.puppetNick(for: nick) + separator + "xmpp"
            let relayed = privmsgs(channel: channel, text: body, nick: relayNick, lineLength: network.isupport.lineLength, maxLines: network.configuration.translation.maxLines).map { privmsg in
                IRCMessage(command: "RELAYMSG", channel, relayNick, privmsg.parameters[1])
            }
            var pending = relaymsgPending[name] ?? []
            pending.append(contentsOf: relayed.map { (channel, nick, $0.parameters[2]) })
            // Bounded: a server that echoes nothing must not grow this forever.
            relaymsgPending[name] = Array(pending.suffix(500))
            connection.send(relayed)
            return
        }
        connection.send(plainRelay(nick: nick, body: body, channel: channel, bridgeNick: bridgeNick, network: network))
    }

    /// Relay mode's optional announcement of an occupant's join, leave or nick change: a
    /// NOTICE in the channel from the bridge's connection.
    func relayAnnounce(network name: String, channel: String, _ text: String) {
        guard let network = networks[name], network.configuration.xmppUsers == .relay, network.configuration.translation.relayAnnounceJoins,
            network.joined.contains(network.fold(channel))
        else { return }
        network.connection?.send(IRCMessage(command: "NOTICE", channel, Self.clip(text)))
    }

    /// `<nick> text` (`* nick action` for /me), line by line, from the bridge's own nick.
    private func plainRelay(nick: String, body: String, channel: String, bridgeNick: String, network: NetworkState) -> [IRCMessage] {
        // A zero-width space after the first character keeps IRC clients from highlighting
        // an IRC user who has the same nick.
        let nick = network.configuration.translation.relayZeroWidthSpace && nick.count > 1 ? String(nick.prefix(1)) + "\u{200B}" + nick.dropFirst() : nick
        let text = body.hasPrefix("/me ") ? "* \(nick) \(body.dropFirst(4))" : body.split(whereSeparator: \.isNewline).map { "<\(nick)> \($0)" }.joined(separator: "\n")
        return privmsgs(channel: channel, text: text, nick: bridgeNick, lineLength: network.isupport.lineLength, maxLines: network.configuration.translation.maxLines)
    }

    /// `FAIL RELAYMSG <code> :text`: the oldest line not yet echoed was not relayed. It goes
    /// again as `<nick> text`, and so does everything relayed until the next connection.
    func relaymsgFailed(_ message: IRCMessage, network: inout NetworkState) {
        if !network.relaymsgRefused {
            logger.warning(
                "the IRC network refuses RELAYMSG; relayed users' lines go as <nick> text",
                metadata: ["network": "\(network.configuration.name)", "reason": "\(message.parameters.dropFirst().joined(separator: " "))"])
        }
        network.relaymsgRefused = true
        guard let failed = relaymsgPending[network.configuration.name]?.first, let bridgeNick = network.nick else { return }
        relaymsgPending[network.configuration.name]?.removeFirst()
        // The line as the occupant wrote it: a CTCP ACTION was their /me.
        let body = failed.text.hasPrefix("\u{1}ACTION ") ? "/me " + failed.text.dropFirst(8).dropLast() : failed.text
        network.connection?.send(plainRelay(nick: failed.nick, body: body, channel: failed.channel, bridgeNick: bridgeNick, network: network))
    }

    /// `lineID`: the room line's id, to learn the msgid IRC gives it; `inReplyTo`: the msgid of
    /// the IRC line it answers, sent as `+draft/reply` where the puppet has message-tags.
    func puppetSay(_ occupant: ShadowRoom.RemoteOccupant, network name: String, channel: String, body: String, lineID: String? = nil, inReplyTo: String? = nil) {
        guard var network = networks[name], var puppet = network.puppets[occupant.realJID.description] else {
            logger.warning("a line from an occupant without a puppet was not relayed", metadata: ["network": "\(name)", "channel": "\(channel)"])
            metrics.notRelayed.increment()
            return
        }
        let folded = network.fold(channel)
        wake(&puppet, network: &network)
        if puppet.relayed || puppet.relayedChannels.contains(folded) {
            networks[name] = network
            relaySay(nick: puppet.roomNick, network: name, channel: channel, body: body)
            return
        }
        if puppet.joined.contains(folded), let nick = puppet.nick {
            var lines = privmsgs(channel: channel, text: body, nick: nick, lineLength: network.isupport.lineLength, maxLines: network.configuration.translation.maxLines, multiline: puppet.multiline)
            // On the first line: a PRIVMSG, or the BATCH that opens a draft/multiline message.
            if let inReplyTo, puppet.messageTags, !lines.isEmpty {
                lines[0].tags.append((key: "+draft/reply", value: inReplyTo))
            }
            // The bridge's connection sees the lines come back with their msgids (message-tags).
            // A draft/multiline batch's msgid comes on its BATCH line, which is not matched: such
            // a message cannot be named from IRC.
            if network.capabilities.contains("message-tags"), !lines.contains(where: { $0.command == "BATCH" }) {
                for (index, line) in lines.enumerated() {
                    puppet.unseen.append((folded, line.parameters[1], index == 0 ? lineID : nil))
                }
                if puppet.unseen.count > Puppet.maximumUnseen { puppet.unseen.removeFirst(puppet.unseen.count - Puppet.maximumUnseen) }
            }
            puppet.connection?.send(lines)
        } else if puppet.queued.count < Puppet.maximumQueuedLines {
            puppet.queued.append((folded, body))
        } else {
            logger.warning("puppet queue full; line dropped", metadata: ["network": "\(name)", "channel": "\(channel)"])
        }
        network.puppets[puppet.key] = puppet
        networks[name] = network
    }

    /// A puppet's channel line came back to the bridge's own connection: the msgid the server
    /// gave it now names the room line it relayed. Lines the server never passed on (a
    /// moderated channel) are skipped by matching the text.
    func puppetLineSeen(_ message: IRCMessage, network: inout NetworkState) {
        guard message.command == "PRIVMSG", let msgid = message.tag("msgid").flatMap(NetworkState.token), message.parameters.count >= 2,
            let key = network.puppetNicks[network.fold(message.sourceNick ?? "")], var puppet = network.puppets[key],
            let index = puppet.unseen.firstIndex(where: { $0.channel == network.fold(message.parameters[0]) && $0.text == message.parameters[1] })
        else { return }
        let line = puppet.unseen[index]
        puppet.unseen.removeSubrange(...index)
        network.puppets[key] = puppet
        if let lineID = line.lineID {
            withShadow(network: network.configuration.name, channel: line.channel) { room in
                room.noteIRCMsgID(msgid, forLine: lineID)
                return []
            }
        }
    }

    /// A reply, correction or reaction as one IRC line (PROTOCOL.md §5), or nil where the
    /// network's settings drop it.
    func ircText(_ line: RoomLine, network name: String) -> String? {
        guard let network = networks[name] else { return nil }
        let translation = network.configuration.translation
        switch line {
        case .reply(let to, let text, _):
            if text.hasPrefix("/me ") { return text }
            return "\(ircNick(to, network: network)): \(text)"
        case .correction(let text):
            guard translation.corrections == .line else { return nil }
            return text.hasPrefix("/me ") ? "/me (correction) " + text.dropFirst(4) : "(correction) " + text
        case .reaction(let emoji, let to, let snippet):
            guard translation.reactions else { return nil }
            let what = emoji.joined(separator: " ")
            guard let to else { return "/me reacted \(what)" }
            return "/me reacted \(what) to \(ircNick(to, network: network))" + (snippet.map { ": “\($0)”" } ?? "")
        }
    }

    /// How IRC knows whom a reply or reaction names: an IRC user by nick, an occupant by their
    /// puppet's nick (transliterated, maybe changed by the network).
    private func ircNick(_ mention: Mention, network: NetworkState) -> String {
        switch mention {
        case .local(let nick): nick
        case .remote(let occupant):
            network.puppets[occupant.realJID.description]?.nick
                ?? network.puppetNick(for: occupant.nick)
        case .roomNick(let nick): nick
        }
    }

    /// An IRC user wrote to a puppet: CTCP is answered here; text goes to that occupant as a
    /// private message from the room the two share (PROTOCOL.md §5, flow F).
    private func privateMessageToPuppet(from sender: String, text: String, puppet: Puppet, network name: String) {
        guard let connection = puppet.connection else { return }
        if text.hasPrefix("\u{1}") {
            let ctcp = text.trimmingPrefix("\u{1}").split(separator: "\u{1}").first.map(String.init) ?? ""
            let command = ctcp.split(separator: " ", maxSplits: 1).first.map { $0.uppercased() } ?? ""
            let reply: String? =
                switch command {
                case "VERSION": "VERSION Shadowbridge (IRC-XMPP bridge): \(puppet.roomNick) is an XMPP user"
                case "PING": ctcp
                case "TIME": "TIME \(Date.now.formatted(.iso8601))"
                default: nil
                }
            if let reply { connection.send(IRCMessage(command: "NOTICE", sender, "\u{1}\(reply)\u{1}")) }
            guard command == "ACTION" else { return }
        }
        guard let body = Self.bodyFromIRC(text) else { return }
        let shared = shadowsShared(network: name, ircNick: sender, roomNick: puppet.roomNick, channels: puppet.wanted.keys.sorted())
        guard let channel = shared else {
            connection.send(IRCMessage(command: "NOTICE", sender, "\(puppet.roomNick) is an XMPP user; they get private messages only from people in a bridged channel you share."))
            return
        }
        withShadow(network: name, channel: channel) { $0.ircPrivateMessage(nick: sender, toRoomNick: puppet.roomNick, body: body) }
    }

    /// A remote occupant wrote privately to one of our IRC users: their puppet says it.
    /// A puppet still connecting (or asleep, `puppet_joins = "lazy"`) says it once registered;
    /// a relayed occupant's goes from the bridge's connection (relayPrivateMessage).
    func puppetPrivateMessage(_ occupant: ShadowRoom.RemoteOccupant, to nick: String, network name: String, body: String) {
        guard var network = networks[name], var puppet = network.puppets[occupant.realJID.description] else {
            logger.warning("a private message from an occupant not on IRC was not relayed", metadata: ["network": "\(name)"])
            return
        }
        if puppet.relayed {
            relayPrivateMessage(from: puppet.roomNick, to: nick, body: body, network: &network)
            networks[name] = network
            return
        }
        wake(&puppet, network: &network)
        if puppet.relayed {
            // Waking it reached max_puppets: the bridge's connection speaks for it.
            relayPrivateMessage(from: puppet.roomNick, to: nick, body: body, network: &network)
            networks[name] = network
            return
        }
        if let puppetNick = puppet.nick, let connection = puppet.connection {
            connection.send(privmsgs(channel: nick, text: body, nick: puppetNick, lineLength: network.isupport.lineLength, maxLines: network.configuration.translation.maxLines))
            return
        }
        guard puppet.queuedPrivate.count < Puppet.maximumQueuedLines else {
            logger.warning("a private message from an occupant not on IRC was not relayed", metadata: ["network": "\(name)"])
            networks[name] = network
            return
        }
        puppet.queuedPrivate.append((nick, body))
        network.puppets[puppet.key] = puppet
        networks[name] = network
    }

    /// A relayed occupant (relay mode, or beyond what the network admits) writes privately to
    /// an IRC user: `<nick> text` from the bridge's nick, and the first time, how to answer.
    private func relayPrivateMessage(from roomNick: String, to nick: String, body: String, network: inout NetworkState) {
        guard let connection = network.connection, let bridgeNick = network.nick else {
            logger.warning("a private message from a relayed occupant was not sent: the bridge is not connected", metadata: ["network": "\(network.configuration.name)"])
            return
        }
        connection.send(plainRelay(nick: roomNick, body: body, channel: nick, bridgeNick: bridgeNick, network: network))
        let pair = network.fold(nick) + " " + roomNick
        if network.relayPrivateHinted.insert(pair).inserted {
            if network.relayPrivateHinted.count > 10_000 { network.relayPrivateHinted = [pair] }
            connection.send(IRCMessage(command: "NOTICE", nick, Self.clip("\(roomNick) is an XMPP user; to answer privately: /msg \(bridgeNick) \(roomNick): your text")))
        }
    }

    /// Whom `nick: text` (or `nick, text`) names among `roomNicks`, and the text. Room nicks
    /// may themselves contain `:` or `,` (`a:b`), so the longest room nick the line starts
    /// with, followed by `:` or `,`, wins; an exact match before a case-insensitive one.
    static func addressee(of text: String, among roomNicks: [String]) -> (roomNick: String, body: String)? {
        let line = text.drop(while: { $0 == " " })
        func body(after nick: String, caseInsensitive: Bool) -> String? {
            guard line.count > nick.count else { return nil }
            let head = line.prefix(nick.count)
            guard caseInsensitive ? head.lowercased() == nick.lowercased() : head == nick else { return nil }
            let rest = line.dropFirst(nick.count).drop(while: { $0 == " " })
            guard let mark = rest.first, mark == ":" || mark == "," else { return nil }
            let text = rest.dropFirst().trimmingCharacters(in: .whitespaces)
            return text.isEmpty ? nil : text
        }
        for caseInsensitive in [false, true] {
            let matches = roomNicks.compactMap { nick in body(after: nick, caseInsensitive: caseInsensitive).map { (nick, $0) } }
            if let longest = matches.max(by: { $0.0.count < $1.0.count }) { return longest }
        }
        return nil
    }

    /// An IRC user wrote to the bridge's own nick: `nick: text` is a private message to the
    /// relayed occupant of that room nick in a channel the two share; anything else gets a
    /// NOTICE saying how to write one. CTCP to the bridge is not text.
    func privateMessageToBridge(from sender: String, text: String, network: inout NetworkState) {
        guard !text.hasPrefix("\u{1}"), let connection = network.connection, let bridgeNick = network.nick else { return }
        let name = network.configuration.name
        let relayed = network.puppets.values.filter { $0.relayed }
        guard let (roomNick, body) = Self.addressee(of: text, among: relayed.map(\.roomNick)), let puppet = relayed.first(where: { $0.roomNick == roomNick }) else {
            // Once per sender: a chatty IRC user cannot fill the bridge's queue with answers.
            if network.relayPrivateHinted.insert("help " + network.fold(sender)).inserted {
                connection.send(IRCMessage(command: "NOTICE", sender, Self.clip("I relay XMPP users' lines. To write to one privately: /msg \(bridgeNick) nick: your text")))
            }
            return
        }
        guard let text = Self.bodyFromIRC(body) else { return }
        guard let channel = shadowsShared(network: name, ircNick: sender, roomNick: puppet.roomNick, channels: puppet.wanted.keys.sorted()) else {
            connection.send(IRCMessage(command: "NOTICE", sender, Self.clip("\(puppet.roomNick) is an XMPP user; they get private messages only from people in a bridged channel you share.")))
            return
        }
        withShadow(network: name, channel: channel) { $0.ircPrivateMessage(nick: sender, toRoomNick: puppet.roomNick, body: text) }
    }

    /// A room role is the puppet's channel status, where configured and the bridge may.
    func puppetRole(_ occupant: ShadowRoom.RemoteOccupant, network name: String, channel: String, role: String) {
        guard var network = networks[name], var puppet = network.puppets[occupant.realJID.description] else { return }
        puppet.roles[network.fold(channel)] = role
        if let mode = network.roleModeChange(&puppet, channel: channel) { network.connection?.send(mode) }
        network.puppets[puppet.key] = puppet
        networks[name] = network
    }

    /// `<show>` away/xa/dnd is AWAY with the status; available again is AWAY with no text.
    func puppetAway(_ occupant: ShadowRoom.RemoteOccupant, network name: String, message: String?) {
        guard var network = networks[name], var puppet = network.puppets[occupant.realJID.description] else { return }
        let away = message.map { $0.split(whereSeparator: \.isNewline).joined(separator: " ") }
        // Unchanged (a federation repeating it after a restart): IRC hears nothing.
        guard away != puppet.away else { return }
        puppet.away = away
        if puppet.nick != nil {
            puppet.connection?.send(puppet.away.map { IRCMessage(command: "AWAY", $0) } ?? IRCMessage(command: "AWAY"))
        }
        network.puppets[puppet.key] = puppet
        networks[name] = network
    }

    /// A room nick change is one NICK on IRC (PROTOCOL.md §5).
    func puppetRename(_ occupant: ShadowRoom.RemoteOccupant, to newNick: String, network name: String) {
        guard var network = networks[name], var puppet = network.puppets[occupant.realJID.description] else { return }
        if puppet.relayed {
            for channel in puppet.wanted.values.sorted() {
                relayAnnounce(network: name, channel: channel, "\(puppet.roomNick) is now known as \(newNick) in the XMPP room")
            }
        }
        puppet.roomNick = newNick
        let ircNick = network.puppetNick(for: newNick)
        if puppet.nick.map(network.fold) != network.fold(ircNick) {
            puppet.requestedNick = ircNick
            puppet.connection?.send(IRCMessage(command: "NICK", ircNick))
        }
        network.puppets[puppet.key] = puppet
        networks[name] = network
    }

    /// A subject set on XMPP becomes the channel topic, set by that occupant's puppet, on one line.
    func puppetTopic(_ occupant: ShadowRoom.RemoteOccupant, network name: String, channel: String, subject: String) {
        guard let network = networks[name], let puppet = network.puppets[occupant.realJID.description] else { return }
        let flat = Self.clip(subject, bytes: 390)
        if puppet.relayed || puppet.dormant || puppet.relayedChannels.contains(network.fold(channel)) {
            // No puppet in the channel: the bridge sets it (if it may).
            network.connection?.send(IRCMessage(command: "TOPIC", channel, flat))
            return
        }
        guard puppet.joined.contains(network.fold(channel)) else {
            logger.info("subject not set as topic: the occupant is not on IRC", metadata: ["network": "\(name)", "channel": "\(channel)"])
            return
        }
        puppet.connection?.send(IRCMessage(command: "TOPIC", channel, flat))
    }

    func puppetLeave(_ occupant: ShadowRoom.RemoteOccupant, network name: String, channel: String, reason: String?) {
        puppetLeave(key: occupant.realJID.description, network: name, channel: channel, reason: reason)
    }

    func puppetLeave(key: String, network name: String, channel: String, reason: String?) {
        guard var network = networks[name], var puppet = network.puppets[key] else { return }
        let folded = network.fold(channel)
        puppet.wanted.removeValue(forKey: folded)
        puppet.relayedChannels.remove(folded)
        puppet.queued.removeAll { $0.channel == folded }
        if puppet.relayed {
            if puppet.wanted.isEmpty { network.puppets.removeValue(forKey: puppet.key) } else { network.puppets[puppet.key] = puppet }
            networks[name] = network
            relayAnnounce(network: name, channel: channel, "\(puppet.roomNick) left the XMPP room" + (reason.map { " (\($0))" } ?? ""))
            return
        } else if puppet.wanted.isEmpty {
            // Its last channel: QUIT with the status text (PROTOCOL.md §5).
            puppet.connection?.quit(reason ?? "Left the room")
            network.puppets.removeValue(forKey: puppet.key)
            if let nick = puppet.nick { network.puppetNicks.removeValue(forKey: network.fold(nick)) }
            networks[name] = network
            updatePuppetGauges()
            return
        } else {
            if puppet.joined.remove(folded) != nil {
                puppet.connection?.send(IRCMessage(command: "PART", channel, reason ?? "Left the room"))
            }
            network.puppets[puppet.key] = puppet
        }
        networks[name] = network
    }

    /// The nick a puppet asks for: the one it had before for the same room nick (stored), else
    /// the room nick made fit for IRC.
    func preferredNick(for puppet: Puppet, network: NetworkState) -> String {
        let bare = JID(puppet.key)?.bare.description ?? puppet.key
        let made = network.puppetNick(for: puppet.roomNick)
        // Only a nick made from today's template: one from before a puppet_nick change is not
        // asked for again.
        if let stored = storedPuppetNicks[network.configuration.name]?[bare], stored.roomNick == puppet.roomNick,
            stored.ircNick == made || (1...9).contains(where: { IRCRegistration.alternative(made, attempt: $0, maximumLength: network.isupport.nickLength) == stored.ircNick })
        {
            return stored.ircNick
        }
        return made
    }

    /// Stores the nick the puppet now has (at registration, or after a NICK it asked for).
    private func rememberNick(of puppet: Puppet, network name: String) {
        guard let ircNick = puppet.nick else { return }
        let bare = JID(puppet.key)?.bare.description ?? puppet.key
        let nick = BridgeStore.PuppetNick(roomNick: puppet.roomNick, ircNick: ircNick)
        guard storedPuppetNicks[name]?[bare] != nick else { return }
        if writeState(["network": "\(name)"], failure: "puppet nick not written", { try $0.savePuppetNick(nick, occupant: bare, network: name) }) {
            storedPuppetNicks[name, default: [:]][bare] = nick
        }
    }

    /// One PRIVMSG per line, each split so the relayed line with a full prefix fits 512 bytes.
    /// One XMPP message as PRIVMSGs that each fit the line with our prefix; several lines go as
    /// one `draft/multiline` batch where the puppet's server offers it.
    /// Beyond `maxLines` IRC lines (0: no limit, `max_lines`), the rest is cut and a last line
    /// says so, so one paste cannot hold a channel for minutes under flood control.
    func privmsgs(channel: String, text: String, nick: String, lineLength: Int = 512, maxLines: Int = 0, multiline: IRCMultiline? = nil) -> [IRCMessage] {
        var action = false
        // A \u{1} inside XMPP text would make the line CTCP on IRC: only /me is CTCP.
        var text = Substring(text.filter { $0 != "\u{1}" })
        if text.hasPrefix("/me ") {
            action = true
            text = text.dropFirst(4)
        }
        text = Substring(IRCFormatting.mircFromStyling(String(text)))
        // ":nick!user@host PRIVMSG #channel :" with room for a 63-byte host, plus CR LF.
        let overhead = 1 + nick.utf8.count + 1 + 10 + 1 + 63 + 9 + channel.utf8.count + 2 + 2 + (action ? 9 : 0)
        // "@batch=<ref>;draft/multiline-concat " in front when batched.
        let tagOverhead = multiline == nil || action ? 0 : 48
        var pieces = IRCLineSplitter.pieces(String(text), maximumBytes: max(64, lineLength - overhead - tagOverhead))
        if maxLines > 0 && pieces.count > maxLines {
            let cut = pieces.count - (maxLines - 1)
            pieces = Array(pieces.prefix(maxLines - 1)) + [("[\(cut) more lines not relayed: the whole message is in the XMPP room]", false)]
        }
        if let multiline, !action {
            return multiline.messages(target: channel, pieces: pieces) { Self.batchReference() }
        }
        return pieces.map { piece in
            IRCMessage(command: "PRIVMSG", channel, action ? "\u{1}ACTION \(piece.text)\u{1}" : piece.text)
        }
    }

    /// A batch reference unique enough for one connection's open batches.
    static func batchReference() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 36)
    }
}
