/// XEP-0004 data forms: the fields the room info, the room config and the ad-hoc commands use.
public struct DataForm: Sendable, Hashable {
    public struct Option: Sendable, Hashable {
        public var label: String
        public var value: String

        public init(label: String, value: String) {
            self.label = label
            self.value = value
        }
    }

    public struct Field: Sendable, Hashable {
        public var variable: String
        public var type: String?
        public var label: String?
        public var values: [String]
        /// For list-single and list-multi.
        public var options: [Option] = []
        public var required: Bool


        public init(
            _ variable: String, type: String? = nil, label: String? = nil, values: [String] = [], options: [Option] = [], required: Bool = false
        ) {
            self.variable = variable
            self.type = type
            self.label = label
            self.values = values
            self.options = options
            self.required = required
        }

        public var value: String? { values.first }
    }

    /// form, submit, cancel or result.
    public var type: String
    public var title: String?
    public var instructions: String?
    public var fields: [Field]

    public init(type: String, title: String? = nil, instructions: String? = nil, formType: String? = nil, fields: [Field] = []) {
        self.type = type
        self.title = title
        self.instructions = instructions
        self.fields = (formType.map { [Field("FORM_TYPE", type: "hidden", values: [$0])] } ?? []) + fields
    }

    public subscript(variable: String) -> Field? { fields.first { $0.variable == variable } }

    /// Reads `<x xmlns='jabber:x:data'/>`.
    public init?(_ element: XMLElement) {
        guard element.name == "x", element.namespace == NS.dataForms else { return nil }
        type = element["type"] ?? "form"
        title = element.child("title", namespace: NS.dataForms)?.text
        instructions = element.child("instructions", namespace: NS.dataForms)?.text
        fields = element.children("field", namespace: NS.dataForms).compactMap { field in
            guard let variable = field["var"] else { return nil }
            return Field(
                variable, type: field["type"], label: field["label"], values: field.children("value", namespace: NS.dataForms).map(\.text),
                options: field.children("option", namespace: NS.dataForms).map {
                    Option(label: $0["label"] ?? "", value: $0.child("value", namespace: NS.dataForms)?.text ?? "")
                },
                required: field.child("required", namespace: NS.dataForms) != nil)
        }
    }

    public var element: XMLElement {
        var x = XMLElement("x", namespace: NS.dataForms, attributes: ["type": type])
        if let title { x.append(.text("title", namespace: NS.dataForms, title)) }
        if let instructions { x.append(.text("instructions", namespace: NS.dataForms, instructions)) }
        for field in fields {
            var attributes = ["var": field.variable]
            if let type = field.type { attributes["type"] = type }
            if let label = field.label { attributes["label"] = label }
            var f = XMLElement("field", namespace: NS.dataForms, attributes: attributes)
            if field.required { f.append(XMLElement("required", namespace: NS.dataForms)) }
            for value in field.values { f.append(.text("value", namespace: NS.dataForms, value)) }
            for choice in field.options {
                var option = XMLElement("option", namespace: NS.dataForms, attributes: ["label": choice.label])
                option.append(.text("value", namespace: NS.dataForms, choice.value))
                f.append(option)
            }
            x.append(f)
        }
        return x
    }
}
