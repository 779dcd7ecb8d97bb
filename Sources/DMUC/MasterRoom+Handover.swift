import Foundation
import XMLCore
import XMPPCore

/// A live restart (SIGUSR2) of a process that runs the master: the room as it is in memory,
/// for the process the old one execs. It keeps its epoch, sequence, occupants, links and
/// replay buffer, so clients see no 332 and shadows resync by replay, as after a short split.
extension MasterRoom {
    public struct Handover: Codable, Sendable {
        public struct OccupantPart: Codable, Sendable {
            var key: String
            var nick: String
            var realJID: String
            /// The shadow node's bare JID; nil for a client of this master.
            var node: String?
            var role: String
            var affiliation: String
            /// The presence payload, each element serialized.
            var presence: [String]
            var otherSessions: [String]
        }

        public struct LinkPart: Codable, Sendable {
            var node: String
            var lastHeard: Date
            var pingID: String?
            var misses: Int
        }

        public struct HoldPart: Codable, Sendable {
            var node: String
            var since: Date
            var keys: [String]
        }

        /// A stanza of the replay buffer (with its seq) or of the history (seq 0).
        public struct StanzaPart: Codable, Sendable {
            var seq: UInt64
            var date: Date
            var stanza: String
        }

        public var jid: String
        var rid: String
        var epoch: String
        var seq: UInt64
        var subject: String
        var subjectNick: String?
        var config: RoomConfig
        var locked: Bool
        var affiliations: [String: String]
        var occupantIDKey: [UInt8]
        /// In join order.
        var occupants: [OccupantPart]
        var shadows: [String]
        var links: [LinkPart]
        var splitNodes: [String]
        var splitHolds: [HoldPart]
        var replay: [StanzaPart]
        var keepsReplayUntil: Date
        var history: [StanzaPart]

        public var occupantCount: Int { occupants.count }
    }

    /// Why a handed-over room cannot be taken up.
    public struct HandoverError: Error, CustomStringConvertible {
        public var description: String
    }

    public var handover: Handover {
        func text(_ element: XMLElement) -> String { element.serialized(parentNamespace: NS.component) }
        return Handover(
            jid: jid.description, rid: rid, epoch: epoch, seq: seq, subject: subject, subjectNick: subjectNick, config: config, locked: locked,
            affiliations: Dictionary(uniqueKeysWithValues: affiliations.map { ($0.key.description, $0.value) }), occupantIDKey: occupantIDKey,
            occupants: joinOrder.compactMap { key in
                guard let occupant = occupants[key] else { return nil }
                let node: String? = if case .shadow(let shadow) = occupant.node { shadow.description } else { nil }
                return Handover.OccupantPart(
                    key: key, nick: occupant.nick, realJID: occupant.realJID.description, node: node, role: occupant.role,
                    affiliation: occupant.affiliation, presence: occupant.presencePayload.map(text), otherSessions: occupant.otherSessions.map(\.description))
            },
            shadows: shadows.map(\.description).sorted(),
            links: links.sorted { $0.key < $1.key }.map { Handover.LinkPart(node: $0.key.description, lastHeard: $0.value.lastHeard, pingID: $0.value.pingID, misses: $0.value.misses) },
            splitNodes: splitNodes.map(\.description).sorted(),
            splitHolds: splitHolds.sorted { $0.key < $1.key }.map { Handover.HoldPart(node: $0.key.description, since: $0.value.since, keys: $0.value.keys.sorted()) },
            replay: replay.map { Handover.StanzaPart(seq: $0.seq, date: $0.date, stanza: text($0.stanza)) },
            keepsReplayUntil: keepsReplayUntil,
            history: history.map { Handover.StanzaPart(seq: 0, date: $0.date, stanza: text($0.message)) })
    }

    /// The room as the process before handed it over; the service's settings (limits, admins,
    /// grace) are applied after, as for any room.
    public init(handover: Handover) throws(HandoverError) {
        func jid(_ text: String) throws(HandoverError) -> JID {
            guard let jid = JID(text) else { throw HandoverError(description: "\(handover.jid): \(text) is not a JID") }
            return jid
        }
        func element(_ text: String) throws(HandoverError) -> XMLElement {
            do {
                return try XMLElement(parsing: text, namespace: NS.component)
            } catch {
                throw HandoverError(description: "\(handover.jid): a stanza cannot be read: \(error)")
            }
        }
        self.init(jid: try jid(handover.jid), rid: handover.rid, epoch: handover.epoch, config: handover.config, occupantIDKey: handover.occupantIDKey)
        seq = handover.seq
        subject = handover.subject
        subjectNick = handover.subjectNick
        locked = handover.locked
        for (owner, affiliation) in handover.affiliations { affiliations[try jid(owner).bare] = affiliation }
        for part in handover.occupants {
            var node = OccupantNode.local
            if let shadow = part.node { node = .shadow(try jid(shadow)) }
            var occupant = Occupant(nick: part.nick, realJID: try jid(part.realJID), node: node, role: part.role, affiliation: part.affiliation)
            for text in part.presence { occupant.presencePayload.append(try element(text)) }
            for session in part.otherSessions { occupant.otherSessions.append(try jid(session)) }
            addOccupant(occupant, key: part.key)
        }
        for node in handover.shadows { shadows.insert(try jid(node)) }
        for link in handover.links { links[try jid(link.node)] = LinkLiveness(lastHeard: link.lastHeard, pingID: link.pingID, misses: link.misses) }
        for node in handover.splitNodes { splitNodes.insert(try jid(node)) }
        for hold in handover.splitHolds { splitHolds[try jid(hold.node)] = SplitHold(since: hold.since, keys: Set(hold.keys)) }
        for entry in handover.replay { replay.append(ReplayEntry(seq: entry.seq, date: entry.date, stanza: try element(entry.stanza))) }
        keepsReplayUntil = handover.keepsReplayUntil
        for entry in handover.history { history.append(HistoryEntry(message: try element(entry.stanza), date: entry.date)) }
    }
}
