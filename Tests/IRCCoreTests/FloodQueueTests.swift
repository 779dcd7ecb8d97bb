import IRCCore
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import IRCNIO

/// The connection's flood queue on an embedded channel: no server, no clock (the bucket is
/// set so slow that nothing refills while the test runs).
@Suite("IRC flood queue")
struct FloodQueueTests {
    static func lines(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            out += String(buffer: buffer).split(separator: "\r\n").map(String.init)
        }
        return out
    }

    @Test("the queue is bounded: beyond maximumQueuedLines a new PRIVMSG is dropped, a PART still queues; PING is answered at once")
    func bounded() throws {
        var configuration = IRCConnectionConfiguration(host: "irc.test", port: 6667, nick: "sb", username: "sb", realname: "sb", floodBurst: 1, floodLinesPerSecond: 0.0001)
        configuration.maximumQueuedLines = 10
        let (_, continuation) = AsyncStream<IRCConnectionEvent>.makeStream()
        let depth = QueueDepth()
        let channel = EmbeddedChannel(handler: IRCClientHandler(configuration: configuration, continuation: continuation, depth: depth, logger: Logger(label: "test")))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6667)).wait()
        let registration = try Self.lines(channel)
        #expect(registration.count == 1)  // the burst: the rest of registration waits
        for n in 1...50 { try channel.writeOutbound(IRCOutbound.message(IRCMessage(command: "PRIVMSG", "#c", "line \(n)"))) }
        #expect(depth.lines.load(ordering: .relaxed) == 10)
        try channel.writeOutbound(IRCOutbound.message(IRCMessage(command: "PART", "#c", "bye")))
        #expect(depth.lines.load(ordering: .relaxed) == 11, "a state change is never dropped")
        #expect(try Self.lines(channel).isEmpty)
        // The server's PING is answered at once, whatever waits.
        try channel.writeInbound(IRCLine.line(ByteBuffer(string: "PING :x")))
        #expect(try Self.lines(channel) == ["PONG x"])
        _ = try channel.finish()
    }
}
