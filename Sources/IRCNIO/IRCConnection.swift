import CCrypto
import Foundation
import IRCCore
import Logging
import Metrics
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization

/// Who a connection registers as, where, and how politely it sends.
public struct IRCConnectionConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var nick: String
    public var username: String
    public var realname: String
    public var password: String?
    public var fallbackEncoding: IRCTextEncoding
    public var maximumLineBytes: Int
    /// Flood control: lines at once, then lines per second.
    public var floodBurst: Int
    public var floodLinesPerSecond: Double
    /// Silence after which we PING; a second silence of this length closes the connection.
    public var pingInterval: TimeAmount
    /// TLS (`ircs://`), or nil for a plain connection.
    public var tls: IRCTLSConfiguration?
    /// SASL before registration completes; a failure closes the connection unjoined.
    public var sasl: IRCSASL?
    /// Set the network's bot user mode (ISUPPORT BOT) after registering.
    public var markAsBot: Bool
    /// Set the server's deaf user mode after registering, where it has one (puppets).
    public var deaf = false
    /// The local address to connect from, or nil for the system's choice.
    public var bindAddress: String?
    /// WEBIRC as the first line, where the network trusts this gateway.
    public var webirc: IRCWebIRC?
    /// Where this connection's user name is listed for the ident server while it is open.
    public var identTable: IdentTable?
    /// Lines that may wait for the flood control (at 2 a second, 1,000 is over eight minutes
    /// behind); beyond it a new PRIVMSG or NOTICE is dropped, counted and logged (other
    /// commands still queue: they change state). The master's rate
    /// limits keep a puppet far below it; the bound is for what gets past them (pastes).
    public var maximumQueuedLines = 1_000

    public init(
        host: String, port: Int, nick: String, username: String, realname: String, password: String? = nil,
        fallbackEncoding: IRCTextEncoding = .cp1252, maximumLineBytes: Int = IRCLineDecoder.defaultMaximumLineBytes,
        floodBurst: Int = 5, floodLinesPerSecond: Double = 2, pingInterval: TimeAmount = .seconds(60),
        tls: IRCTLSConfiguration? = nil, sasl: IRCSASL? = nil, markAsBot: Bool = false, bindAddress: String? = nil,
        webirc: IRCWebIRC? = nil, identTable: IdentTable? = nil
    ) {
        self.bindAddress = bindAddress
        self.webirc = webirc
        self.identTable = identTable
        self.tls = tls
        self.sasl = sasl
        self.markAsBot = markAsBot
        self.host = host
        self.port = port
        self.nick = nick
        self.username = username
        self.realname = realname
        self.password = password
        self.fallbackEncoding = fallbackEncoding
        self.maximumLineBytes = maximumLineBytes
        self.floodBurst = floodBurst
        self.floodLinesPerSecond = floodLinesPerSecond
        self.pingInterval = pingInterval
    }
}

/// How an `ircs://` connection is secured (swift-nio-ssl).
public struct IRCTLSConfiguration: Sendable, Hashable {
    /// Verify the server's certificate (chain and name). Off only when the mapping says so.
    public var verify: Bool
    /// PEM file of the certificate authorities to trust instead of the system's.
    public var caFile: String?
    /// SHA-256 of the server's certificate (DER, 32 bytes): when set, a certificate with this
    /// fingerprint is accepted whoever signed it, and no other is.
    public var pinnedSHA256: [UInt8]?
    /// The client certificate and key (PEM), for SASL EXTERNAL or networks that want one.
    public var certificateFile: String?
    public var keyFile: String?

    public init(verify: Bool = true, caFile: String? = nil, pinnedSHA256: [UInt8]? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.verify = verify
        self.caFile = caFile
        self.pinnedSHA256 = pinnedSHA256
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }

    /// One context per settings, shared by every connection that uses them: loading the trust
    /// roots once per network, not once per puppet.
    private static let contexts = Mutex<[IRCTLSConfiguration: NIOSSLContext]>([:])

    /// The NIOSSL context for these settings.
    func context() throws(IRCTLSSetupError) -> NIOSSLContext {
        if let cached = Self.contexts.withLock({ $0[self] }) { return cached }
        let context: NIOSSLContext
        do {
            context = try makeContext()
        } catch {
            throw IRCTLSSetupError(reason: "\(error)")
        }
        Self.contexts.withLock { $0[self] = context }
        return context
    }

    private func makeContext() throws -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        // A pin decides alone (the callback below replaces chain checks, and the name is not
        // checked either: pinned self-signed certificates rarely name the host).
        configuration.certificateVerification = pinnedSHA256 != nil ? .noHostnameVerification : verify ? .fullVerification : .none
        if let caFile { configuration.trustRoots = .file(caFile) }
        if let certificateFile, let keyFile {
            configuration.certificateChain = try NIOSSLCertificate.fromPEMFile(certificateFile).map { .certificate($0) }
            configuration.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem))
        }
        return try NIOSSLContext(configuration: configuration)
    }

    /// A client handler that sends SNI for host names (never for IP literals) and, with a pin,
    /// accepts exactly the pinned certificate.
    func makeHandler(context: NIOSSLContext, host: String) throws -> NIOSSLClientHandler {
        let serverName = Self.isIPAddress(host) ? nil : host
        guard let pinned = pinnedSHA256 else { return try NIOSSLClientHandler(context: context, serverHostname: serverName) }
        return try NIOSSLClientHandler(context: context, serverHostname: serverName) { certificates, promise in
            guard let leaf = certificates.first, let der = try? leaf.toDERBytes() else {
                promise.succeed(.failed)
                return
            }
            promise.succeed(Self.sha256(der) == pinned ? .certificateVerified : .failed)
        }
    }

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        _ = bytes.withUnsafeBufferPointer { shadowbridge_sha256($0.baseAddress, $0.count, &digest) }
        return digest
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    /// Whether an error before the handshake completed is about TLS itself (a certificate, the
    /// pin, the name, the protocol version) rather than the connection dropping under it (an
    /// end of file or a reset during the handshake is a server restarting, not a refusal).
    static func isTLSFailure(_ error: any Error) -> Bool {
        if error is NIOSSLExtraError { return true }
        guard let error = error as? NIOSSLError, case .handshakeFailed(let cause) = error else { return false }
        let text = "\(cause)".uppercased()
        return ["CERTIFICATE", "VERIFY", "WRONG_VERSION", "UNSUPPORTED_PROTOCOL", "NO_SHARED_CIPHER", "HANDSHAKE_FAILURE"].contains { text.contains($0) }
    }

    /// Forgets the shared contexts, so a reload reads rotated CA, certificate and key files.
    public static func forgetContexts() { contexts.withLock { $0.removeAll() } }
}

/// The TLS settings cannot be used (an unreadable CA file, a key that does not parse): no
/// connection can succeed until the mapping changes.
public struct IRCTLSSetupError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "TLS settings unusable: \(reason)" }
}

/// What an IRC connection reports, in the order the server sent it.
public enum IRCConnectionEvent: Sendable {
    /// 001 arrived: the connection may join channels. `nick` is the nick the server gave.
    case registered(nick: String)
    /// An adopted connection (`IRCConnection.adopt`) is ready: registered as `nick` by the
    /// process before, in whatever channels it was in then.
    case resumed(nick: String)
    /// RPL_ISUPPORT told more about the server (casemapping, NICKLEN, PREFIX...).
    case isupport(ISupport)
    /// The enabled IRCv3 capabilities changed; `values` has what the server offered with each
    /// (`draft/multiline` -> `max-bytes=4096`).
    case capabilities(Set<String>, values: [String: String])
    /// SASL logged the connection in.
    case authenticated(account: String)
    case message(IRCMessage)
    /// The connection is gone, and why; no more events follow.
    case closed(IRCDisconnect)
}

/// What the connection's owner hands its handler.
enum IRCOutbound: Sendable {
    case message(IRCMessage)
    /// QUIT once every queued line is out, or at once (dropping the queue).
    case quit(String, immediately: Bool)
    /// Stop reading, and end the events after the last line read (a live restart).
    case pause(EventLoopPromise<Void>)
    /// Stop writing too, and say what another process needs to go on.
    case handOver(EventLoopPromise<IRCConnectionHandover>)
}

/// One client connection to an IRC server: registers with CAP LS 302 (RFC 2812 §3.1, IRCv3),
/// answers PING, retries a nick in use, paces what it sends, notices a dead server, and hands
/// everything else to its owner.
public final class IRCConnection: Sendable {
    public let events: AsyncStream<IRCConnectionEvent>
    private let channel: any Channel
    private let depth: QueueDepth

    private init(channel: any Channel, events: AsyncStream<IRCConnectionEvent>, depth: QueueDepth) {
        self.channel = channel
        self.events = events
        self.depth = depth
    }

    /// Lines waiting for the flood control, now.
    public var queuedLines: Int { depth.lines.load(ordering: .relaxed) }

    /// Connects and starts registration; registration completes with `.registered`.
    public static func connect(
        _ configuration: IRCConnectionConfiguration, group: any EventLoopGroup, logger: Logger
    ) async throws -> IRCConnection {
        let (events, continuation) = AsyncStream<IRCConnectionEvent>.makeStream()
        let depth = QueueDepth()
        let channel: any Channel
        do {
            let tls = try configuration.tls.map { settings in (settings, try settings.context()) }
            var bootstrap = ClientBootstrap(group: group)
            if let bindAddress = configuration.bindAddress { bootstrap = bootstrap.bind(to: try SocketAddress(ipAddress: bindAddress, port: 0)) }
            channel = try await bootstrap
                .connectTimeout(.seconds(10))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let (settings, context) = tls {
                            try channel.pipeline.syncOperations.addHandler(settings.makeHandler(context: context, host: configuration.host))
                        }
                        try addLineHandlers(channel, configuration: configuration, continuation: continuation, depth: depth, logger: logger)
                    }
                }
                .connect(host: configuration.host, port: configuration.port).get()
        } catch {
            continuation.finish()
            throw error
        }
        return IRCConnection(channel: channel, events: events, depth: depth)
    }

    /// Goes on with a connection another process registered and handed over (a live restart):
    /// nothing is sent to the server. The first events are `.capabilities`, `.isupport` and
    /// `.resumed`; the handed-over lines still waiting for the flood control go out as before.
    public static func adopt(
        _ handover: IRCConnectionHandover, configuration: IRCConnectionConfiguration, group: any EventLoopGroup, logger: Logger
    ) async throws -> IRCConnection {
        guard handover.isSocket(handover.descriptor) else {
            throw IRCHandoverError(reason: "descriptor \(handover.descriptor) is not the handed-over connection any more")
        }
        let (events, continuation) = AsyncStream<IRCConnectionEvent>.makeStream()
        let depth = QueueDepth()
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try addLineHandlers(channel, configuration: configuration, continuation: continuation, depth: depth, logger: logger, resuming: handover)
                    }
                }
                .withConnectedSocket(handover.descriptor).get()
        } catch {
            continuation.finish()
            throw error
        }
        return IRCConnection(channel: channel, events: events, depth: depth)
    }

    /// The line decoder (named, so a handover can take it out) and the client handler.
    private static func addLineHandlers(
        _ channel: any Channel, configuration: IRCConnectionConfiguration, continuation: AsyncStream<IRCConnectionEvent>.Continuation,
        depth: QueueDepth, logger: Logger, resuming: IRCConnectionHandover? = nil
    ) throws {
        try channel.pipeline.syncOperations.addHandler(
            ByteToMessageHandler(IRCLineDecoder(maximumLineBytes: configuration.maximumLineBytes)), name: IRCClientHandler.decoderName)
        try channel.pipeline.syncOperations.addHandler(
            IRCClientHandler(configuration: configuration, continuation: continuation, depth: depth, logger: logger, resuming: resuming))
    }

    /// A live restart's first step: the connection reads no more, and its events end after
    /// the last line it read, with no `.closed`. It still writes what it is given, until
    /// `handOver`.
    public func pauseForHandover() async throws {
        let promise = channel.eventLoop.makePromise(of: Void.self)
        try await deliver(IRCOutbound.pause(promise), answer: promise)
    }

    /// The second step, once the owner has handled the last events: the connection stops
    /// writing and says what another process needs to go on. `descriptors` is
    /// `IRCConnectionHandover.openSockets()`, taken once for every connection handed over.
    /// The handover holds a copy of the socket that stays open across `exec`; this object must
    /// not be used again.
    public func handOver(descriptors: [String: Int32]) async throws -> IRCConnectionHandover {
        guard let local = channel.localAddress, let remote = channel.remoteAddress else { throw IRCHandoverError(reason: "the connection is closed") }
        let address = IRCConnectionHandover.key(local: local, remote: remote)
        guard let descriptor = descriptors[address] else { throw IRCHandoverError(reason: "the connection's socket is not among this process's open sockets") }
        let promise = channel.eventLoop.makePromise(of: IRCConnectionHandover.self)
        var handover = try await deliver(IRCOutbound.handOver(promise), answer: promise)
        // A copy, open across exec (F_DUPFD leaves close-on-exec off): the number NIO closes
        // could be reused for another file before then, the copy's cannot.
        let copy = fcntl(descriptor, F_DUPFD, 3)
        guard copy >= 0 else { throw IRCHandoverError(reason: "cannot keep the socket open across exec (errno \(errno))") }
        handover.descriptor = copy
        handover.address = address
        return handover
    }

    /// Writes `message` to the handler and waits for its answer; a write that fails before
    /// reaching it (the connection closed) fails the answer instead.
    private func deliver<Answer: Sendable>(_ message: IRCOutbound, answer: EventLoopPromise<Answer>) async throws -> Answer {
        let written = channel.eventLoop.makePromise(of: Void.self)
        written.futureResult.whenFailure { answer.fail($0) }
        channel.writeAndFlush(message, promise: written)
        return try await answer.futureResult.get()
    }

    /// Queues messages in order; the flood control decides when they go.
    public func send(_ messages: [IRCMessage]) {
        for message in messages { channel.write(IRCOutbound.message(message), promise: nil) }
        channel.flush()
    }

    public func send(_ message: IRCMessage) { send([message]) }

    /// Sends QUIT and closes: after every queued line, or at once when `immediately`.
    public func quit(_ reason: String, immediately: Bool = false) {
        channel.writeAndFlush(IRCOutbound.quit(reason, immediately: immediately), promise: nil)
    }

    public func close() { channel.close(promise: nil) }
}

/// A registered connection as one process hands it to the next (a live restart): the socket
/// itself, kept open across `exec`, and what the connection knew and had not yet done.
public struct IRCConnectionHandover: Codable, Sendable {
    public var descriptor: Int32
    public var nick: String
    /// RPL_ISUPPORT as the server gave it.
    public var isupport: [String: String]
    public var enabled: [String]
    public var offered: [String: String]
    /// The start of a line the server had not finished sending.
    public var unfinished: [UInt8]
    /// Lines waiting for the flood control, as they would have been written.
    public var queued: [[UInt8]]
    /// The flood control's bucket (`IRCFloodControl.level`).
    public var floodTokens: Double
    public var floodAt: Double?
    /// The socket's two ends: the next process checks the descriptor is still this socket.
    public var address = ""

    /// Whether `descriptor` is still the connected socket this handover names.
    public func isSocket(_ descriptor: Int32) -> Bool {
        Self.key(of: descriptor) == address
    }

    static func key(local: SocketAddress, remote: SocketAddress) -> String {
        "\(local.ipAddress ?? "?") \(local.port ?? 0) \(remote.ipAddress ?? "?") \(remote.port ?? 0)"
    }

    /// This process's connected TCP sockets, by their two ends, from `/proc/self/fd` (Linux).
    public static func openSockets() -> [String: Int32] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return [:] }
        var sockets: [String: Int32] = [:]
        for name in names {
            guard let descriptor = Int32(name), let key = key(of: descriptor) else { continue }
            sockets[key] = descriptor
        }
        return sockets
    }

    /// The two ends of a connected socket, as `key(local:remote:)` writes them.
    private static func key(of descriptor: Int32) -> String? {
        guard let local = address(of: descriptor, peer: false), let remote = address(of: descriptor, peer: true) else { return nil }
        return key(local: local, remote: remote)
    }

    private static func address(of descriptor: Int32, peer: Bool) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { peer ? getpeername(descriptor, $0, &length) : getsockname(descriptor, $0, &length) }
        }
        guard result == 0 else { return nil }
        switch Int32(storage.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &storage) { SocketAddress($0.load(as: sockaddr_in.self), host: "") }
        case AF_INET6:
            return withUnsafeBytes(of: &storage) { SocketAddress($0.load(as: sockaddr_in6.self), host: "") }
        default:
            return nil
        }
    }
}

/// A connection could not be handed over.
public struct IRCHandoverError: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public var description: String { "cannot hand the IRC connection over: \(reason)" }
}

/// How many lines one connection has waiting, readable from any thread.
final class QueueDepth: Sendable {
    let lines = Atomic<Int>(0)
}

/// Flood-queue metrics over every IRC connection of the process (issue 7).
enum FloodMetrics {
    static let queued = Meter(label: "shadowbridge_irc_flood_queue_lines")
    static let wait = Metrics.Timer(label: "shadowbridge_irc_flood_queue_wait")
    static let dropped = Counter(label: "shadowbridge_irc_flood_queue_dropped_total")
}

/// Registration, pacing and liveness on the event loop; every message goes on to the owner.
final class IRCClientHandler: ChannelDuplexHandler {
    typealias InboundIn = IRCLine
    typealias OutboundIn = IRCOutbound
    typealias OutboundOut = ByteBuffer

    private let configuration: IRCConnectionConfiguration
    private let continuation: AsyncStream<IRCConnectionEvent>.Continuation
    private let logger: Logger
    private let depth: QueueDepth
    private var registration: IRCRegistration
    private var disconnect = IRCDisconnect(.lost, "connection closed")
    /// Set once the TLS handshake is done (or at once without TLS): an error before it is a
    /// TLS failure.
    private var secured: Bool

    private var flood: IRCFloodControl
    /// Outgoing lines by priority (index = IRCLinePriority.rawValue), with when each was queued.
    private var queues = IRCClientHandler.emptyQueues
    private static let emptyQueues = [[(message: IRCMessage, queued: NIODeadline)]](repeating: [], count: IRCLinePriority.allCases.count)
    private var drainScheduled = false
    private var quitAfterDrain: String?
    /// The queue hit `maximumQueuedLines`: said once, until it is half empty again.
    private var overflowing = false

    private var readSinceCheck = false
    private var pingOutstanding = false
    private var livenessTimer: Scheduled<Void>?
    /// What this connection listed in the ident table, to take out again when it closes.
    private var identEntry: IdentTable.Key?
    static let decoderName = "irc-lines"
    /// A connection handed over by the process before, to go on with.
    private var resuming: IRCConnectionHandover?
    /// The start of a line not yet complete when the decoder was taken out.
    private var unfinished: ByteBuffer?
    /// Paused for a handover: nothing more is read.
    private var paused = false
    /// Handed over to another process: the socket stays open, nothing more is said.
    private var handedOver = false

    init(
        configuration: IRCConnectionConfiguration, continuation: AsyncStream<IRCConnectionEvent>.Continuation, depth: QueueDepth, logger: Logger,
        resuming: IRCConnectionHandover? = nil
    ) {
        self.resuming = resuming
        self.configuration = configuration
        self.continuation = continuation
        self.depth = depth
        self.logger = logger
        self.registration = IRCRegistration(
            nick: configuration.nick, username: configuration.username, realname: configuration.realname, password: configuration.password,
            sasl: configuration.sasl, markAsBot: configuration.markAsBot, deaf: configuration.deaf, webirc: configuration.webirc)
        self.secured = configuration.tls == nil
        self.flood = resuming.map { IRCFloodControl(burst: configuration.floodBurst, linesPerSecond: configuration.floodLinesPerSecond, level: ($0.floodTokens, $0.floodAt)) }
            ?? IRCFloodControl(burst: configuration.floodBurst, linesPerSecond: configuration.floodLinesPerSecond)
    }

    func channelActive(context: ChannelHandlerContext) {
        if let handover = resuming {
            resume(handover, context: context)
            context.fireChannelActive()
            return
        }
        let local = context.channel.localAddress
        if let table = configuration.identTable, let address = local?.ipAddress, let port = local?.port,
            let remote = context.channel.remoteAddress, let remoteAddress = remote.ipAddress, let remotePort = remote.port
        {
            let entry = IdentTable.Key(localAddress: address, localPort: port, remoteAddress: remoteAddress, remotePort: remotePort)
            table.add(entry, user: configuration.username)
            identEntry = entry
        }
        perform(registration.start(localAddress: local?.ipAddress), context: context)
        armLiveness(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        readSinceCheck = true
        pingOutstanding = false
        switch unwrapInboundIn(data) {
        case .dropped(let bytes):
            logger.warning("dropped an over-long IRC line", metadata: ["bytes": "\(bytes)"])
        case .unfinished(let bytes):
            unfinished = bytes
        case .line(let line):
            let message: IRCMessage
            do {
                message = try IRCMessage(parsing: line.readableBytesView, fallback: configuration.fallbackEncoding)
            } catch {
                logger.warning("unparsable IRC line", metadata: ["error": "\(error)"])
                return
            }
            handle(message, context: context)
        }
    }

    /// Takes up where the process before left (a live restart): the registration as it was,
    /// its waiting lines, and the start of a line the server was still sending.
    private func resume(_ handover: IRCConnectionHandover, context: ChannelHandlerContext) {
        resuming = nil
        let isupport = ISupport(tokens: handover.isupport)
        let enabled = Set(handover.enabled)
        registration.resume(nick: handover.nick, isupport: isupport, enabled: enabled, offered: handover.offered)
        continuation.yield(.capabilities(enabled, values: handover.offered))
        continuation.yield(.isupport(isupport))
        continuation.yield(.resumed(nick: handover.nick))
        for line in handover.queued {
            if let message = try? IRCMessage(parsing: line[...], fallback: configuration.fallbackEncoding) { enqueue(message) }
        }
        armLiveness(context: context)
        if !handover.unfinished.isEmpty {
            context.pipeline.syncOperations.fireChannelRead(NIOAny(context.channel.allocator.buffer(bytes: handover.unfinished)))
        }
        drain(context: context)
    }

    /// Stops reading and takes the line decoder out (its unfinished line comes here, after
    /// the complete ones); then the events end.
    private func pause(context: ChannelHandlerContext, promise: EventLoopPromise<Void>) {
        paused = true
        livenessTimer?.cancel()
        context.channel.setOption(ChannelOptions.autoRead, value: false).assumeIsolated()
            .flatMap { context.pipeline.syncOperations.removeHandler(name: Self.decoderName) }
            .whenComplete { result in
                self.continuation.finish()
                switch result {
                case .success: promise.succeed(())
                case .failure(let error): promise.fail(IRCHandoverError(reason: "\(error)"))
                }
            }
    }

    /// Stops writing once what was written has reached the socket, and says what the next
    /// process needs.
    private func handOver(context: ChannelHandlerContext, promise: EventLoopPromise<IRCConnectionHandover>) {
        guard paused, context.channel.isActive else {
            promise.fail(IRCHandoverError(reason: paused ? "the connection closed" : "not paused first"))
            return
        }
        handedOver = true
        let written = context.eventLoop.makePromise(of: Void.self)
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(capacity: 0)), promise: written)
        written.futureResult.assumeIsolated().whenComplete { result in
            if case .failure(let error) = result {
                promise.fail(IRCHandoverError(reason: "\(error)"))
                return
            }
            let level = self.flood.level
            let queued = self.queues.reversed().flatMap { $0.map { $0.message.encoded() } }
            promise.succeed(IRCConnectionHandover(
                descriptor: -1, nick: self.registration.nick,
                isupport: self.registration.isupport.tokens, enabled: self.registration.enabled.sorted(), offered: self.registration.offeredCapabilities,
                unfinished: self.unfinished.map { Array($0.readableBytesView) } ?? [], queued: queued,
                floodTokens: level.tokens, floodAt: level.at))
        }
    }

    private func handle(_ message: IRCMessage, context: ChannelHandlerContext) {
        switch message.command {
        case "PING":
            // Never queued behind a paste: a late PONG gets the connection dropped.
            writeNow([IRCMessage(command: "PONG", message.parameters)], context: context)
            return
        case "PONG":
            return
        case "ERROR":
            let text = message.parameters.last ?? "ERROR"
            if disconnect.kind != .banned && disconnect.kind != .authenticationFailed {
                disconnect = IRCDisconnect.classify(errorText: text)
            }
            logger.warning("IRC server closed the connection", metadata: ["reason": "\(text)"])
        case "465":
            // ERR_YOUREBANNEDCREEP: the ERROR that follows says the same or less.
            disconnect = IRCDisconnect(.banned, message.parameters.last ?? "banned from this server (465)")
        case "NICK" where registration.isRegistered && message.sourceNick.map(registration.isupport.caseMapping.fold) == registration.isupport.caseMapping.fold(registration.nick):
            if let newNick = message.parameters.first { registration.ownNickChanged(to: newNick) }
        default:
            break
        }
        perform(registration.receive(message), context: context)
        continuation.yield(.message(message))
    }

    private func perform(_ actions: [IRCRegistration.Action], context: ChannelHandlerContext) {
        for action in actions {
            switch action {
            case .send(let message):
                enqueue(message)
            case .registered(let nick):
                continuation.yield(.registered(nick: nick))
            case .capabilitiesChanged(let capabilities):
                continuation.yield(.capabilities(capabilities, values: registration.offeredCapabilities))
            case .isupportChanged(let isupport):
                continuation.yield(.isupport(isupport))
            case .authenticated(let account):
                continuation.yield(.authenticated(account: account))
            case .failed(let reason, let permanent):
                disconnect = IRCDisconnect(permanent ? .authenticationFailed : .unavailable, reason)
                logger.error("IRC registration failed; closing the connection", metadata: ["reason": "\(reason)"])
                dropQueues()
                writeNow([IRCMessage(command: "QUIT", "Authentication failed")], context: context)
                context.close(promise: nil)
                return
            }
        }
        drain(context: context)
    }

    // MARK: Outgoing

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .message(let message):
            enqueue(message)
        case .quit(let reason, let immediately):
            if immediately {
                dropQueues()
                writeNow([IRCMessage(command: "QUIT", reason)], context: context)
                context.close(promise: nil)
            } else {
                quitAfterDrain = reason
            }
        case .pause(let paused):
            pause(context: context, promise: paused)
        case .handOver(let handover):
            handOver(context: context, promise: handover)
        }
        promise?.succeed(())
    }

    func flush(context: ChannelHandlerContext) {
        drain(context: context)
    }

    private func enqueue(_ message: IRCMessage) {
        let priority = IRCLinePriority.of(message)
        let waiting = queues[IRCLinePriority.normal.rawValue].count
        // Only conversation lines: a dropped JOIN, PART, NICK or MODE would leave the
        // channel's state wrong for good.
        if priority == .normal, waiting >= configuration.maximumQueuedLines, ["PRIVMSG", "NOTICE"].contains(message.command) {
            FloodMetrics.dropped.increment()
            if !overflowing {
                overflowing = true
                logger.error("IRC flood queue full; new lines are dropped until it drains", metadata: ["limit": "\(configuration.maximumQueuedLines)"])
            }
            return
        }
        if overflowing, waiting < configuration.maximumQueuedLines / 2 { overflowing = false }
        queues[priority.rawValue].append((message, .now()))
        depth.lines.add(1, ordering: .relaxed)
        FloodMetrics.queued.increment()
    }

    private func dropQueues() {
        let count = queues.reduce(0) { $0 + $1.count }
        queues = Self.emptyQueues
        depth.lines.subtract(count, ordering: .relaxed)
        FloodMetrics.queued.decrement(by: Double(count))
    }

    private var now: Double { Double(NIODeadline.now().uptimeNanoseconds) / 1e9 }

    /// Writes what the token bucket allows, highest priority first, and schedules the rest.
    private func drain(context: ChannelHandlerContext) {
        guard !drainScheduled, !handedOver, context.channel.isActive else { return }
        var buffer = context.channel.allocator.buffer(capacity: 256)
        while let priority = queues.indices.reversed().first(where: { !queues[$0].isEmpty }) {
            guard flood.take(now: now) else {
                let delay = flood.delay(now: now)
                drainScheduled = true
                context.eventLoop.assumeIsolated().scheduleTask(in: .nanoseconds(Int64(delay * 1e9) + 1_000_000)) {
                    self.drainScheduled = false
                    self.drain(context: context)
                }
                break
            }
            let next = queues[priority].removeFirst()
            depth.lines.subtract(1, ordering: .relaxed)
            FloodMetrics.queued.decrement()
            FloodMetrics.wait.recordNanoseconds(Int64((NIODeadline.now() - next.queued).nanoseconds))
            buffer.writeBytes(next.message.line())
        }
        if buffer.readableBytes > 0 { context.writeAndFlush(wrapOutboundOut(buffer), promise: nil) }
        if let reason = quitAfterDrain, queues.allSatisfy(\.isEmpty) {
            quitAfterDrain = nil
            writeNow([IRCMessage(command: "QUIT", reason)], context: context)
            context.close(promise: nil)
        }
    }

    private func writeNow(_ messages: [IRCMessage], context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        for message in messages { buffer.writeBytes(message.line()) }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    // MARK: Liveness

    /// After a silent interval, PING; after a second one with no answer, close.
    private func armLiveness(context: ChannelHandlerContext) {
        livenessTimer = context.eventLoop.assumeIsolated().scheduleTask(in: configuration.pingInterval) {
            guard context.channel.isActive else { return }
            if self.readSinceCheck {
                self.readSinceCheck = false
            } else if self.pingOutstanding {
                self.disconnect = IRCDisconnect(.lost, "no answer from the server for \(self.configuration.pingInterval.nanoseconds / 1_000_000_000 * 2) s")
                self.logger.warning("IRC server silent; closing the connection")
                context.close(promise: nil)
                return
            } else {
                self.pingOutstanding = true
                self.writeNow([IRCMessage(command: "PING", "shadowbridge")], context: context)
            }
            self.armLiveness(context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if let identEntry { configuration.identTable?.remove(identEntry) }
        if handedOver {
            context.fireChannelInactive()
            return
        }
        livenessTimer?.cancel()
        dropQueues()
        continuation.yield(.closed(disconnect))
        continuation.finish()
        context.fireChannelInactive()
    }

    /// A server closing TCP without TLS close_notify, as IRC servers do after ERROR: the ERROR
    /// said why, this adds nothing.
    private static func isUncleanShutdown(_ error: any Error) -> Bool {
        if let error = error as? NIOSSLError, case .uncleanShutdown = error { return true }
        return false
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent { secured = true }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if !secured && disconnect.kind == .lost && IRCTLSConfiguration.isTLSFailure(error) {
            disconnect = IRCDisconnect(.tlsFailed, "TLS handshake failed: \(error)")
        } else if disconnect.kind == .lost, !Self.isUncleanShutdown(error) {
            disconnect = IRCDisconnect(.lost, "\(error)")
        }
        context.close(promise: nil)
    }
}
