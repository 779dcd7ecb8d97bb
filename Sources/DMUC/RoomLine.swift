import Foundation
import XMPPCore

/// What modern XMPP clients add to a groupchat line, read for IRC (PROTOCOL.md §5): a reply
/// (XEP-0461), a correction (XEP-0308), a reaction (XEP-0444). A plain line, with a shared
/// file's link (XEP-0066, as XEP-0363 uploads send it) added to its text, stays a plain
/// `remoteMessage`.
public enum RoomLine: Sendable, Hashable {
    /// `text` answers a line of `to`; the quote the client put in front for older clients is
    /// removed, IRC shows `nick: text` instead. `ircMsgID`: the IRC server's msgid of the line
    /// answered, where known, for IRCv3 clients (`+draft/reply`).
    case reply(to: Mention, text: String, ircMsgID: String? = nil)
    /// The sender corrected an earlier line; `text` is the whole line as it now reads.
    case correction(text: String)
    /// The sender added these reactions to a line of `to` (nil: a line no longer remembered),
    /// whose start is `snippet`.
    case reaction(emoji: [String], to: Mention?, snippet: String?)
}

/// Whom a reply or a reaction refers to, so IRC can name them as IRC knows them.
public enum Mention: Sendable, Hashable {
    /// One of this node's IRC users, by IRC nick.
    case local(ircNick: String)
    /// Someone shown on IRC through a puppet (or the relay).
    case remote(ShadowRoom.RemoteOccupant)
    /// A room nick the node does not know (gone, or never seen).
    case roomNick(String)
}

/// The room's recent lines by every id a reply or a reaction may use (the room's stanza-id,
/// the sender's message id and origin-id), and by the msgid the IRC server gave the line, so
/// that a reply names the same line on either side. Bounded.
struct RecentLines: Sendable {
    static let capacity = 256

    struct Line: Sendable {
        var author: Mention
        var snippet: String
        /// The author's room nick when the line was said.
        var roomNick: String?
        /// Its ids, the room's stanza-id first where it gave one (XEP-0461 names a groupchat
        /// line by it).
        var ids: [String]
        /// The IRC server's msgid of the line: an IRC user's line, or the one a puppet said.
        var ircMsgID: String?
    }

    private var lines: [String: Line] = [:]
    private var order: [[String]] = []
    /// IRC msgid -> one id of the line.
    private var byIRCMsgID: [String: String] = [:]
    /// The reactions each reactor last showed on each line, so only added ones are told.
    private var reactions: [String: Set<String>] = [:]

    /// Returns the line's first id (the room's stanza-id where it gave one), nil when it has none.
    @discardableResult
    mutating func remember(_ stanza: XMLElement, room: JID, author: Mention, body: String, ircMsgID: String? = nil) -> String? {
        let ids = Self.ids(of: stanza, room: room)
        guard !ids.isEmpty else { return nil }
        let line = Line(author: author, snippet: Self.snippet(body), roomNick: stanza["from"].flatMap(JID.init)?.resource, ids: ids, ircMsgID: ircMsgID)
        for id in ids { lines[id] = line }
        if let ircMsgID { byIRCMsgID[ircMsgID] = ids[0] }
        // Ids a client reuses can leave a msgid behind at eviction: bounded all the same.
        if byIRCMsgID.count > Self.capacity * 4 { byIRCMsgID.removeAll() }
        order.append(ids)
        if order.count > Self.capacity {
            for id in order.removeFirst() {
                if let msgid = lines.removeValue(forKey: id)?.ircMsgID, byIRCMsgID[msgid] == id { byIRCMsgID.removeValue(forKey: msgid) }
            }
        }
        return ids[0]
    }

    func line(_ id: String) -> Line? { lines[id] }

    func line(ircMsgID msgid: String) -> Line? { byIRCMsgID[msgid].flatMap { lines[$0] } }

    /// The IRC server gave the line with id `id` the msgid `msgid` (a puppet's line, seen
    /// coming back from the server). The first msgid a line gets stays: a long line split in
    /// several is named by its first piece.
    mutating func noteIRCMsgID(_ msgid: String, forLine id: String) {
        guard var line = lines[id], line.ircMsgID == nil, byIRCMsgID[msgid] == nil else { return }
        line.ircMsgID = msgid
        for other in line.ids { lines[other] = line }
        byIRCMsgID[msgid] = line.ids[0]
    }

    /// The reactions `reactor` shows now on line `id` that it did not before.
    mutating func added(_ emoji: [String], by reactor: JID, on id: String) -> [String] {
        let key = "\(reactor)\u{0}\(id)"
        let before = reactions[key] ?? []
        if reactions.count >= Self.capacity * 4 { reactions.removeAll() }
        reactions[key] = Set(emoji)
        var seen: Set<String> = []
        return emoji.filter { !before.contains($0) && seen.insert($0).inserted }
    }

    /// At most three: the stanza-id the room gave (a client's own claim does not count), the
    /// sender's origin-id, the message id.
    static func ids(of stanza: XMLElement, room: JID) -> [String] {
        let sid = stanza.elements.first { $0.name == "stanza-id" && $0.namespace == NS.sid && $0["by"].flatMap(JID.init) == room }?["id"]
        let origin = stanza.elements.first { $0.name == "origin-id" && $0.namespace == NS.sid }?["id"]
        var ids: [String] = []
        for id in [sid, origin, stanza["id"]].compactMap({ $0 }) where !id.isEmpty && id.utf8.count <= 128 && !ids.contains(id) { ids.append(id) }
        return ids
    }

    /// The start of a line, on one line, for `reacted 👍 to bob: “…”`.
    static func snippet(_ body: String) -> String {
        let flat = body.split(whereSeparator: \.isNewline).joined(separator: " ")
        return flat.count > 40 ? String(flat.prefix(40)) + "…" : flat
    }
}

enum RoomLineParsing {
    static let reply = "urn:xmpp:reply:0"
    static let correction = "urn:xmpp:message-correct:0"
    static let reactions = "urn:xmpp:reactions:0"
    static let oob = "jabber:x:oob"
    static let fallbacks = ["urn:xmpp:fallback:0", "urn:xmpp:feature-fallback:0"]

    /// The body without the part a `<fallback for=namespace>` marks (XEP-0428): positions
    /// count Unicode scalars; a fallback naming no range covers the whole body.
    static func removingFallback(_ body: String, for namespace: String, in stanza: XMLElement) -> String {
        let marks = stanza.elements.filter { fallbacks.contains($0.namespace) && $0.name == "fallback" && $0["for"] == namespace }
        guard !marks.isEmpty else { return body }
        let scalars = Array(body.unicodeScalars)
        // Ranges may overlap or run past the end (a hostile client): drop the union, once.
        var dropped = Array(repeating: false, count: scalars.count)
        for mark in marks {
            let bodies = mark.elements.filter { $0.name == "body" }
            if bodies.isEmpty { return "" }
            for range in bodies {
                guard let start = range["start"].flatMap(Int.init), let end = range["end"].flatMap(Int.init), 0 <= start, start < end else { continue }
                for index in min(start, scalars.count)..<min(end, scalars.count) { dropped[index] = true }
            }
        }
        var kept = String.UnicodeScalarView()
        for (index, scalar) in scalars.enumerated() where !dropped[index] { kept.append(scalar) }
        var text = String(kept)
        while text.first?.isNewline == true { text.removeFirst() }
        return text
    }

    /// The body with a shared file's link (XEP-0066) when the body does not already carry it.
    static func withLink(_ body: String?, in stanza: XMLElement) -> String? {
        guard let url = stanza.child("x", namespace: oob)?.child("url", namespace: oob)?.text.trimmingCharacters(in: .whitespacesAndNewlines), !url.isEmpty else {
            return body
        }
        guard let body, !body.isEmpty else { return url }
        return body.contains(url) ? body : body + " " + url
    }
}
