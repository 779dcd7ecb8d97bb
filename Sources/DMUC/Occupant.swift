import XMLCore
import XMPPCore

/// Where an occupant's session lives: directly on the master (a stock client), or behind a
/// federated shadow node (PROTOCOL.md §2).
public enum OccupantNode: Sendable, Hashable {
    case local
    /// The shadow room's bare JID, e.g. `#ops%example@irc.example.org`.
    case shadow(JID)
}

/// One occupant of a master room (XEP-0045 §5).
public struct Occupant: Sendable, Hashable {
    public var nick: String
    /// The client's full JID, or the real JID a shadow asserted with `<fmuc from/>`.
    public var realJID: JID
    public var node: OccupantNode
    public var role: String
    public var affiliation: String
    /// The presence payload the occupant last sent (show, status...), without MUC or link elements.
    public var presencePayload: [XMLElement]
    /// More clients of the same bare JID sharing the nick (XEP-0045 multi-session); `realJID`
    /// is the first.
    public var otherSessions: [JID] = []
    /// The XEP-0421 occupant id, set by the master room that holds the occupant: an HMAC of
    /// the real bare JID, made once rather than for every stanza the occupant sends.
    public internal(set) var occupantID = ""

    /// Every client session the room sends this occupant's copies to.
    public var sessions: [JID] { otherSessions.isEmpty ? [realJID] : [realJID] + otherSessions }

    public init(nick: String, realJID: JID, node: OccupantNode, role: String = "participant", affiliation: String = "none") {
        self.nick = nick
        self.realJID = realJID
        self.node = node
        self.role = role
        self.affiliation = affiliation
        self.presencePayload = []
    }
}
