import Foundation
import XMPPCore

/// The link's upkeep on the master side (PROTOCOL.md §3 D and G): the replay buffer a shadow's
/// `resync` is answered from, keepalive pings to idle nodes, and splits.
extension MasterRoom {
    /// One room-wide stanza as every shadow got it (numbered, with its real JID), kept for
    /// `replay`.
    struct ReplayEntry: Sendable {
        var seq: UInt64
        var date: Date
        var stanza: XMLElement
    }

    /// What the room knows of a federated node's liveness.
    struct LinkLiveness: Sendable {
        /// When the node last sent anything to the room.
        var lastHeard: Date
        /// The ping waiting for an answer, and how many went unanswered in a row.
        var pingID: String?
        var misses = 0
    }

    /// Pings are sent after this many idle intervals; this many unanswered ones are a split.
    public static let missedPingsForSplit = 3

    /// A split node's occupants, kept for `splitGrace` (see `splitHolds`).
    struct SplitHold: Sendable {
        var since: Date
        var keys: Set<String>
    }

    mutating func remember(_ stanza: XMLElement, seq: UInt64) {
        guard replayLimit.stanzas > 0 else { return }
        replay.append(ReplayEntry(seq: seq, date: now, stanza: stanza))
        // Trimmed in batches, so a busy room does not shift the whole buffer on every stanza:
        // it may hold a quarter more than the limit, which only makes a replay likelier.
        let slack = max(16, replayLimit.stanzas / 4)
        guard replay.count > replayLimit.stanzas + slack || (replay.count > 1 && replay[0].date < now.addingTimeInterval(-replayLimit.seconds - 60)) else { return }
        let tooOld = now.addingTimeInterval(-replayLimit.seconds)
        var drop = max(0, replay.count - replayLimit.stanzas)
        while drop < replay.count, replay[drop].date < tooOld { drop += 1 }
        if drop > 0 { replay.removeFirst(drop) }
    }

    /// Whether `tick` has anything to do: nodes to keep alive, or split nodes' occupants held.
    public var hasLinkUpkeep: Bool { !shadows.isEmpty || !splitHolds.isEmpty }

    /// A node was heard from: it is alive, whatever it said.
    mutating func heard(from node: JID) {
        guard links[node] != nil else { return }
        links[node] = LinkLiveness(lastHeard: now)
    }

    /// Flow D: `<resync epoch from-seq/>` from a federated node. The stanzas it misses are
    /// sent again (each with its original time in `<delay/>`), then `<replay count/>`; when the
    /// buffer no longer holds them, or the epoch is not this room's, the answer is `<full/>`
    /// and the node federates again.
    mutating func resync(_ stanza: XMLElement, request: XMLElement, from: JID, out: inout Output) {
        let node = from.bare
        let fromSeq = request["from-seq"].flatMap { UInt64($0) }
        // Answerable: nothing is missing (from-seq beyond the last), or the buffer reaches back.
        guard shadows.contains(node), request["epoch"] == epoch, let fromSeq, fromSeq > seq || replay.first.map({ $0.seq <= fromSeq }) == true else {
            out.stanzas.append(stanza.iqResult(LinkElements.full()))
            out.notes.append(.resync(shadow: node, replayed: nil))
            return
        }
        let missing = replay.drop { $0.seq < fromSeq }
        for entry in missing {
            var copy = entry.stanza
            copy["to"] = node.description
            copy.append(XMLElement("delay", namespace: NS.delay, attributes: ["from": jid.description, "stamp": XMPPDateTime.format(entry.date)]))
            out.stanzas.append(copy)
        }
        out.stanzas.append(stanza.iqResult(LinkElements.replayed(missing.count)))
        out.notes.append(.resync(shadow: node, replayed: missing.count))
    }

    /// Flow G, called by the service every `interval` seconds: a node silent for an interval
    /// is pinged from the room; one that leaves `missedPingsForSplit` pings unanswered is
    /// split away.
    public mutating func tick(at now: Date, interval: TimeInterval) -> Output {
        self.now = now
        var out = Output()
        for node in shadows.sorted() {
            var link = links[node] ?? LinkLiveness(lastHeard: now)
            guard now.timeIntervalSince(link.lastHeard) >= interval * 0.9 else { continue }
            if link.pingID != nil { link.misses += 1 }
            if link.misses >= Self.missedPingsForSplit {
                split(node, why: "\(link.misses) pings unanswered", out: &out)
                continue
            }
            let id = "link-" + RandomID.make(bytes: 6)
            link.pingID = id
            links[node] = link
            out.stanzas.append(LinkElements.ping(from: jid, to: node, id: id))
        }
        for node in splitHolds.keys.sorted() {
            guard let hold = splitHolds[node], now.timeIntervalSince(hold.since) >= splitGrace else { continue }
            splitHolds[node] = nil
            removeSplit(node, keys: hold.keys, out: &out)
        }
        return out
    }

    /// The node is unreachable: it is refused until it federates again, and its occupants
    /// stay for `splitGrace` seconds, so a bridge restart or a short outage shows nothing.
    /// Whoever the node has not brought back by then leaves with 333 and a netsplit-style
    /// status (`master-domain shadow-domain`, as IRC shows a split).
    mutating func split(_ node: JID, why: String, out: inout Output) {
        guard shadows.remove(node) != nil else { return }
        links[node] = nil
        splitNodes.insert(node)
        out.notes.append(.split(shadow: node, why: why))
        let keys = Set(joinOrder.filter { occupants[$0]?.node == .shadow(node) })
        if splitGrace > 0, !keys.isEmpty {
            splitHolds[node] = SplitHold(since: now, keys: keys)
        } else {
            removeSplit(node, keys: keys, out: &out)
        }
    }

    /// The split node's occupants among `keys` leave with 333, in join order.
    mutating func removeSplit(_ node: JID, keys: Set<String>, out: inout Output) {
        let status = "\(jid.domain) \(node.domain)"
        for key in joinOrder where keys.contains(key) && occupants[key]?.node == .shadow(node) {
            guard let occupant = occupants[key] else { continue }
            var unavailable = XMLElement.stanza(.presence, from: occupant.realJID, to: jid.with(resource: occupant.nick), type: "unavailable")
            unavailable.append(.text("status", namespace: NS.component, status))
            leave(key: key, stanza: unavailable, codes: [333], out: &out)
        }
    }

    /// A presence from a node about one of the occupants it kept through a split: that one is
    /// back (or gone by its own leave), so the grace's end does not remove it.
    mutating func confirmHeld(node: JID, real: JID, nick: String?) {
        guard var hold = splitHolds[node] else { return }
        if let key = occupantKey(realJID: real, node: .shadow(node)) { hold.keys.remove(key) }
        if let nick { hold.keys.remove(Self.fold(nick)) }
        splitHolds[node] = hold.keys.isEmpty ? nil : hold
    }

    /// What a split node sends before it federates again: refused with `<split/>`, so it
    /// knows to federate (a re-federating presence carries `<link/>` and is let through).
    func refuseFromSplitNode(_ stanza: XMLElement, out: inout Output) {
        guard stanza["type"] != "error", stanza["type"] != "result", !(stanza.name == "presence" && stanza["type"] == "unavailable") else { return }
        refuse(stanza, type: "wait", condition: "not-acceptable", text: "this node was split from the room; federate again", application: LinkElements.split(), out: &out)
    }
}
