import CLibXML2

/// What the stream parser reports, in document order.
public enum XMLStreamEvent: Sendable, Hashable {
    /// The stream's root element opened; it carries the root's name, namespace and attributes.
    case streamOpened(XMLElement)
    /// A complete first-level child of the root: a stanza, `<handshake/>`, `<stream:error/>`...
    case element(XMLElement)
    /// The root element closed (`</stream:stream>`).
    case streamClosed
}

/// Why a stream could not be read. The code maps to an RFC 6120 §4.9.3 stream error.
public struct XMLStreamError: Error, Sendable, Hashable, CustomStringConvertible {
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }
        /// Not well-formed XML (`not-well-formed`).
        public static let malformed = Code(raw: "not-well-formed")
        /// Well-formed, but outside RFC 6120's restricted XML: DTDs, comments, PIs, entity references (`restricted-xml`).
        public static let restricted = Code(raw: "restricted-xml")
        /// A stanza larger than the configured cap (`policy-violation`).
        public static let tooLarge = Code(raw: "policy-violation")
        /// Elements nested deeper than the configured cap (`policy-violation`).
        public static let tooDeep = Code(raw: "policy-violation/depth")
        /// Bytes after the stream was closed or the parser failed.
        public static let afterEnd = Code(raw: "after-end")

        /// The RFC 6120 stream error condition for this code.
        public var streamErrorCondition: String {
            switch self {
            case .restricted: "restricted-xml"
            case .tooLarge, .tooDeep: "policy-violation"
            default: "not-well-formed"
            }
        }
    }

    public var code: Code
    /// A diagnostic for logs: never the stanza's content.
    public var detail: String

    public var description: String { "\(code): \(detail)" }
}

/// An incremental reader for one XMPP stream (RFC 6120 §4.2, §11), on libxml2's push parser.
///
/// Bytes may arrive in any chunking; events come out in the same order whatever the chunking.
/// Restricted XML (RFC 6120 §11.1) is enforced: a DTD, comment, processing instruction or
/// entity reference fails the stream. Stanza size and depth are capped so that a peer cannot
/// make us buffer without bound.
public final class XMLStreamParser {
    public struct Limits: Sendable {
        /// Bytes one first-level element may take on the wire (plus whatever precedes it).
        public var maximumStanzaBytes: Int
        /// Element depth below the root.
        public var maximumDepth: Int

        public init(maximumStanzaBytes: Int = 1 << 20, maximumDepth: Int = 64) {
            self.maximumStanzaBytes = maximumStanzaBytes
            self.maximumDepth = maximumDepth
        }
    }

    private let state: ParserState
    private var context: xmlParserCtxtPtr?
    private let limits: Limits
    /// Bytes fed since the last complete first-level element.
    private var pendingBytes = 0
    private var failed: XMLStreamError?

    public init(limits: Limits = Limits()) {
        self.limits = limits
        self.state = ParserState(maximumDepth: limits.maximumDepth)
        xmlInitParser()
    }

    deinit {
        if let context { xmlFreeParserCtxt(context) }
    }

    /// Feeds bytes; returns the events they completed, or throws the stream's error.
    /// After an error every further call throws the same error.
    public func feed(_ bytes: some Collection<UInt8>) throws(XMLStreamError) -> [XMLStreamEvent] {
        if let failed { throw failed }
        if context == nil { createContext() }
        pendingBytes += bytes.count
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            parse(UnsafeRawBufferPointer(buffer))
        } ?? Array(bytes).withUnsafeBytes { parse($0) }
        if let error = result {
            failed = error
            throw error
        }
        if pendingBytes > limits.maximumStanzaBytes {
            let error = XMLStreamError(code: .tooLarge, detail: "more than \(limits.maximumStanzaBytes) bytes in one element")
            failed = error
            throw error
        }
        return takeEvents()
    }

    /// Starts a new stream (after a reconnect or a stream restart).
    public func reset() {
        if let context { xmlFreeParserCtxt(context) }
        context = nil
        pendingBytes = 0
        failed = nil
        state.reset()
    }

    private func takeEvents() -> [XMLStreamEvent] {
        let events = state.events
        state.events.removeAll(keepingCapacity: true)
        return events
    }

    private func createContext() {
        var handler = xmlSAXHandler()
        handler.initialized = XML_SAX2_MAGIC
        handler.startElementNs = { ctx, localname, prefix, uri, nbNamespaces, namespaces, nbAttributes, _, attributes in
            ParserState.from(ctx).startElement(
                localname: localname, uri: uri, nbAttributes: Int(nbAttributes), attributes: attributes)
        }
        handler.endElementNs = { ctx, _, _, _ in ParserState.from(ctx).endElement() }
        handler.characters = { ctx, chars, length in ParserState.from(ctx).characters(chars, Int(length)) }
        handler.cdataBlock = { ctx, chars, length in ParserState.from(ctx).characters(chars, Int(length)) }
        handler.comment = { ctx, _ in ParserState.from(ctx).restricted("comment") }
        handler.processingInstruction = { ctx, _, _ in ParserState.from(ctx).restricted("processing instruction") }
        handler.internalSubset = { ctx, _, _, _ in ParserState.from(ctx).restricted("DTD") }
        handler.externalSubset = { ctx, _, _, _ in ParserState.from(ctx).restricted("DTD") }
        handler.entityDecl = { ctx, _, _, _, _, _ in ParserState.from(ctx).restricted("entity declaration") }
        handler.reference = { ctx, _ in ParserState.from(ctx).restricted("entity reference") }
        handler.getEntity = { ctx, _ in
            ParserState.from(ctx).restricted("entity reference")
            return nil
        }
        handler.serror = { ctx, error in
            guard let ctx, let error, error.pointee.level.rawValue >= XML_ERR_ERROR.rawValue else { return }
            ParserState.from(ctx).malformed(code: Int(error.pointee.code))
        }
        let userData = Unmanaged.passUnretained(state).toOpaque()
        context = xmlCreatePushParserCtxt(&handler, userData, nil, 0, nil)
        xmlCtxtUseOptions(context, Int32(XML_PARSE_NONET.rawValue))
        state.context = context
    }

    private func parse(_ buffer: UnsafeRawBufferPointer) -> XMLStreamError? {
        guard let context else { return XMLStreamError(code: .afterEnd, detail: "no parser") }
        var offset = 0
        // xmlParseChunk takes an Int32 length: feed very large buffers in slices.
        repeat {
            let length = min(buffer.count - offset, 1 << 16)
            let pointer = buffer.baseAddress.map { UnsafeRawPointer($0 + offset).assumingMemoryBound(to: CChar.self) }
            let status = xmlParseChunk(context, pointer, Int32(length), 0)
            if let error = state.error { return error }
            if status != 0 {
                return XMLStreamError(code: .malformed, detail: "libxml2 error \(status)")
            }
            if state.completedElement {
                state.completedElement = false
                pendingBytes = buffer.count - offset - length
            }
            offset += length
        } while offset < buffer.count
        return nil
    }
}

/// The SAX callbacks' state; a class so libxml2 can hold a pointer to it.
final class ParserState {
    var events: [XMLStreamEvent] = []
    var error: XMLStreamError?
    var completedElement = false
    var context: xmlParserCtxtPtr?
    /// Elements being built; index 0 is the stream root (kept without children).
    private var stack: [XMLElement] = []
    /// Character data for the innermost element, appended to it as one text node when a child
    /// starts or the element ends: libxml2 calls `characters` once per entity reference, and
    /// joining each piece onto the element's last text node would copy quadratically.
    private var pendingText = ""
    private let maximumDepth: Int

    init(maximumDepth: Int) { self.maximumDepth = maximumDepth }

    static func from(_ ctx: UnsafeMutableRawPointer?) -> ParserState {
        Unmanaged<ParserState>.fromOpaque(ctx!).takeUnretainedValue()
    }

    func reset() {
        events.removeAll()
        error = nil
        completedElement = false
        stack.removeAll()
        pendingText = ""
        context = nil
    }

    private func flushText() {
        guard !pendingText.isEmpty else { return }
        if stack.count > 1 { stack[stack.count - 1].children.append(.text(pendingText)) }
        pendingText = ""
    }

    private func fail(_ error: XMLStreamError) {
        guard self.error == nil else { return }
        self.error = error
        if let context { xmlStopParser(context) }
    }

    func restricted(_ what: String) {
        fail(XMLStreamError(code: .restricted, detail: "\(what) not allowed in an XMPP stream"))
    }

    func malformed(code: Int) {
        fail(XMLStreamError(code: .malformed, detail: "libxml2 error \(code)"))
    }

    func startElement(
        localname: UnsafePointer<xmlChar>?, uri: UnsafePointer<xmlChar>?, nbAttributes: Int,
        attributes: UnsafeMutablePointer<UnsafePointer<xmlChar>?>?
    ) {
        guard error == nil else { return }
        if stack.count > maximumDepth {
            fail(XMLStreamError(code: .tooDeep, detail: "elements nested deeper than \(maximumDepth)"))
            return
        }
        var list: [XMLAttribute] = []
        list.reserveCapacity(nbAttributes)
        if let attributes {
            for i in 0..<nbAttributes {
                let base = i * 5
                let name = Self.string(attributes[base])
                let namespace = Self.string(attributes[base + 2])
                var value = ""
                if let start = attributes[base + 3], let end = attributes[base + 4] {
                    value = String(decoding: UnsafeBufferPointer(start: start, count: end - start), as: UTF8.self)
                }
                list.append(XMLAttribute(name: name, namespace: namespace, value: Self.unescapeAmpersand(value)))
            }
        }
        let element = XMLElement(
            name: Self.string(localname), namespace: Self.unescapeAmpersand(Self.string(uri)), attributeList: list,
            children: [])
        if stack.isEmpty {
            events.append(.streamOpened(element))
        }
        flushText()
        stack.append(element)
    }

    func endElement() {
        guard error == nil else { return }
        flushText()
        guard let element = stack.popLast() else { return }
        switch stack.count {
        case 0:
            events.append(.streamClosed)
        case 1:
            events.append(.element(element))
            completedElement = true
        default:
            stack[stack.count - 1].children.append(.element(element))
        }
    }

    func characters(_ chars: UnsafePointer<xmlChar>?, _ length: Int) {
        // Text between stanzas is whitespace keepalive: not part of any element.
        guard error == nil, stack.count > 1, let chars else { return }
        pendingText += String(decoding: UnsafeBufferPointer(start: chars, count: length), as: UTF8.self)
    }

    private static func string(_ pointer: UnsafePointer<xmlChar>?) -> String {
        guard let pointer else { return "" }
        return String(cString: pointer)
    }

    /// Without entity substitution, libxml2 hands over every `&` in attribute values and
    /// namespace URIs as the five characters `&#38;` (and never a bare `&`), so this is exact.
    private static func unescapeAmpersand(_ s: String) -> String {
        guard s.utf8.contains(0x26) else { return s }
        return s.replacing("&#38;", with: "&")
    }
}
