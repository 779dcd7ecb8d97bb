import IRCCore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The user names of this process's open IRC connections, by the ports (and local address)
/// an ident query names. Connections add themselves when their socket opens and leave when it
/// closes; the ident server reads it.
public final class IdentTable: Sendable {
    struct Key: Hashable {
        var localAddress: String
        var localPort: Int
        var remoteAddress: String
        var remotePort: Int
    }

    private let entries = Mutex<[Key: String]>([:])

    public init() {}

    public var count: Int { entries.withLock { $0.count } }

    func add(_ connection: Key, user: String) {
        entries.withLock { $0[connection.normalized] = user }
    }

    func remove(_ connection: Key) {
        entries.withLock { _ = $0.removeValue(forKey: connection.normalized) }
    }

    /// The user for a query from `querier` that reached us on `localAddress`. Only the server
    /// a connection goes to may ask about it (RFC 1413): the entry must name the querier as
    /// its remote address. Then the exact entry, or the only one with those ports (a server
    /// may query an address of ours other than the one it saw).
    public func user(localAddress: String?, querier: String, localPort: Int, remotePort: Int) -> String? {
        let querier = IRCWebIRC.unmapped(querier)
        return entries.withLock { entries in
            if let localAddress,
                let user = entries[Key(localAddress: IRCWebIRC.unmapped(localAddress), localPort: localPort, remoteAddress: querier, remotePort: remotePort)]
            {
                return user
            }
            let matches = entries.filter { $0.key.localPort == localPort && $0.key.remotePort == remotePort && $0.key.remoteAddress == querier }
            return matches.count == 1 ? matches.first?.value : nil
        }
    }
}

/// An ident server (RFC 1413) answering for this process's IRC connections only, so a network
/// that asks sees each puppet's own user name rather than `~xmpp`.
///
/// One query per connection, answered and closed; a query for a connection that is not ours
/// gets `NO-USER`. A connection's socket opens a moment before the bridge registers it, and a
/// fast server may ask in that moment, so an unknown pair is looked up again for up to two
/// seconds before the answer.
public final class IdentServer: Sendable {
    private let channel: any Channel

    public var port: Int { channel.localAddress?.port ?? 0 }

    private init(channel: any Channel) { self.channel = channel }

    /// Queries answered at once at most; more connections are closed unanswered, so nobody
    /// can hold the process's file descriptors through port 113.
    static let maximumOpenQueries = 64

    public static func start(host: String, port: Int, table: IdentTable, group: any EventLoopGroup, logger: Logger) async throws -> IdentServer {
        let open = Atomic<Int>(0)
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard open.add(1, ordering: .relaxed).newValue <= maximumOpenQueries else {
                    open.subtract(1, ordering: .relaxed)
                    return channel.close()
                }
                channel.closeFuture.whenComplete { _ in open.subtract(1, ordering: .relaxed) }
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(IRCLineDecoder(maximumLineBytes: 1000)))
                    try channel.pipeline.syncOperations.addHandler(IdentQueryHandler(table: table, logger: logger))
                }
            }
            .bind(host: host, port: port).get()
        logger.info("identd listening", metadata: ["address": "\(channel.localAddress.map { "\($0)" } ?? "?")"])
        return IdentServer(channel: channel)
    }

    public func stop() async {
        try? await channel.close()
    }

    /// The answer to one query line from `querier`, or nil to say nothing (not a query).
    static func answer(to line: String, table: IdentTable, localAddress: String?, querier: String) -> String? {
        let parts = line.split(separator: ",", maxSplits: 1).map { part in
            String(part.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" || $0 == "\r" }).reversed())
        }
        guard parts.count == 2, let local = Int(parts[0]), let remote = Int(parts[1]) else { return nil }
        guard (1...65535).contains(local), (1...65535).contains(remote) else {
            return "\(parts[0]) , \(parts[1]) : ERROR : INVALID-PORT"
        }
        guard let user = table.user(localAddress: localAddress, querier: querier, localPort: local, remotePort: remote) else {
            return "\(local) , \(remote) : ERROR : NO-USER"
        }
        return "\(local) , \(remote) : USERID : UNIX : \(user)"
    }
}

extension IdentTable.Key {
    var normalized: Self {
        Self(localAddress: IRCWebIRC.unmapped(localAddress), localPort: localPort, remoteAddress: IRCWebIRC.unmapped(remoteAddress), remotePort: remotePort)
    }
}

final class IdentQueryHandler: ChannelInboundHandler {
    typealias InboundIn = IRCLine
    typealias OutboundOut = ByteBuffer

    private let table: IdentTable
    private let logger: Logger
    private var answered = false

    init(table: IdentTable, logger: Logger) {
        self.table = table
        self.logger = logger
    }

    private var idleTimer: Scheduled<Void>?

    func channelActive(context: ChannelHandlerContext) {
        // A querier that says nothing for 10 s is closed (servers give up on ident sooner).
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        idleTimer = context.eventLoop.scheduleTask(in: .seconds(10)) { loopBound.value.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        idleTimer?.cancel()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered, case .line(let buffer) = unwrapInboundIn(data) else { return }
        answered = true
        let line = String(decoding: buffer.readableBytesView, as: UTF8.self)
        let localAddress = context.channel.localAddress?.ipAddress
        guard let querier = context.channel.remoteAddress?.ipAddress else {
            context.close(promise: nil)
            return
        }
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        Self.respond(line: line, localAddress: localAddress, querier: querier, table: table, logger: logger, context: loopBound, attemptsLeft: 40)
    }

    private static func respond(
        line: String, localAddress: String?, querier: String, table: IdentTable, logger: Logger, context: NIOLoopBound<ChannelHandlerContext>,
        attemptsLeft: Int
    ) {
        let answer = IdentServer.answer(to: line, table: table, localAddress: localAddress, querier: querier)
        if let answer, answer.hasSuffix("NO-USER"), attemptsLeft > 0 {
            context.value.eventLoop.scheduleTask(in: .milliseconds(50)) {
                respond(line: line, localAddress: localAddress, querier: querier, table: table, logger: logger, context: context, attemptsLeft: attemptsLeft - 1)
            }
            return
        }
        guard let answer else {
            context.value.close(promise: nil)
            return
        }
        logger.debug("ident query", metadata: ["answer": "\(answer)"])
        var buffer = context.value.channel.allocator.buffer(capacity: answer.utf8.count + 2)
        buffer.writeString(answer + "\r\n")
        context.value.writeAndFlush(NIOAny(buffer)).whenComplete { _ in context.value.close(promise: nil) }
    }
}
