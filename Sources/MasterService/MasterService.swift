import Configuration
import Foundation
import DMUC
import Logging
import Metrics
import NIOCore
import Store
import XMPPCore
import XMPPNIO

/// What a master hands to the process a live restart execs: every room, each with its epoch,
/// and what the last stanzas it read made it send after its stream had ended, for the next
/// process to send.
public struct MasterHandover: Codable, Sendable {
    public var rooms: [MasterRoom.Handover]
    /// Serialized stanzas, in order.
    public var outbox: [String]
    /// Rooms in the file that could not be read, with why (not written): the others are
    /// taken up all the same, so one bad room does not cost every room its occupants.
    public var unreadableRooms: [String] = []

    enum CodingKeys: String, CodingKey { case rooms, outbox }

    public init(rooms: [MasterRoom.Handover], outbox: [String]) {
        self.rooms = rooms
        self.outbox = outbox
    }

    public init(from decoder: any Decoder) throws {
        /// One room, or why it cannot be read.
        struct Part: Decodable {
            var room: MasterRoom.Handover?
            var error: String?
            init(from decoder: any Decoder) {
                do { room = try MasterRoom.Handover(from: decoder) } catch { self.error = "\(error)" }
            }
        }
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let parts = try container.decode([Part].self, forKey: .rooms)
        rooms = parts.compactMap(\.room)
        unreadableRooms = parts.compactMap(\.error)
        outbox = try container.decodeIfPresent([String].self, forKey: .outbox) ?? []
    }
}

/// The master role (DESIGN.md §1): an XEP-0045 MUC service on its own component domain that
/// also federates shadow rooms. Routes each stanza to its room and sends what the room says.
public actor MasterService {
    let configuration: ShadowbridgeConfiguration.Master
    public nonisolated let session: ComponentSession
    let logger: Logger
    /// Bare JIDs that may run the ad-hoc commands.
    private let admins: Set<JID>
    var rooms: [JID: MasterRoom] = [:]
    /// Rooms, configuration and archive (`master.database`, or memory).
    let store: MasterStore
    /// The `stateVersion` of each stored room as last written, so unchanged rooms are not
    /// written again.
    var stored: [JID: Int] = [:]
    /// Changes not yet written; written in batches off the relay path.
    var pending = MasterStore.Batch()
    var flushScheduled = false
    /// The last write, so writes land in order and a reader can wait for them.
    var lastWrite: Task<Void, Never>?
    let storeFailed = Counter(label: "shadowbridge_errors_total", dimensions: [("kind", "store_write_failed")])
    /// Occupants are not persisted, so every start is a new epoch (PROTOCOL.md §3 H). Rooms
    /// taken up from a live restart keep theirs: their state is the same.
    let epoch: String
    /// Taken up from a live restart: the first stream, too, checks the occupants still exist.
    private let resumed: Bool
    /// A live restart's stanzas still to send, sent when the stream is up (`MasterHandover.outbox`).
    private var outbox: [XMLElement] = []
    /// Waits for the inbox to reach a mark (`handOver`).
    private var inboxMark: CheckedContinuation<Void, Never>?
    /// Handed over (SIGUSR2): what still arrives is no longer this process's.
    private var handedOver = false
    private let fanout = Counter(label: "shadowbridge_master_stanzas_out_total")
    private let linkOut = Counter(label: "shadowbridge_master_link_stanzas_total")
    private let federations = Counter(label: "shadowbridge_master_federations_total")
    private let refused = Counter(label: "shadowbridge_errors_total", dimensions: [("kind", "refused_by_master")])
    private let roomCount = Gauge(label: "shadowbridge_master_rooms")
    private let resyncs = Counter(label: "shadowbridge_master_link_resyncs_total")
    private let splits = Counter(label: "shadowbridge_master_link_splits_total")
    /// Seconds of silence before a shadow node is pinged (`xmpp.link_ping_interval`).
    let pingInterval: Double
    /// Link stanzas from a bridge in this process (`xmpp.link = "memory"`).
    let inbox = AsyncStream<XMLElement>.makeStream()
    private var connections = 0

    /// Opens the store and brings back the rooms it holds; throws when the database cannot be
    /// opened or read (the caller says so and exits).
    public init(
        configuration: ShadowbridgeConfiguration.Master, xmpp: ShadowbridgeConfiguration.XMPPServer, admins: [JID] = [],
        handover: MasterHandover? = nil, group: any EventLoopGroup, logger: Logger
    ) throws {
        self.configuration = configuration
        let epoch = RandomID.make(bytes: 6)
        self.epoch = epoch
        self.resumed = handover != nil
        self.pingInterval = xmpp.linkPingInterval
        self.store = try MasterStore(path: configuration.database)
        self.admins = Set(admins.map(\.bare))
        var logger = logger
        logger[metadataKey: "role"] = "master"
        self.logger = logger
        var outbox: [XMLElement] = []
        for text in handover?.outbox ?? [] {
            do {
                outbox.append(try XMLElement(parsing: text, namespace: NS.component))
            } catch {
                logger.error("live restart: a stanza handed over to send cannot be read; not sent", metadata: ["error": "\(error)"])
            }
        }
        self.outbox = outbox
        self.session = ComponentSession(
            configuration: ComponentConfiguration(
                host: xmpp.host, port: xmpp.port, domain: configuration.domain, secret: configuration.secret,
                identity: ("conference", "text", "Shadowbridge rooms"), features: [NS.muc, NS.discoItems, NS.commands]),
            group: group, logger: logger)
        // Rooms taken up have occupants from the start: what they are sent before the stream
        // is up waits for it rather than being dropped.
        if handover != nil { session.hold() }
        let admins = self.admins
        let orphans = try store.pruneOrphans()
        var loaded: [JID: MasterRoom] = [:]
        for record in try store.rooms() {
            guard let jid = JID(record.jid), let snapshot = Self.snapshot(record) else {
                logger.error("stored room unreadable; left in the database untouched", metadata: ["room": "\(record.jid)"])
                continue
            }
            let history = try store.recent(room: record.jid, limit: MasterRoom.historyCapacity).compactMap(Self.archivedMessage)
            var room = MasterRoom(jid: jid, restoring: snapshot, epoch: epoch, history: history)
            Self.configure(&room, admins: admins, configuration: configuration)
            // The bridges it had federate again shortly: what is said until then is kept for them.
            room.keepsReplayUntil = Date().addingTimeInterval(configuration.replaySeconds)
            loaded[jid] = room
        }
        logger.info(
            "room state loaded",
            metadata: ["rooms": "\(loaded.count)", "database": "\(configuration.database ?? "memory")", "orphaned_messages_removed": "\(orphans)"])
        for error in handover?.unreadableRooms ?? [] {
            logger.error("live restart: a room in the handover file cannot be read; its occupants are not in it", metadata: ["error": "\(error)"])
        }
        for part in handover?.rooms ?? [] {
            do {
                var room = try MasterRoom(handover: part)
                Self.configure(&room, admins: admins, configuration: configuration)
                loaded[room.jid] = room
            } catch {
                logger.error("live restart: a room handed over cannot be taken up; its occupants are not in it", metadata: ["room": "\(part.jid)", "error": "\(error)"])
            }
        }
        if let handover {
            logger.info(
                "live restart: rooms taken up from the process before",
                metadata: ["rooms": "\(handover.rooms.count)", "occupants": "\(loaded.values.reduce(0) { $0 + $1.occupantList.count })"])
        }
        self.stored = loaded.mapValues(\.stateVersion)
        for name in configuration.rooms {
            let jid = JID(local: name, domain: configuration.domain)
            if loaded[jid] == nil { loaded[jid] = Self.makeRoom(jid, epoch: epoch, admins: admins, configuration: configuration) }
        }
        self.rooms = loaded
    }

    /// Every new room starts here: a fresh stable id, this run's epoch, the service admins as
    /// owners. With `owner` a client creates it, locked and temporary until configured
    /// (XEP-0045 §10.1); without, it is a configured or mapped room, open and persistent.
    private static func makeRoom(
        _ jid: JID, epoch: String, admins: Set<JID>, configuration: ShadowbridgeConfiguration.Master, owner: JID? = nil
    ) -> MasterRoom {
        var room = MasterRoom(jid: jid, rid: RandomID.make(bytes: 16), epoch: epoch, config: owner == nil ? RoomConfig() : .created, owner: owner)
        configure(&room, admins: admins, configuration: configuration)
        return room
    }

    /// What every room takes from the service's settings.
    private static func configure(_ room: inout MasterRoom, admins: Set<JID>, configuration: ShadowbridgeConfiguration.Master) {
        room.serviceAdmins = admins
        room.archiveAllowed = configuration.archive
        room.replayLimit = (configuration.replayStanzas, configuration.replaySeconds)
        room.splitGrace = configuration.splitGrace
        room.clientLimit = configuration.occupantRate > 0 ? RateLimit(perSecond: configuration.occupantRate, burst: configuration.occupantBurst) : nil
        room.shadowLimit = configuration.shadowRate > 0 ? RateLimit(perSecond: configuration.shadowRate, burst: configuration.shadowBurst) : nil
    }

    private func makeRoom(_ jid: JID, owner: JID? = nil) -> MasterRoom {
        Self.makeRoom(jid, epoch: epoch, admins: admins, configuration: configuration, owner: owner)
    }

    /// Runs the component session, and archive retention, until the task is cancelled.
    public func run() async {
        for jid in rooms.keys.sorted() { persist(jid) }
        await withTaskGroup(of: Void.self) { tasks in
            tasks.addTask { await self.session.run(onConnected: { await self.connected() }, onStanza: { [self] stanza in await self.handle(stanza) }) }
            tasks.addTask { await self.keepLinksAlive() }
            tasks.addTask {
                for await stanza in self.inbox.stream {
                    if stanza.name == Self.inboxMarkName, stanza.namespace.isEmpty {
                        await self.reachedInboxMark()
                    } else {
                        await self.handle(stanza)
                    }
                }
            }
            // Retention is not a reason to stop: with `archive_retention_days = 0` it returns at
            // once, and waiting on the first task to end cancelled the whole master at start.
            let retention = Task { await self.retention() }
            await tasks.next()
            tasks.cancelAll()
            retention.cancel()
        }
        await flush()
    }

    /// Flow G: every `pingInterval`, each room pings its idle shadow nodes and splits away
    /// those that stopped answering.
    private func keepLinksAlive() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int(pingInterval * 1000)))
            if Task.isCancelled { return }
            let now = Date()
            for jid in rooms.keys.sorted() where rooms[jid]!.hasLinkUpkeep {
                let output = rooms[jid]!.tick(at: now, interval: pingInterval)
                session.send(output.stanzas)
                fanout.increment(by: output.stanzas.count)
                for note in output.notes { log(note, room: jid) }
            }
        }
    }

    /// A link stanza from the bridge in this process, handed over without the XMPP server.
    public nonisolated func deliverInMemory(_ stanza: XMLElement) {
        inbox.continuation.yield(stanza)
    }

    /// After a reconnect the XMPP server may have restarted and its clients with it: every local
    /// occupant is pinged from its room nick, and those whose server answers with an error are
    /// removed with 333 by the room's bounce rule, so ghosts do not hold nicks (XEP-0410's aim).
    private func connected() {
        connections += 1
        if resumed && connections == 1 {
            // First what the process before could not send, then what the rooms said while
            // this stream was not up yet (the bridge here may have relayed lines already).
            let pending = outbox + session.takeHeld()
            outbox = []
            if !pending.isEmpty { logger.info("live restart: sending what was kept for the stream", metadata: ["stanzas": "\(pending.count)"]) }
            session.send(pending)
        }
        guard connections > 1 || resumed else { return }
        var pings: [XMLElement] = []
        for jid in rooms.keys.sorted() {
            for occupant in rooms[jid]!.occupantList where occupant.node == .local {
                pings.append(.stanza(.iq, from: jid.with(resource: occupant.nick), to: occupant.realJID, type: "get", id: "ghost-" + RandomID.make(bytes: 6), children: [XMLElement("ping", namespace: NS.ping)]))
            }
        }
        if !pings.isEmpty { logger.info("stream reconnected; checking local occupants", metadata: ["occupants": "\(pings.count)"]) }
        session.send(pings)
    }

    /// Rooms a reload of the bridge's mappings names: they exist from now on, so XMPP users can
    /// join before the first IRC user federates. Rooms on other domains are not ours.
    public func ensureRooms(_ jids: [JID]) {
        for jid in jids where jid.domain == configuration.domain && jid.local != nil && rooms[jid.bare] == nil {
            rooms[jid.bare] = makeRoom(jid.bare)
            persist(jid.bare)
            logger.info("room created", metadata: ["room": "\(jid.bare)", "why": "mapped"])
        }
        roomCount.record(rooms.count)
    }

    /// A live restart (SIGUSR2): stops for the next process to go on with the rooms as they
    /// are. Link stanzas the bridge in this process sent first are handled, then the stream
    /// closes once the XMPP server has closed its side (so nothing it wrote is lost unread), and
    /// pending writes land. No one is told anything: the next process is the same room.
    public func handOver() async -> MasterHandover {
        await withCheckedContinuation { waiter in
            inboxMark = waiter
            if case .terminated = inbox.continuation.yield(XMLElement(Self.inboxMarkName, namespace: "")) { reachedInboxMark() }
        }
        await session.closeDraining()
        await flush()
        handedOver = true
        let rooms = rooms.keys.sorted().compactMap { self.rooms[$0]?.handover }
        // Including what a resumed process had not sent yet, if its stream never came up.
        let outbox = (outbox + session.takeHeld()).map { $0.serialized(parentNamespace: NS.component) }
        logger.info(
            "rooms handed over",
            metadata: ["rooms": "\(rooms.count)", "occupants": "\(rooms.reduce(0) { $0 + $1.occupantCount })", "to_send": "\(outbox.count)"])
        return MasterHandover(rooms: rooms, outbox: outbox)
    }

    /// Not an element any stanza can be: the link's in-memory inbox only.
    private static let inboxMarkName = "shadowbridge-inbox-mark"

    private func reachedInboxMark() {
        inboxMark?.resume()
        inboxMark = nil
    }

    /// Tells every client its room is going away (332), then closes the stream.
    public func shutdown() async {
        for jid in rooms.keys.sorted() {
            session.send(rooms[jid]!.shutdown(reason: "The room service is shutting down"))
        }
        await flush()
        await session.close()
    }

    func handle(_ stanza: XMLElement) {
        guard !handedOver else {
            logger.warning("a stanza arrived after the rooms were handed over; dropped", metadata: ["name": "\(stanza.name)", "from": "\(stanza["from"] ?? "")"])
            return
        }
        guard let to = stanza["to"].flatMap(JID.init), let from = stanza["from"].flatMap(JID.init) else { return }
        guard to.local != nil else {
            if let reply = answerService(stanza, to: to) { session.send(reply) }
            return
        }
        let roomJID = to.bare
        let fromShadow = configuration.allowedShadows.contains(from.domain)
        if rooms[roomJID] == nil {
            guard let created = createRoom(roomJID, for: stanza, fromShadow: fromShadow) else {
                if stanza.name == "presence" && stanza["type"] == nil && to.resource != nil {
                    // A join that would create the room: creation is restricted (XEP-0045 §10.1.1).
                    var reply = stanza.errorReply(type: "cancel", condition: "not-allowed", text: "rooms here are created by the bridge mappings or the admins")
                    reply.removeElements { $0.namespace == NS.muc }
                    session.send(reply)
                } else if stanza["type"] != "error" && !(stanza.name == "presence" && stanza["type"] == "unavailable") {
                    session.send(stanza.errorReply(type: "cancel", condition: "item-not-found", text: "no such room"))
                }
                return
            }
            rooms[roomJID] = created
            logger.info("room created", metadata: ["room": "\(roomJID)"])
        }
        if stanza.name == "iq", to.resource == nil, !fromShadow, let query = stanza.child("query", namespace: NS.mam) {
            answerArchiveQuery(stanza, query: query, room: rooms[roomJID]!, from: from)
            return
        }
        let output = rooms[roomJID]!.receive(stanza, fromShadowDomain: fromShadow, at: Date())
        session.send(output.stanzas)
        if let room = rooms[roomJID], room.isDestroyed || (room.isEmpty && (!room.config.persistent || room.locked)) {
            // Destroyed by its owner, or a temporary room whose last occupant left (§10.9).
            rooms[roomJID] = nil
            logger.info("room removed", metadata: ["room": "\(roomJID)", "why": "\(room.isDestroyed ? "destroyed" : "temporary and empty")"])
        }
        persist(roomJID, archived: output.archived)
        fanout.increment(by: output.stanzas.count)
        roomCount.record(rooms.count)
        for note in output.notes { log(note, room: roomJID) }
    }

    private func createRoom(_ jid: JID, for stanza: XMLElement, fromShadow: Bool) -> MasterRoom? {
        guard stanza.name == "presence", stanza["type"] == nil, let from = stanza["from"].flatMap(JID.init) else { return nil }
        let fromAdmin = admins.contains(from.bare)
        switch configuration.createRooms {
        case .onFederation where fromShadow, .admins where fromShadow, .anyone where fromShadow:
            // A bridge mapping's room: open and persistent, no owner but the config.
            return makeRoom(jid)
        case .anyone:
            return makeRoom(jid, owner: from)
        case .admins where fromAdmin:
            return makeRoom(jid, owner: from)
        default:
            return nil
        }
    }

    /// disco#items on the service lists the rooms (XEP-0045 §6.3); the commands node lists the
    /// ad-hoc commands to admins (XEP-0050).
    private func answerService(_ stanza: XMLElement, to: JID) -> XMLElement? {
        guard stanza.name == "iq", stanza["type"] == "get" || stanza["type"] == "set", let from = stanza["from"].flatMap(JID.init) else { return nil }
        let isAdmin = admins.contains(from.bare)
        if stanza["type"] == "get", let query = stanza.child("query", namespace: NS.discoItems) {
            if query["node"] == NS.commands {
                return AdHoc.items(stanza, commands: isAdmin ? Self.commands : [], domain: configuration.domain)
            }
            guard query["node"] == nil else { return stanza.errorReply(type: "cancel", condition: "item-not-found") }
            var result = XMLElement("query", namespace: NS.discoItems)
            // Hidden rooms and rooms still locked for their creator are not listed (XEP-0045 §6.3).
            for jid in rooms.keys.sorted() where rooms[jid]!.config.isPublic && !rooms[jid]!.locked {
                let bridged = rooms[jid]!.shadows.isEmpty ? "" : " (bridged)"
                result.append(XMLElement("item", namespace: NS.discoItems, attributes: ["jid": jid.description, "name": (jid.local ?? "") + bridged]))
            }
            return stanza.iqResult(result)
        }
        if let request = AdHoc.request(stanza) {
            switch AdHoc.route(stanza, request: request, commands: isAdmin ? Self.commands : [], allowed: isAdmin) {
            case .reply(let reply):
                if reply["type"] == "error" { logger.notice("ad-hoc command refused", metadata: ["from": "\(from)", "command": "\(request.node)"]) }
                return reply
            case .run(let command, _):
                logger.notice("ad-hoc command", metadata: ["from": "\(from)", "command": "\(command.node)"])
                return AdHoc.completed(stanza, request: request, outcome: AdHoc.Outcome(note: command.node == "status" ? statusText() : mappingsText()))
            }
        }
        return stanza.errorReply(type: "cancel", condition: "service-unavailable")
    }

    private static let commands = [
        AdHoc.Command(node: "status", name: "Status: rooms, occupants, federated shadows"),
        AdHoc.Command(node: "mappings", name: "List the rooms and the IRC channels bridged into them"),
    ]

    private func statusText() -> String {
        let occupants = rooms.values.reduce(0) { $0 + $1.occupantList.count }
        let shadows = rooms.values.reduce(0) { $0 + $1.shadows.count }
        return "master \(configuration.domain): \(rooms.count) rooms, \(occupants) occupants, \(shadows) federated shadow rooms; epoch \(epoch)"
    }

    private func mappingsText() -> String {
        let lines = rooms.keys.sorted().map { jid in
            let shadows = rooms[jid]!.shadows.map(\.description).sorted()
            return "\(jid): \(shadows.isEmpty ? "local" : "bridged from " + shadows.joined(separator: ", "))"
        }
        return lines.isEmpty ? "no rooms" : lines.joined(separator: "\n")
    }

    private func log(_ note: MasterRoom.Note, room: JID) {
        switch note {
        case .federated(let shadow):
            federations.increment()
            logger.info("link federated", metadata: ["room": "\(room)", "shadow": "\(shadow)"])
        case .nodeLeft(let shadow):
            logger.info("link node left", metadata: ["room": "\(room)", "shadow": "\(shadow)"])
        case .linkStanza(let shadow, let kind, let seq):
            linkOut.increment()
            logger.debug("link out", metadata: ["room": "\(room)", "shadow": "\(shadow)", "kind": "\(kind.rawValue)", "seq": "\(seq)"])
        case .refused(let from, let condition):
            refused.increment()
            logger.info("refused", metadata: ["room": "\(room)", "from": "\(from)", "condition": "\(condition)"])
        case .resync(let shadow, let replayed):
            resyncs.increment()
            logger.info("link resync", metadata: ["room": "\(room)", "shadow": "\(shadow)", "answer": "\(replayed.map { "replay \($0)" } ?? "full")"])
        case .split(let shadow, let why):
            splits.increment()
            logger.warning("link split", metadata: ["room": "\(room)", "shadow": "\(shadow)", "why": "\(why)"])
        }
    }
}
