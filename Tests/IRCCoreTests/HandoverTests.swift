import IRCCore
import Logging
import NIOCore
import NIOEmbedded
import Testing

@testable import IRCNIO

/// A live restart's IRC side on embedded channels: one connection hands over, another takes
/// it up, and the line the server was in the middle of sending arrives whole.
@Suite("IRC connection handover")
struct HandoverTests {
    /// A flood bucket so slow that nothing refills while the test runs.
    static let configuration = IRCConnectionConfiguration(host: "irc.test", port: 6667, nick: "sb", username: "sb", realname: "sb", floodBurst: 3, floodLinesPerSecond: 0.0001)

    static func connection(resuming: IRCConnectionHandover? = nil) throws -> (EmbeddedChannel, AsyncStream<IRCConnectionEvent>) {
        let (events, continuation) = AsyncStream<IRCConnectionEvent>.makeStream()
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(IRCLineDecoder()), name: IRCClientHandler.decoderName)
        try channel.pipeline.syncOperations.addHandler(
            IRCClientHandler(configuration: configuration, continuation: continuation, depth: QueueDepth(), logger: Logger(label: "test"), resuming: resuming))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 6667)).wait()
        return (channel, events)
    }

    static func written(_ channel: EmbeddedChannel) throws -> [String] {
        var out: [String] = []
        while let buffer = try channel.readOutbound(as: ByteBuffer.self) {
            out += String(buffer: buffer).split(separator: "\r\n").map(String.init)
        }
        return out
    }

    @Test("a handed-over connection says what the next process needs, and the next one goes on from there: registered, nothing sent again, the waiting lines still waiting, the unfinished line completed")
    func roundTrip() async throws {
        let (old, oldEvents) = try Self.connection()
        #expect(try Self.written(old) == ["CAP LS 302", "NICK sb", "USER sb 0 * sb"])
        try old.writeInbound(ByteBuffer(string: ":srv CAP * LS :multi-prefix\r\n:srv CAP sb ACK :multi-prefix\r\n"))
        try old.writeInbound(ByteBuffer(string: ":srv 001 sb :welcome\r\n:srv 005 sb CASEMAPPING=ascii NICKLEN=30 :are supported\r\n"))
        // The burst is spent: CAP REQ, CAP END and this line wait for the bucket.
        old.writeAndFlush(IRCOutbound.message(IRCMessage(command: "PRIVMSG", "#c", "still waiting")), promise: nil)
        #expect(try Self.written(old).isEmpty)
        try old.writeInbound(ByteBuffer(string: ":carol!c@h PRIVMSG #c :hal"))

        let paused = old.eventLoop.makePromise(of: Void.self)
        old.writeAndFlush(IRCOutbound.pause(paused), promise: nil)
        old.embeddedEventLoop.run()
        try await paused.futureResult.get()
        var ended: [IRCConnectionEvent] = []
        for await event in oldEvents { ended.append(event) }
        if case .closed = ended.last { Issue.record("a handed-over connection does not say it closed") }
        // What the owner sends in answer to the last lines it read still goes in the handover.
        old.writeAndFlush(IRCOutbound.message(IRCMessage(command: "PRIVMSG", "#c", "after the pause")), promise: nil)
        let promise = old.eventLoop.makePromise(of: IRCConnectionHandover.self)
        old.writeAndFlush(IRCOutbound.handOver(promise), promise: nil)
        old.embeddedEventLoop.run()
        let handover = try await promise.futureResult.get()
        #expect(handover.nick == "sb")
        #expect(handover.isupport["CASEMAPPING"] == "ascii" && handover.isupport["NICKLEN"] == "30")
        #expect(handover.enabled == ["multi-prefix"])
        #expect(String(decoding: handover.unfinished, as: UTF8.self) == ":carol!c@h PRIVMSG #c :hal")
        #expect(handover.queued.map { String(decoding: $0, as: UTF8.self) } == ["CAP REQ multi-prefix", "CAP END", "PRIVMSG #c :still waiting", "PRIVMSG #c :after the pause"])
        #expect(handover.floodTokens < 1)

        let (new, newEvents) = try Self.connection(resuming: handover)
        try new.writeInbound(ByteBuffer(string: "per\r\n"))
        #expect(try Self.written(new).isEmpty, "nothing is sent again, and the waiting lines still wait for the bucket")
        var iterator = newEvents.makeAsyncIterator()
        var seen: [String] = []
        while seen.count < 4, let event = await iterator.next() {
            switch event {
            case .capabilities(let enabled, _): seen.append("capabilities \(enabled.sorted())")
            case .isupport(let isupport): seen.append("isupport \(isupport.nickLength)")
            case .resumed(let nick): seen.append("resumed \(nick)")
            case .message(let message): seen.append("\(message.command) \(message.parameters)")
            default: seen.append("\(event)")
            }
        }
        #expect(seen == ["capabilities [\"multi-prefix\"]", "isupport 30", "resumed sb", "PRIVMSG [\"#c\", \"halper\"]"])
        _ = try? new.finish()
    }

}
