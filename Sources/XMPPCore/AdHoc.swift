/// XEP-0050 ad-hoc commands, the protocol part: reading a request and building the replies.
/// What a command does is the service's business.
public enum AdHoc {
    public struct Command: Sendable {
        public var node: String
        public var name: String
        /// The form asked for before running; nil runs at once.
        public var form: DataForm?

        public init(node: String, name: String, form: DataForm? = nil) {
            self.node = node
            self.name = name
            self.form = form
        }
    }

    public struct Request: Sendable {
        public var node: String
        /// execute (the default), complete, next, prev or cancel.
        public var action: String
        public var sessionID: String?
        public var form: DataForm?
    }

    /// What finishing a command says.
    public struct Outcome: Sendable {
        public var note: String?
        /// info, warn or error.
        public var noteType: String
        public var result: DataForm?

        public init(note: String? = nil, noteType: String = "info", result: DataForm? = nil) {
            self.note = note
            self.noteType = noteType
            self.result = result
        }

        public static func error(_ text: String) -> Outcome { Outcome(note: text, noteType: "error") }
    }

    /// The request in an `iq type='set'`, if it is one.
    public static func request(_ stanza: XMLElement) -> Request? {
        guard stanza.name == "iq", stanza["type"] == "set", let command = stanza.child("command", namespace: NS.commands),
            let node = command["node"]
        else { return nil }
        return Request(
            node: node, action: command["action"] ?? "execute", sessionID: command["sessionid"],
            form: command.child("x", namespace: NS.dataForms).flatMap(DataForm.init))
    }

    /// disco#items for the commands node: the commands `from` may run.
    public static func items(_ stanza: XMLElement, commands: [Command], domain: String) -> XMLElement {
        var query = XMLElement("query", namespace: NS.discoItems, attributes: ["node": NS.commands])
        for command in commands {
            query.append(XMLElement("item", namespace: NS.discoItems, attributes: ["jid": domain, "node": command.node, "name": command.name]))
        }
        return stanza.iqResult(query)
    }

    /// The first stage of a command that asks for input.
    public static func askForm(_ stanza: XMLElement, node: String, form: DataForm) -> XMLElement {
        var command = XMLElement("command", namespace: NS.commands, attributes: [
            "node": node, "sessionid": RandomID.make(bytes: 8), "status": "executing",
        ])
        var actions = XMLElement("actions", namespace: NS.commands, attributes: ["execute": "complete"])
        actions.append(XMLElement("complete", namespace: NS.commands))
        command.append(actions)
        command.append(form.element)
        return stanza.iqResult(command)
    }

    public static func completed(_ stanza: XMLElement, request: Request, outcome: Outcome) -> XMLElement {
        var command = XMLElement("command", namespace: NS.commands, attributes: [
            "node": request.node, "sessionid": request.sessionID ?? RandomID.make(bytes: 8), "status": "completed",
        ])
        if let note = outcome.note { command.append(.text("note", namespace: NS.commands, note, attributes: ["type": outcome.noteType])) }
        if let result = outcome.result { command.append(result.element) }
        return stanza.iqResult(command)
    }

    public static func canceled(_ stanza: XMLElement, request: Request) -> XMLElement {
        stanza.iqResult(XMLElement("command", namespace: NS.commands, attributes: [
            "node": request.node, "sessionid": request.sessionID ?? "", "status": "canceled",
        ]))
    }

    /// Where a request goes next.
    public enum Route: Sendable {
        /// Answer with this (an error, the form, or the cancellation).
        case reply(XMLElement)
        /// Run the command with what was submitted, then answer with `completed`.
        case run(Command, DataForm?)
    }

    /// Routes one request: forbidden for strangers, item-not-found for unknown nodes, the form
    /// first for commands that need one, then the command itself.
    public static func route(_ stanza: XMLElement, request: Request, commands: [Command], allowed: Bool) -> Route {
        guard allowed else {
            return .reply(stanza.errorReply(type: "auth", condition: "forbidden", text: "ad-hoc commands are for the admins in the configuration"))
        }
        guard let command = commands.first(where: { $0.node == request.node }) else {
            return .reply(stanza.errorReply(type: "cancel", condition: "item-not-found", text: "no such command"))
        }
        if request.action == "cancel" { return .reply(canceled(stanza, request: request)) }
        if let form = command.form, request.form == nil { return .reply(askForm(stanza, node: command.node, form: form)) }
        return .run(command, request.form)
    }
}
