import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import XMPPNIO

/// A component stream whose server stops reading is closed after the limit, not buffered
/// forever; one that catches up in time stays open. Time is the embedded loop's.
@Suite("Component stream write stalls")
struct WriteStallTests {
    static func channel() throws -> EmbeddedChannel {
        let channel = EmbeddedChannel(handler: WriteStallHandler(limit: .seconds(30), logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 5347)).wait()
        return channel
    }

    @Test("unwritable for the whole limit: closed")
    func stalled() throws {
        let channel = try Self.channel()
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.advanceTime(by: .seconds(29))
        #expect(channel.isActive)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(!channel.isActive)
    }

    @Test("writable again within the limit: kept, and a later stall counts afresh")
    func caughtUp() throws {
        let channel = try Self.channel()
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        channel.isWritable = true
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        channel.isWritable = false
        channel.pipeline.fireChannelWritabilityChanged()
        channel.embeddedEventLoop.advanceTime(by: .seconds(20))
        #expect(channel.isActive)
        _ = try channel.finish()
    }
}
