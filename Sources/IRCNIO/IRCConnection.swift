import IRCCore
import Logging
import NIOCore
import NIOPosix

/// Who a connection registers as, and where.
public struct IRCConnectionConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var nick: String
    public var username: String
    public var realname: String
    public var password: String?
    public var fallbackEncoding: IRCTextEncoding
    public var maximumLineBytes: Int

    public init(
        host: String, port: Int, nick: String, username: String, realname: String, password: String? = nil,
        fallbackEncoding: IRCTextEncoding = .cp1252, maximumLineBytes: Int = IRCLineDecoder.defaultMaximumLineBytes
    ) {
        self.host = host
        self.port = port
        self.nick = nick
        self.username = username
        self.realname = realname
        self.password = password
        self.fallbackEncoding = fallbackEncoding
        self.maximumLineBytes = maximumLineBytes
    }
}

/// What an IRC connection reports, in the order the server sent it.
public enum IRCConnectionEvent: Sendable {
    /// 001 arrived: the connection may join channels. `nick` is the nick the server gave.
    case registered(nick: String)
    case message(IRCMessage)
    /// The connection is gone; no more events follow.
    case closed(reason: String)
}

/// One client connection to an IRC server: registers (RFC 2812 §3.1), answers PING, retries a
/// nick in use, and hands everything else to its owner.
public final class IRCConnection: Sendable {
    public let events: AsyncStream<IRCConnectionEvent>
    private let channel: any Channel

    private init(channel: any Channel, events: AsyncStream<IRCConnectionEvent>) {
        self.channel = channel
        self.events = events
    }

    /// Connects and starts registration; registration completes with `.registered`.
    public static func connect(
        _ configuration: IRCConnectionConfiguration, group: any EventLoopGroup, logger: Logger
    ) async throws -> IRCConnection {
        let (events, continuation) = AsyncStream<IRCConnectionEvent>.makeStream()
        let channel = try await ClientBootstrap(group: group)
            .connectTimeout(.seconds(10))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        ByteToMessageHandler(IRCLineDecoder(maximumLineBytes: configuration.maximumLineBytes)))
                    try channel.pipeline.syncOperations.addHandler(
                        IRCClientHandler(configuration: configuration, continuation: continuation, logger: logger))
                }
            }
            .connect(host: configuration.host, port: configuration.port).get()
        return IRCConnection(channel: channel, events: events)
    }

    /// Sends messages in order with one flush.
    public func send(_ messages: [IRCMessage]) {
        guard !messages.isEmpty else { return }
        var buffer = channel.allocator.buffer(capacity: messages.count * 64)
        for message in messages { buffer.writeBytes(message.line()) }
        channel.writeAndFlush(buffer, promise: nil)
    }

    public func send(_ message: IRCMessage) { send([message]) }

    /// Sends QUIT and closes once it is written.
    public func quit(_ reason: String) {
        let channel = self.channel
        channel.writeAndFlush(channel.allocator.buffer(bytes: IRCMessage(command: "QUIT", reason).line()))
            .whenComplete { _ in channel.close(promise: nil) }
    }

    public func close() { channel.close(promise: nil) }
}

/// Registration and PING on the event loop; every message goes on to the owner.
final class IRCClientHandler: ChannelInboundHandler {
    typealias InboundIn = IRCLine
    typealias OutboundOut = ByteBuffer

    private let configuration: IRCConnectionConfiguration
    private let continuation: AsyncStream<IRCConnectionEvent>.Continuation
    private let logger: Logger
    private var registered = false
    private var nickAttempt = 0
    private var closeReason = "connection closed"

    init(configuration: IRCConnectionConfiguration, continuation: AsyncStream<IRCConnectionEvent>.Continuation, logger: Logger) {
        self.configuration = configuration
        self.continuation = continuation
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        var lines: [IRCMessage] = []
        if let password = configuration.password { lines.append(IRCMessage(command: "PASS", password)) }
        lines.append(IRCMessage(command: "NICK", configuration.nick))
        lines.append(IRCMessage(command: "USER", configuration.username, "0", "*", configuration.realname))
        send(context: context, lines)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .dropped(let bytes):
            logger.warning("dropped an over-long IRC line", metadata: ["bytes": "\(bytes)"])
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

    private func handle(_ message: IRCMessage, context: ChannelHandlerContext) {
        switch message.command {
        case "PING":
            send(context: context, [IRCMessage(command: "PONG", message.parameters)])
            return
        case "001" where !registered:
            registered = true
            continuation.yield(.registered(nick: message.parameters.first ?? configuration.nick))
        case let numeric where !registered && ["432", "433", "436", "437"].contains(numeric):
            // Nick unusable during registration: try the next candidate.
            nickAttempt += 1
            send(context: context, [IRCMessage(command: "NICK", Self.alternative(configuration.nick, attempt: nickAttempt))])
        case "ERROR":
            closeReason = message.parameters.last ?? "ERROR"
            logger.warning("IRC server closed the connection", metadata: ["reason": "\(closeReason)"])
        default:
            break
        }
        continuation.yield(.message(message))
    }

    func channelInactive(context: ChannelHandlerContext) {
        continuation.yield(.closed(reason: closeReason))
        continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        closeReason = "\(error)"
        context.close(promise: nil)
    }

    private func send(context: ChannelHandlerContext, _ messages: [IRCMessage]) {
        var buffer = context.channel.allocator.buffer(capacity: 128)
        for message in messages { buffer.writeBytes(message.line()) }
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    /// `nick_`, `nick__`, then a short numeric suffix, kept within 9 characters (RFC 1459's
    /// NICKLEN; the server's own NICKLEN is read with the IRC connections issue).
    static func alternative(_ nick: String, attempt: Int) -> String {
        if attempt <= 2 {
            let base = String(nick.prefix(9 - attempt))
            return base + String(repeating: "_", count: attempt)
        }
        let suffix = String(attempt)
        return String(nick.prefix(9 - suffix.count - 1)) + "_" + suffix
    }
}
