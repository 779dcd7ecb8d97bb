import CLibXML2

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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

    /// The SAX callbacks' state, at a fixed address that libxml2 hands back to each callback.
    /// A struct behind a pointer rather than a class: the callbacks change it several times per
    /// element, and a class's stored properties would each pay a dynamic exclusivity check.
    private let state: UnsafeMutablePointer<ParserState>
    private var context: xmlParserCtxtPtr?
    private let limits: Limits
    /// Bytes fed since the last complete first-level element.
    private var pendingBytes = 0
    private var failed: XMLStreamError?

    public init(limits: Limits = Limits()) {
        self.limits = limits
        self.state = .allocate(capacity: 1)
        state.initialize(to: ParserState(maximumDepth: limits.maximumDepth))
        xmlInitParser()
    }

    deinit {
        if let context { xmlFreeParserCtxt(context) }
        state.deinitialize(count: 1)
        state.deallocate()
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
        state.pointee.reset()
    }

    private func takeEvents() -> [XMLStreamEvent] {
        let events = state.pointee.events
        state.pointee.events.removeAll(keepingCapacity: true)
        return events
    }

    private func createContext() {
        var handler = xmlSAXHandler()
        handler.initialized = XML_SAX2_MAGIC
        handler.startElementNs = { ctx, localname, prefix, uri, nbNamespaces, namespaces, nbAttributes, _, attributes in
            ParserState.from(ctx).pointee.startElement(
                localname: localname, uri: uri, nbAttributes: Int(nbAttributes), attributes: attributes)
        }
        handler.endElementNs = { ctx, _, _, _ in ParserState.from(ctx).pointee.endElement() }
        handler.characters = { ctx, chars, length in ParserState.from(ctx).pointee.characters(chars, Int(length)) }
        handler.cdataBlock = { ctx, chars, length in ParserState.from(ctx).pointee.characters(chars, Int(length)) }
        handler.comment = { ctx, _ in ParserState.from(ctx).pointee.restricted("comment") }
        handler.processingInstruction = { ctx, _, _ in ParserState.from(ctx).pointee.restricted("processing instruction") }
        handler.internalSubset = { ctx, _, _, _ in ParserState.from(ctx).pointee.restricted("DTD") }
        handler.externalSubset = { ctx, _, _, _ in ParserState.from(ctx).pointee.restricted("DTD") }
        handler.entityDecl = { ctx, _, _, _, _, _ in ParserState.from(ctx).pointee.restricted("entity declaration") }
        handler.reference = { ctx, _ in ParserState.from(ctx).pointee.restricted("entity reference") }
        handler.getEntity = { ctx, _ in
            ParserState.from(ctx).pointee.restricted("entity reference")
            return nil
        }
        handler.serror = { ctx, error in
            guard let ctx, let error, error.pointee.level.rawValue >= XML_ERR_ERROR.rawValue else { return }
            ParserState.from(ctx).pointee.malformed(code: Int(error.pointee.code))
        }
        let userData = UnsafeMutableRawPointer(state)
        context = xmlCreatePushParserCtxt(&handler, userData, nil, 0, nil)
        xmlCtxtUseOptions(context, Int32(XML_PARSE_NONET.rawValue))
        state.pointee.context = context
    }

    private func parse(_ buffer: UnsafeRawBufferPointer) -> XMLStreamError? {
        guard let context else { return XMLStreamError(code: .afterEnd, detail: "no parser") }
        var offset = 0
        // xmlParseChunk takes an Int32 length: feed very large buffers in slices.
        repeat {
            let length = min(buffer.count - offset, 1 << 16)
            let pointer = buffer.baseAddress.map { UnsafeRawPointer($0 + offset).assumingMemoryBound(to: CChar.self) }
            let status = xmlParseChunk(context, pointer, Int32(length), 0)
            if let error = state.pointee.error { return error }
            if status != 0 {
                return XMLStreamError(code: .malformed, detail: "libxml2 error \(status)")
            }
            if state.pointee.completedElement {
                state.pointee.completedElement = false
                pendingBytes = buffer.count - offset - length
            }
            offset += length
        } while offset < buffer.count
        return nil
    }
}

/// The SAX callbacks' state. `XMLStreamParser` owns it; libxml2 holds its address.
struct ParserState {
    var events: [XMLStreamEvent] = []
    var error: XMLStreamError?
    var completedElement = false
    var context: xmlParserCtxtPtr?
    /// Elements being built; index 0 is the stream root (kept without children).
    private var stack: [XMLElement] = []
    /// Character data for the innermost element, appended to it as one text node when a child
    /// starts or the element ends: libxml2 calls `characters` once per entity reference, and
    /// joining each piece onto the element's last text node would copy quadratically.
    /// The bytes are kept and made into one String at the end: libxml2's UTF-8 is already
    /// checked, and one String per text node costs far less than one per piece joined.
    private var pendingText: [UInt8] = []
    private let maximumDepth: Int
    /// Element names, attribute names and namespace URIs already made into Strings, by address,
    /// in a direct-mapped table (a new name takes its slot over). libxml2 interns these in its
    /// parser dictionary, which only grows while the context lives, so an address it owns
    /// always holds the same bytes. Only addresses the dictionary owns are kept, and all are
    /// dropped with the context.
    private var internedAddresses = [UnsafeRawPointer?](repeating: nil, count: Self.internedSlots)
    private var internedStrings = [String](repeating: "", count: Self.internedSlots)
    private static let internedSlots = 256

    init(maximumDepth: Int) { self.maximumDepth = maximumDepth }

    static func from(_ ctx: UnsafeMutableRawPointer?) -> UnsafeMutablePointer<ParserState> {
        ctx!.assumingMemoryBound(to: ParserState.self)
    }

    mutating func reset() {
        events.removeAll()
        error = nil
        completedElement = false
        stack.removeAll()
        pendingText = []
        for i in internedAddresses.indices { internedAddresses[i] = nil }
        context = nil
    }

    private mutating func flushText() {
        guard !pendingText.isEmpty else { return }
        if stack.count > 1 { appendToInnermost(.text(String(decoding: pendingText, as: UTF8.self))) }
        // Keep the buffer for the next text, unless one large text made it large.
        pendingText.removeAll(keepingCapacity: pendingText.capacity <= 1 << 16)
    }

    private mutating func fail(_ error: XMLStreamError) {
        guard self.error == nil else { return }
        self.error = error
        if let context { xmlStopParser(context) }
    }

    mutating func restricted(_ what: String) {
        fail(XMLStreamError(code: .restricted, detail: "\(what) not allowed in an XMPP stream"))
    }

    mutating func malformed(code: Int) {
        fail(XMLStreamError(code: .malformed, detail: "libxml2 error \(code)"))
    }

    mutating func startElement(
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
                var value = ""
                if let start = attributes[base + 3], let end = attributes[base + 4] {
                    let bytes = UnsafeBufferPointer(start: start, count: end - start)
                    value = String(decoding: bytes, as: UTF8.self)
                    if memchr(start, 0x26, end - start) != nil { value = Self.unescapeAmpersand(value) }
                }
                list.append(
                    XMLAttribute(name: internedString(attributes[base]), namespace: internedString(attributes[base + 2]), value: value))
            }
        }
        let element = XMLElement(
            name: internedString(localname), namespace: internedString(uri), attributeList: list, children: [])
        if stack.isEmpty {
            events.append(.streamOpened(element))
        }
        flushText()
        stack.append(element)
    }

    /// Stanza elements rarely have more than four children: room for four at the first one
    /// saves the reallocations of growing one at a time.
    private mutating func appendToInnermost(_ node: XMLNode) {
        let top = stack.count - 1
        if stack[top].children.capacity == 0 { stack[top].children.reserveCapacity(4) }
        stack[top].children.append(node)
    }

    mutating func endElement() {
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
            appendToInnermost(.element(element))
        }
    }

    mutating func characters(_ chars: UnsafePointer<xmlChar>?, _ length: Int) {
        // Text between stanzas is whitespace keepalive: not part of any element.
        guard error == nil, stack.count > 1, let chars else { return }
        pendingText.append(contentsOf: UnsafeBufferPointer(start: chars, count: length))
    }

    /// A name or namespace URI from libxml2 as a String, from `interned` when libxml2's
    /// dictionary owns the address. Namespace URIs carry `&` as `&#38;`, which is undone here.
    private mutating func internedString(_ pointer: UnsafePointer<xmlChar>?) -> String {
        guard let pointer else { return "" }
        let address = UnsafeRawPointer(pointer)
        // Dictionary strings sit close together: mix the address's bits before taking the slot.
        let slot = Int(truncatingIfNeeded: (UInt(bitPattern: address) &* 0x9E37_79B9_7F4A_7C15) >> 56) & (Self.internedSlots - 1)
        if internedAddresses[slot] == address { return internedStrings[slot] }
        let string = Self.unescapeAmpersand(String(cString: pointer))
        if let dictionary = context?.pointee.dict, xmlDictOwns(dictionary, pointer) == 1 {
            internedAddresses[slot] = address
            internedStrings[slot] = string
        }
        return string
    }

    /// Without entity substitution, libxml2 hands over every `&` in attribute values and
    /// namespace URIs as the five characters `&#38;` (and never a bare `&`), so this is exact.
    private static func unescapeAmpersand(_ s: String) -> String {
        guard s.utf8.contains(0x26) else { return s }
        return s.replacing("&#38;", with: "&")
    }
}
