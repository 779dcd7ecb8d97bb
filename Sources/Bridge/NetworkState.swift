import Configuration
import IRCCore
import IRCNIO

/// What the bridge knows about one IRC network.
struct NetworkState {
    var configuration: Network
    let fallback: IRCTextEncoding
    /// Which start of this network this is: a reload that restarts it makes a new one, and the
    /// old connection's late events are ignored.
    let generation: Int
    /// The last connection failure, for the status command.
    var lastError: String?
    var connection: IRCConnection?
    /// The server the bridge's own connection uses (puppets follow it).
    var server: Network.Server?
    /// The bridge connection's nick, once registered.
    var nick: String?
    /// What the server said in RPL_ISUPPORT (casemapping, NICKLEN, PREFIX...).
    var isupport = ISupport()
    /// IRCv3 capabilities enabled on the bridge connection, and their values.
    var capabilities: Set<String> = []
    var capabilityValues: [String: String] = [:]
    /// The newest channel line the bridge's connection saw, per channel (folded): where a
    /// CHATHISTORY catch-up starts after a reconnection.
    var lastSeen: [String: (msgid: String?, time: String?)] = [:]
    /// Message ids of recent channel lines, per channel (folded), so a line that history
    /// repeats is not relayed twice.
    var recentMessageIDs: [String: [String]] = [:]
    /// The server answered a RELAYMSG with FAIL (no privileges, say): relayed lines go as
    /// `<nick> text` until the bridge connects again.
    var relaymsgRefused = false
    /// Channels (folded) the bridge connection is in.
    var joined: Set<String> = []
    /// IRC users (folded nicks) per channel (folded); never the bridge or its puppets.
    var members: [String: Set<String>] = [:]
    /// Channel membership modes (o, v, h...) of IRC users, per channel (folded) and nick (folded).
    var memberModes: [String: [String: Set<Character>]] = [:]
    /// NAMES replies being collected, per channel.
    var pendingNames: [String: [String]] = [:]
    /// The opaque id behind each IRC user's real JID (PROTOCOL.md §2), by folded nick.
    var userIDs: [String: String] = [:]
    /// IRC users' hosts, where a JOIN showed them, by folded nick: for ban masks.
    var userHosts: [String: String] = [:]
    /// IRC users lost to a netsplit, by folded nick: the channels they have not rejoined yet,
    /// the servers that split, and which split this is (a later one replaces it).
    var splitUsers: [String: (nick: String, channels: Set<String>, reason: String, split: Int)] = [:]
    var splits = 0
    /// Open `netsplit` batches (ircv3 batch, netsplit type), by reference: the two servers
    /// that split. A QUIT tagged with one is a netsplit, whatever its reason says.
    var netsplitBatches: [String: String] = [:]
    /// Puppets by the real JID of the occupant they show.
    var puppets: [String: Puppet] = [:]
    /// Registered puppet nicks (folded) to puppet keys: how the bridge knows its own.
    var puppetNicks: [String: String] = [:]
    /// Another bridge's puppets (PROTOCOL.md flow J), folded nick -> the channels (folded)
    /// they are in: never occupants, their lines not relayed, like the bridge's own.
    var otherBridgePuppets: [String: Set<String>] = [:]
    /// The admin has been told that this network refused puppets and some occupants are
    /// relayed through the bridge's own connection.
    var relayAnnounced = false
    /// IRC users (folded nick and room nick) told how to answer a relayed occupant privately.
    var relayPrivateHinted: Set<String> = []
    /// When the next puppet may connect (admission rate), on the continuous clock.
    var nextPuppetAdmission = ContinuousClock.now
    /// When each IRC user (folded nick) was last told the room refused a line of theirs: a
    /// flooder hears it once per `refusalNoticeInterval`, not once per line.
    var lineRefusalNoticed: [String: ContinuousClock.Instant] = [:]
    /// A live restart: the connection the process before handed over, which server of the
    /// mapping it is on, the channels (folded) it is in, and who was in them.
    var resumeConnection: IRCConnectionHandover?
    var resumeServerIndex: Int?
    var resumeJoined: Set<String> = []
    var resumeMembers: [String: [BridgeHandover.Member]] = [:]

    init(configuration: Network, generation: Int) {
        self.configuration = configuration
        self.fallback = IRCTextEncoding(rawValue: configuration.encodingFallback) ?? .cp1252
        self.generation = generation
    }

    func fold(_ s: String) -> String { isupport.caseMapping.fold(s) }

    /// The realname every Shadowbridge puppet carries after its room nick.
    static let puppetRealnameMarker = "(XMPP, via Shadowbridge)"

    /// Whether `source` (`nick!user@host`, or a bare nick from NAMES) is another bridge's
    /// puppet: it matches `other_bridge_masks`, or (`other_shadowbridges`) extended-join
    /// shows a Shadowbridge puppet's realname (another Shadowbridge process on this network).
    func isOtherBridgePuppet(_ source: String, realname: String? = nil) -> Bool {
        if configuration.otherShadowbridges, let realname, realname.hasSuffix(Self.puppetRealnameMarker) { return true }
        return configuration.otherBridgeMasks.contains { IRCMask($0).matches(source, caseMapping: isupport.caseMapping) }
    }

    /// Forgets another bridge's puppet in `channel`, or everywhere when nil.
    mutating func otherBridgePuppetLeft(_ nick: String, channel: String?) {
        let key = fold(nick)
        guard let channel else {
            otherBridgePuppets[key] = nil
            return
        }
        otherBridgePuppets[key]?.remove(channel)
        if otherBridgePuppets[key]?.isEmpty == true { otherBridgePuppets[key] = nil }
    }

    /// Notes a channel line the bridge's connection received; false when its msgid was seen
    /// already (a CHATHISTORY answer overlapping what arrived live). Only history repeats
    /// lines, so without draft/chathistory there is nothing to note.
    mutating func noteSeen(_ message: IRCMessage, channel: String) -> Bool {
        guard capabilities.contains("draft/chathistory") else { return true }
        let msgid = message.tag("msgid")
        if let msgid {
            if recentMessageIDs[channel]?.contains(msgid) == true { return false }
            recentMessageIDs[channel, default: []].append(msgid)
            if recentMessageIDs[channel]!.count > 256 { recentMessageIDs[channel]!.removeFirst(64) }
        }
        // Where to ask history from goes into a command: only tokens that fit in one parameter.
        let reference = msgid.flatMap(Self.token)
        let time = message.tag("time").flatMap(Self.token)
        guard reference != nil || time != nil else { return true }
        // Only forward: a history answer replays older lines after newer live ones.
        if let time, let seen = lastSeen[channel]?.time, seen >= time { return true }
        lastSeen[channel] = (reference, time)
        return true
    }

    /// `value` when it is a short printable token (1 to 128 bytes of printable ASCII, no
    /// space): fit for an IRC parameter and for an XMPP id. Tag values come from the server and
    /// may be anything once their escapes are undone.
    static func token(_ value: String) -> String? {
        (1...128).contains(value.utf8.count) && value.utf8.allSatisfy({ (0x21...0x7E).contains($0) }) ? value : nil
    }

    /// draft/chathistory (ircv3, Ergo): after a reconnection the bridge asks for the channel
    /// lines said since the last one it saw, so lines said while it was away still reach the
    /// room. After a restart the place to start from comes from `bridge.database`; without
    /// one, nothing on the first join.
    func catchUpRequest(channel: String, name: String) -> IRCMessage? {
        guard capabilities.isSuperset(of: ["draft/chathistory", "batch", "server-time"]), let seen = lastSeen[fold(channel)] else { return nil }
        let reference = seen.msgid.map { "msgid=\($0)" } ?? seen.time.map { "timestamp=\($0)" }
        return reference.map { IRCMessage(command: "CHATHISTORY", "AFTER", name, $0, "100") }
    }

    /// draft/relaymsg (ircv3 proposal, Ergo): the bridge's own connection sends relayed
    /// users' lines under their own nick (`alice/xmpp`) rather than as `<alice> text`. Only
    /// with echo-message, whose echo says the line went out.
    var relaymsgSeparator: String? {
        guard !relaymsgRefused, capabilities.contains("draft/relaymsg"), capabilities.contains("echo-message") else { return nil }
        return capabilityValues["draft/relaymsg"]?.first.map(String.init) ?? "/"
    }

    /// Admission (`puppet_connections_per_second`): when a puppet that may not connect before
    /// `earliest` gets its turn, as a wait from now; the next turn moves on by one slot.
    mutating func admitPuppet(notBefore earliest: ContinuousClock.Instant = .now) -> Duration {
        let start = max(earliest, nextPuppetAdmission)
        nextPuppetAdmission = start + .milliseconds(Int(1000 / configuration.puppetConnectionsPerSecond))
        return start - .now
    }

    /// A QUIT reason that is a netsplit: two server names (`irc-a.example.net irc-b.example.net`),
    /// as servers write it; users cannot, since servers mark their quit messages.
    static func isNetsplit(_ reason: String) -> Bool {
        let parts = reason.split(separator: " ", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { server in
            server.contains(".") && !server.hasPrefix(".") && !server.hasSuffix(".")
                && server.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "*") }
        }
    }

    /// What a `BATCH` line opens or closes, for the batch types the bridge reads: `netsplit`
    /// with the servers as its reason (`BATCH +ref netsplit a.example b.example`). Other types
    /// (chathistory, netjoin, multiline) need nothing kept: their lines stand on their own.
    /// Bounded, so a server that never closes its batches cannot grow it.
    mutating func noteBatch(_ parameters: [String]) {
        guard let reference = parameters.first, reference.count > 1 else { return }
        let name = String(reference.dropFirst())
        if reference.hasPrefix("-") {
            netsplitBatches.removeValue(forKey: name)
        } else if reference.hasPrefix("+"), parameters.count >= 2, parameters[1].lowercased() == "netsplit" {
            if netsplitBatches.count >= 16 { netsplitBatches.removeAll() }
            let servers = parameters.dropFirst(2).prefix(2).joined(separator: " ")
            netsplitBatches[name] = servers.isEmpty ? "netsplit" : servers
        }
    }

    /// The servers of the netsplit batch `message` belongs to, if it belongs to one.
    func netsplitServers(of message: IRCMessage) -> String? {
        message.tag("batch").flatMap { netsplitBatches[$0] }
    }

    /// The QUIT a server sends for each user as it shuts down (ngircd "Server going down",
    /// InspIRCd "Server shutdown", UnrealIRCd and solanum "Server Terminating"): for the
    /// bridge the same as losing its connection, since the users will likely be back with it.
    static func isServerShutdown(_ reason: String) -> Bool {
        ["server going down", "server shutdown", "server shutting down", "server terminating"].contains(reason.lowercased())
    }

    /// An occupant's IRC nick on this network: the `puppet_nick` template, cut to NICKLEN.
    func puppetNick(for roomNick: String) -> String {
        PuppetNick.make(template: configuration.puppetNick, nick: roomNick, maximumLength: isupport.nickLength)
    }

    /// Forgets what the bridge knew of an IRC user who is in none of its channels any more.
    mutating func forget(_ key: String) {
        userIDs.removeValue(forKey: key)
        userHosts.removeValue(forKey: key)
    }

    /// Whether the bridge's own connection may KICK in `channel` (halfop or above).
    func holdsOps(in channel: String) -> Bool {
        guard let nick else { return false }
        return !(memberModes[fold(channel)]?[fold(nick)] ?? []).isDisjoint(with: ["q", "a", "o", "h", "y", "Y"])
    }

    /// The MODE that makes a joined puppet's channel status match its room role (PROTOCOL.md
    /// §5: moderator +o, participant +v), when `roles_as_modes` is on and the bridge holds ops.
    func roleModeChange(_ puppet: inout Puppet, channel: String) -> IRCMessage? {
        let folded = fold(channel)
        guard configuration.translation.rolesAsModes, let nick = puppet.nick, puppet.joined.contains(folded), holdsOps(in: channel) else { return nil }
        let wanted: Character? =
            switch puppet.roles[folded] {
            case "moderator": "o"
            case "participant": "v"
            default: nil
            }
        let current = puppet.roleModes[folded]
        guard wanted != current else { return nil }
        puppet.roleModes[folded] = wanted
        var modes = ""
        var targets: [String] = []
        if let current {
            modes += "-\(current)"
            targets.append(nick)
        }
        if let wanted {
            modes += "+\(wanted)"
            targets.append(nick)
        }
        return IRCMessage(command: "MODE", [channel, modes] + targets)
    }

    /// `*!*@host` for a user whose host a JOIN showed, else `nick!*@*`.
    func banMask(for nick: String) -> String {
        userHosts[fold(nick)].map { "*!*@\($0)" } ?? "\(nick)!*@*"
    }

    /// PROTOCOL.md §4: q, a, o and h make a moderator; v or nothing, a participant. Roles only:
    /// an IRC channel operator never becomes an XMPP owner or admin.
    static func role(for modes: Set<Character>) -> String {
        modes.isDisjoint(with: ["q", "a", "o", "h", "y", "Y"]) ? "participant" : "moderator"
    }
}

/// Connections lost in a row, for the reconnection backoff of the bridge's own connection and
/// of each puppet: a connection that stayed registered a while starts the count over, one
/// killed soon after registering (a kill loop) keeps backing off.
struct Reconnects {
    /// How long a connection must have stayed registered for its loss to reset the count.
    static let stable = Duration.seconds(60)
    private(set) var attempts = 0
    private var registeredAt: ContinuousClock.Instant?

    mutating func registered() { registeredAt = .now }

    /// One more failed or lost connection; the attempt number for the backoff.
    mutating func lost() -> Int {
        if let registeredAt, ContinuousClock.now - registeredAt >= Self.stable { attempts = 0 }
        registeredAt = nil
        attempts += 1
        return attempts
    }
}

/// One remote occupant's IRC connection (PROTOCOL.md §5: "puppet connects and JOINs").
struct Puppet {
    let key: String
    /// Which connection attempt this is: events from an older one are stale.
    var generation = 0
    var roomNick: String
    var connection: IRCConnection?
    var nick: String?
    /// A NICK the bridge sent for it (a room nick change) and the server has not confirmed.
    var requestedNick: String?
    /// Channels the occupant is in (folded -> as written).
    var wanted: [String: String] = [:]
    var joined: Set<String> = []
    /// Lines said before the puppet was in the channel.
    var queued: [(channel: String, text: String)] = []
    /// Whether the puppet's connection has message-tags on, so it may send `+draft/reply`.
    var messageTags = false
    /// Lines the puppet sent that the bridge's own connection has not yet seen come back
    /// (folded channel, the PRIVMSG text, the room line's id on a line's first piece): the
    /// msgid the server gives them names the room line (`ShadowRoom.noteIRCMsgID`). Bounded.
    var unseen: [(channel: String, text: String, lineID: String?)] = []
    static let maximumUnseen = 64
    /// Private messages written before the puppet was registered (nick, text).
    var queuedPrivate: [(target: String, text: String)] = []
    /// `puppet_joins = "lazy"`: the occupant has not spoken yet, so there is no connection.
    var dormant = false
    /// The network refused this puppet's connection: the occupant speaks through the bridge's
    /// own connection as `<nick> text` (issue 6, relay fallback), so nothing is lost.
    var relayed = false
    /// Channels (folded) the puppet cannot be in (kicked, banned, invite-only...): there the
    /// occupant is relayed through the bridge's connection instead.
    var relayedChannels: Set<String> = []
    /// The AWAY message to show, set again whenever the puppet (re)registers.
    var away: String?
    /// The occupant's room role per channel (folded), and the status mode the bridge gave the
    /// puppet for it there (`roles_as_modes`).
    var roles: [String: String] = [:]
    var roleModes: [String: Character] = [:]
    var reconnects = Reconnects()
    /// The server's draft/multiline limits, when this puppet's connection has it on.
    var multiline: IRCMultiline?
    /// Handed over by the process before (a live restart): the channels (folded) whose
    /// shadow has not yet federated and named this occupant again.
    var unconfirmed: Set<String> = []
    /// Handed over as away: until its room says it still is, it may have come back meanwhile.
    var awayUnconfirmed = false
    static let maximumQueuedLines = 500
}
