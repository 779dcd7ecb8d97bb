/// The namespaces Shadowbridge speaks, in one place.
public enum NS {
    public static let component = "jabber:component:accept"
    public static let stream = "http://etherx.jabber.org/streams"
    public static let stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas"
    public static let streams = "urn:ietf:params:xml:ns:xmpp-streams"
    public static let discoInfo = "http://jabber.org/protocol/disco#info"
    public static let discoItems = "http://jabber.org/protocol/disco#items"
    public static let ping = "urn:xmpp:ping"
    public static let muc = "http://jabber.org/protocol/muc"
    public static let mucUser = "http://jabber.org/protocol/muc#user"
    public static let mucOwner = "http://jabber.org/protocol/muc#owner"
    public static let mucAdmin = "http://jabber.org/protocol/muc#admin"
    public static let sid = "urn:xmpp:sid:0"
    public static let delay = "urn:xmpp:delay"
    public static let occupantID = "urn:xmpp:occupant-id:0"
    public static let dataForms = "jabber:x:data"
    public static let commands = "http://jabber.org/protocol/commands"
    public static let roomInfo = "http://jabber.org/protocol/muc#roominfo"
    public static let mam = "urn:xmpp:mam:2"
    public static let rsm = "http://jabber.org/protocol/rsm"
    public static let forward = "urn:xmpp:forward:0"
    /// XEP-0289 Federated MUC.
    public static let fmuc = "http://isode.com/protocol/fmuc"
    /// Shadowbridge's extension of FMUC for primary-replica rooms (PROTOCOL.md §1).
    public static let link = "urn:shadowbridge:dmuc-link:0"
}
