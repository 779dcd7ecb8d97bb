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
        var remotePort: Int
    }

    private let entries = Mutex<[Key: String]>([:])

    public init() {}

    public var count: Int { entries.withLock { $0.count } }

    func add(localAddress: String, localPort: Int, remotePort: Int, user: String) {
        let key = Key(localAddress: IRCWebIRC.unmapped(localAddress), localPort: localPort, remotePort: remotePort)
        entries.withLock { $0[key] = user }
    }

    func remove(localAddress: String, localPort: Int, remotePort: Int) {
        let key = Key(localAddress: IRCWebIRC.unmapped(localAddress), localPort: localPort, remotePort: remotePort)
        entries.withLock { _ = $0.removeValue(forKey: key) }
    }

    /// The user for a query that reached us on `localAddress`: the exact entry, or the only
    /// entry with those ports (a server may query an address other than the one it saw).
    public func user(localAddress: String?, localPort: Int, remotePort: Int) -> String? {
        entries.withLock { entries in
            if let localAddress, let user = entries[Key(localAddress: IRCWebIRC.unmapped(localAddress), localPort: localPort, remotePort: remotePort)] {
                return user
            }
            let matches = entries.filter { $0.key.localPort == localPort && $0.key.remotePort == remotePort }
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

    public static func start(host: String, port: Int, table: IdentTable, group: any EventLoopGroup, logger: Logger) async throws -> IdentServer {
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
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

    /// The answer to one query line, or nil to say nothing (not a query).
    static func answer(to line: String, table: IdentTable, localAddress: String?) -> String? {
        let parts = line.split(separator: ",", maxSplits: 1).map { part in
            String(part.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" || $0 == "\r" }).reversed())
        }
        guard parts.count == 2, let local = Int(parts[0]), let remote = Int(parts[1]) else { return nil }
        guard (1...65535).contains(local), (1...65535).contains(remote) else {
            return "\(parts[0]) , \(parts[1]) : ERROR : INVALID-PORT"
        }
        guard let user = table.user(localAddress: localAddress, localPort: local, remotePort: remote) else {
            return "\(local) , \(remote) : ERROR : NO-USER"
        }
        return "\(local) , \(remote) : USERID : UNIX : \(user)"
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

    func channelActive(context: ChannelHandlerContext) {
        // RFC 1413 lets a server close an idle query after 60 s or more; nobody waits that long.
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.scheduleTask(in: .seconds(30)) { loopBound.value.close(promise: nil) }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !answered, case .line(let buffer) = unwrapInboundIn(data) else { return }
        answered = true
        let line = String(decoding: buffer.readableBytesView, as: UTF8.self)
        let localAddress = context.channel.localAddress?.ipAddress
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        Self.respond(line: line, localAddress: localAddress, table: table, logger: logger, context: loopBound, attemptsLeft: 40)
    }

    private static func respond(
        line: String, localAddress: String?, table: IdentTable, logger: Logger, context: NIOLoopBound<ChannelHandlerContext>, attemptsLeft: Int
    ) {
        let answer = IdentServer.answer(to: line, table: table, localAddress: localAddress)
        if let answer, answer.hasSuffix("NO-USER"), attemptsLeft > 0 {
            context.value.eventLoop.scheduleTask(in: .milliseconds(50)) {
                respond(line: line, localAddress: localAddress, table: table, logger: logger, context: context, attemptsLeft: attemptsLeft - 1)
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
