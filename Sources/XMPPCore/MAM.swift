import Foundation

/// A XEP-0313 (v2, `urn:xmpp:mam:2`) archive query with its XEP-0059 result set request.
public struct MAMQuery: Sendable, Hashable {
    /// Why a query cannot be answered: the stanza error to send.
    public struct Refusal: Error, Sendable, Hashable {
        public var type: String
        public var condition: String
        public var text: String

        public init(type: String, condition: String, text: String) {
            self.type = type
            self.condition = condition
            self.text = text
        }
    }

    /// Which page: after an id (or from the start), or before one (`before` empty: the last page).
    public enum Page: Sendable, Hashable {
        case after(String?)
        case before(String?)
    }

    public var queryID: String?
    /// Only messages from this occupant (`room/nick`); the room's bare JID filters nothing.
    public var withNick: String?
    public var start: Date?
    public var end: Date?
    /// `urn:xmpp:mam:2#extended`: bounds by archive id, and a list of ids.
    public var afterID: String?
    public var beforeID: String?
    public var ids: [String] = []
    public var page: Page = .after(nil)
    public var max: Int
    /// `<flip-page/>`: the page's messages newest first.
    public var flipPage = false

    /// The most a page holds, whatever a client asks (as Prosody's default).
    public static let pageLimit = 50

    public init(page: Page = .after(nil), max: Int = MAMQuery.pageLimit) {
        self.page = page
        self.max = max
    }

    /// Reads `<query xmlns='urn:xmpp:mam:2'>` sent to `archive` (the room).
    public init(_ query: XMLElement, archive: JID) throws(Refusal) {
        self.init()
        queryID = query["queryid"]
        if let formElement = query.child("x", namespace: NS.dataForms) {
            guard let form = DataForm(formElement) else { throw Refusal(type: "modify", condition: "bad-request", text: "unreadable form") }
            if let with = form["with"]?.value, !with.isEmpty {
                guard let jid = JID(with) else { throw Refusal(type: "modify", condition: "jid-malformed", text: "with is not a JID") }
                if jid.bare != archive.bare { throw Refusal(type: "cancel", condition: "item-not-found", text: "with names no occupant of this room") }
                withNick = jid.resource
            }
            start = try Self.date(form, "start")
            end = try Self.date(form, "end")
            afterID = form["after-id"]?.value.flatMap { $0.isEmpty ? nil : $0 }
            beforeID = form["before-id"]?.value.flatMap { $0.isEmpty ? nil : $0 }
            ids = form["ids"]?.values ?? []
        }
        if let set = query.child("set", namespace: NS.rsm) {
            if let maxText = set.child("max", namespace: NS.rsm)?.text {
                guard let n = Int(maxText), n >= 0 else { throw Refusal(type: "modify", condition: "bad-request", text: "max is not a number") }
                max = Swift.min(n, Self.pageLimit)
            }
            if let before = set.child("before", namespace: NS.rsm) {
                page = .before(before.text.isEmpty ? nil : before.text)
            } else if let after = set.child("after", namespace: NS.rsm) {
                page = .after(after.text.isEmpty ? nil : after.text)
            }
            if set.child("index", namespace: NS.rsm) != nil {
                throw Refusal(type: "cancel", condition: "feature-not-implemented", text: "paging by index is not supported; use after/before")
            }
        }
        flipPage = query.child("flip-page", namespace: NS.mam) != nil
    }

    private static func date(_ form: DataForm, _ variable: String) throws(Refusal) -> Date? {
        guard let text = form[variable]?.value, !text.isEmpty else { return nil }
        guard let date = XMPPDateTime.parse(text) else { throw Refusal(type: "modify", condition: "bad-request", text: "\(variable) is not an XEP-0082 date-time") }
        return date
    }

    /// The form a client asks for with `iq get` (XEP-0313 §4.1.3).
    public static var form: DataForm {
        DataForm(type: "form", formType: NS.mam, fields: [
            .init("with", type: "jid-single"),
            .init("start", type: "text-single"),
            .init("end", type: "text-single"),
            .init("after-id", type: "text-single"),
            .init("before-id", type: "text-single"),
            .init("ids", type: "text-multi"),
        ])
    }

    /// One archived message for the querying client (XEP-0313 §4.2).
    public func result(from archive: JID, to client: JID, id: String, date: Date, message: XMLElement) -> XMLElement {
        var forwarded = XMLElement("forwarded", namespace: NS.forward)
        forwarded.append(XMLElement("delay", namespace: NS.delay, attributes: ["stamp": XMPPDateTime.format(date)]))
        // A forwarded stanza is in the client namespace (XEP-0297), not the component's.
        var inner = message.replacingNamespace(NS.component, with: "jabber:client")
        inner["to"] = nil
        forwarded.append(inner)
        var result = XMLElement("result", namespace: NS.mam, attributes: ["id": id])
        if let queryID { result["queryid"] = queryID }
        result.append(forwarded)
        return XMLElement.stanza(.message, from: archive, to: client, children: [result])
    }

    /// The closing `<fin/>` (XEP-0313 §4.3) with the page's RSM set.
    public static func fin(_ request: XMLElement, first: String?, last: String?, count: Int, complete: Bool) -> XMLElement {
        var fin = XMLElement("fin", namespace: NS.mam)
        if complete { fin["complete"] = "true" }
        var set = XMLElement("set", namespace: NS.rsm)
        if let first { set.append(.text("first", namespace: NS.rsm, first)) }
        if let last { set.append(.text("last", namespace: NS.rsm, last)) }
        set.append(.text("count", namespace: NS.rsm, String(count)))
        fin.append(set)
        return request.iqResult(fin)
    }
}

extension XMLElement {
    /// This element with `namespace` replaced by `replacement` wherever it occurs.
    public func replacingNamespace(_ namespace: String, with replacement: String) -> XMLElement {
        var copy = self
        if copy.namespace == namespace { copy.namespace = replacement }
        copy.children = children.map { node in
            if case .element(let element) = node { return .element(element.replacingNamespace(namespace, with: replacement)) }
            return node
        }
        return copy
    }
}
