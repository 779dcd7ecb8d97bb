import XMLCore
import XMPPCore

/// The FMUC (XEP-0289) and link-extension elements the master and shadows exchange
/// (PROTOCOL.md §3). Builders and readers in one place so both ends agree on the shapes.
public enum LinkElements {
    /// `<fmuc xmlns='http://isode.com/protocol/fmuc' from='REAL'/>`: the occupant's real JID,
    /// asserted by the node that holds it.
    public static func fmuc(from real: JID) -> XMLElement {
        XMLElement("fmuc", namespace: NS.fmuc, attributes: ["from": real.description])
    }

    /// The real JID a node asserts in a stanza, if any.
    public static func fmucFrom(_ stanza: XMLElement) -> JID? {
        stanza.child("fmuc", namespace: NS.fmuc)?["from"].flatMap(JID.init)
    }

    /// `<link version='0' mode='primary-replica'/>` on a federating presence.
    public static func link(epoch: String? = nil, lastSeq: UInt64? = nil) -> XMLElement {
        var attributes = ["version": "0", "mode": "primary-replica"]
        if let epoch { attributes["epoch"] = epoch }
        if let lastSeq { attributes["last-seq"] = String(lastSeq) }
        return XMLElement("link", namespace: NS.link, attributes: attributes)
    }

    /// `<seq n epoch/>` on every room-wide stanza the master sends to a shadow.
    public static func seq(_ n: UInt64, epoch: String) -> XMLElement {
        XMLElement("seq", namespace: NS.link, attributes: ["n": String(n), "epoch": epoch])
    }

    public static func seqNumber(_ stanza: XMLElement) -> UInt64? {
        stanza.child("seq", namespace: NS.link)?["n"].flatMap { UInt64($0) }
    }

    /// `<sync epoch rid mode seq/>` on the subject that closes a federation burst.
    public static func sync(epoch: String, rid: String, seq: UInt64) -> XMLElement {
        XMLElement(
            "sync", namespace: NS.link,
            attributes: ["epoch": epoch, "rid": rid, "mode": "primary-replica", "seq": String(seq)])
    }

    /// `<fmuc><left/></fmuc>`: the master's word that a node has no occupants left.
    public static func left() -> XMLElement {
        XMLElement("fmuc", namespace: NS.fmuc, children: [.element(XMLElement("left", namespace: NS.fmuc))])
    }

    public static func isLeft(_ stanza: XMLElement) -> Bool {
        stanza.child("fmuc", namespace: NS.fmuc)?.child("left", namespace: NS.fmuc) != nil
    }

    /// `<removed kind='kick' by='op' reason='...'/>`: how a shadow says someone else removed
    /// its IRC user (PROTOCOL.md §3 E).
    public static func removed(kind: String, by: String?, reason: String?) -> XMLElement {
        var element = XMLElement("removed", namespace: NS.link, attributes: ["kind": kind])
        if let by { element["by"] = by }
        if let reason, !reason.isEmpty { element["reason"] = reason }
        return element
    }

    /// `<fmuc><reject>reason</reject></fmuc>`: the master refuses a node's federation whole.
    public static func reject(_ reason: String) -> XMLElement {
        XMLElement("fmuc", namespace: NS.fmuc, children: [.element(.text("reject", namespace: NS.fmuc, reason))])
    }

    public static func rejection(_ stanza: XMLElement) -> String? {
        stanza.child("fmuc", namespace: NS.fmuc)?.child("reject", namespace: NS.fmuc)?.text
    }

    /// `<origin-id xmlns='urn:xmpp:sid:0' id/>` (XEP-0359).
    public static func originID(_ id: String) -> XMLElement {
        XMLElement("origin-id", namespace: NS.sid, attributes: ["id": id])
    }

    public static func originID(of stanza: XMLElement) -> String? {
        stanza.child("origin-id", namespace: NS.sid)?["id"]
    }

    /// `<resync epoch from-seq/>` (flow D): a shadow missing numbered stanzas from `fromSeq` on.
    public static func resync(epoch: String, fromSeq: UInt64) -> XMLElement {
        XMLElement("resync", namespace: NS.link, attributes: ["epoch": epoch, "from-seq": String(fromSeq)])
    }

    /// The master's answer to `resync`: `<replay count/>` after the replayed stanzas, or
    /// `<full/>`: the stanzas are gone (or the epoch changed), federate again.
    public static func replayed(_ count: Int) -> XMLElement {
        XMLElement("replay", namespace: NS.link, attributes: ["count": String(count)])
    }

    public static func full() -> XMLElement { XMLElement("full", namespace: NS.link) }

    /// `<split/>` in an error: the master split this node away and refuses what it submits
    /// until it federates again (flow G).
    public static func split() -> XMLElement { XMLElement("split", namespace: NS.link) }

    public static func isSplitError(_ stanza: XMLElement) -> Bool {
        stanza.child("error", namespace: stanza.namespace)?.child("split", namespace: NS.link) != nil
    }

    /// `<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>` between a master room and a node.
    public static func ping(from: JID, to: JID, id: String) -> XMLElement {
        .stanza(.iq, from: from, to: to, type: "get", id: id, children: [XMLElement("ping", namespace: NS.ping)])
    }

    public static func isPing(_ stanza: XMLElement) -> Bool {
        stanza.name == "iq" && stanza["type"] == "get" && stanza.elements.first.map { $0.name == "ping" && $0.namespace == NS.ping } == true
    }

    /// An error from the other side's XMPP server rather than from the other node: its domain
    /// unreachable (`remote-server-*`) or its component down (`service-unavailable` of type
    /// `wait`, what a server answers for a component that is not connected).
    public static func isBounce(_ stanza: XMLElement) -> Bool {
        guard stanza["type"] == "error", let condition = stanza.errorCondition else { return false }
        if condition.hasPrefix("remote-server-") { return true }
        return condition == "service-unavailable" && stanza.child("error", namespace: stanza.namespace)?["type"] == "wait"
    }

    /// A bounce that makes the master split a node (flow G): `remote-server-*` on anything; a
    /// component-down bounce only on its ping, the one stanza whose errors can only be that.
    public static func meansUnreachable(_ error: XMLElement) -> Bool {
        isBounce(error) && (error.name == "iq" || error.errorCondition?.hasPrefix("remote-server-") == true)
    }

    /// True for the elements that belong to the link and must never reach a client.
    public static func isLinkElement(_ element: XMLElement) -> Bool {
        element.namespace == NS.fmuc || element.namespace == NS.link
    }
}
