import Logging
import NIOCore

/// Closes a stream whose peer has stopped reading. Writes wait in the channel until the
/// kernel takes them; past the channel's high water mark it turns unwritable, and if it stays
/// so for `limit` the stream is closed: the session reconnects, and what was waiting is
/// dropped as on any lost connection (the link protocol resends what the room needs). So a
/// stuck XMPP server (SIGSTOP, a full disk) costs at most the water mark plus what arrives
/// within `limit`, never unbounded memory.
final class WriteStallHandler: ChannelInboundHandler {
    typealias InboundIn = NIOAny

    /// The channel's water marks for component streams: a room's burst fits below them.
    static let waterMark = ChannelOptions.Types.WriteBufferWaterMark(low: 1 << 20, high: 4 << 20)

    private let limit: TimeAmount
    private let logger: Logger
    private var timer: Scheduled<Void>?

    init(limit: TimeAmount = .seconds(30), logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable {
            timer?.cancel()
            timer = nil
        } else if timer == nil {
            let limit = self.limit
            timer = context.eventLoop.assumeIsolated().scheduleTask(in: limit) {
                self.timer = nil
                guard !context.channel.isWritable else { return }
                self.logger.error("the XMPP server has not read our stream for \(limit.nanoseconds / 1_000_000_000) s; closing it to reconnect")
                context.close(promise: nil)
            }
        }
        context.fireChannelWritabilityChanged()
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }
}
