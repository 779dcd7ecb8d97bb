import Logging
import NIOCore
import NIOPosix
import NIOConcurrencyHelpers
import Testing
import XMLCore

@testable import XMPPNIO

/// A live restart of the master: its component stream closes without losing what the server
/// had already written, and what handling that makes it send is kept for the next process.
@Suite("Component session close draining")
struct CloseDrainingTests {
    /// An XEP-0114 server with one trick: when the component ends its stream, it writes one
    /// more stanza before ending its own, as a server does with a message already on its way.
    final class ScriptedServer: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let received: NIOLockedValueBox<String>
        private var text = ""
        private var greeted = false, shookHands = false

        init(received: NIOLockedValueBox<String>) { self.received = received }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            text += String(buffer: unwrapInboundIn(data))
            received.withLockedValue { $0 = text }
            if !greeted, text.contains("<stream:stream") {
                greeted = true
                write(context, "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='s1' from='irc.example.org'>")
            }
            if !shookHands, text.contains("</handshake>") {
                shookHands = true
                write(context, "<handshake/>")
            }
            if text.contains("</stream:stream>") {
                write(context, "<message from='alice@xmpp.example.org/phone' to='room@irc.example.org' id='late'><body>last words</body></message></stream:stream>")
                context.close(promise: nil)
            }
        }

        private func write(_ context: ChannelHandlerContext, _ string: String) {
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: string)), promise: nil)
        }
        typealias OutboundOut = ByteBuffer
    }

    @Test("a stanza the server writes as the stream ends is handled before closeDraining returns, and the reply to it is kept for takeHeld, not written after the stream's end")
    func lastStanzaKept() async throws {
        let received = NIOLockedValueBox("")
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(ScriptedServer(received: received)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: Optional<EventLoopPromise<Void>>.none) }
        let session = ComponentSession(
            configuration: .init(host: "127.0.0.1", port: server.localAddress!.port!, domain: "irc.example.org", secret: "s", identity: ("gateway", "irc", "test")),
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        let handled = NIOLockedValueBox<[String]>([])
        let (connected, connectedContinuation) = AsyncStream<Void>.makeStream()
        let running = Task {
            await session.run(onConnected: { connectedContinuation.yield() }) { stanza in
                handled.withLockedValue { $0.append(stanza["id"] ?? "") }
                session.send(XMLElement("message", namespace: "jabber:component:accept", attributes: ["to": "alice@xmpp.example.org/phone", "id": "reply-to-\(stanza["id"] ?? "")"]))
            }
        }
        for await _ in connected { break }
        await session.closeDraining()
        #expect(handled.withLockedValue { $0 } == ["late"])
        #expect(session.takeHeld().map { $0["id"] } == ["reply-to-late"])
        #expect(session.takeHeld().isEmpty, "taken once")
        await running.value
    }

    @Test("closeDraining while the session is between connection attempts: it returns at once and the session does not connect again (found in review)")
    func notConnected() async throws {
        // A port nobody listens on: every attempt fails and the session waits to retry.
        let closed = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).get()
        let port = closed.localAddress!.port!
        try await closed.close()
        let session = ComponentSession(
            configuration: .init(host: "127.0.0.1", port: port, domain: "irc.example.org", secret: "s", identity: ("gateway", "irc", "test")),
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test"))
        let running = Task { await session.run { _ in } }
        try await Task.sleep(for: .milliseconds(100))
        await session.closeDraining()
        let stopped = await withTaskGroup(of: Bool.self) { group in
            group.addTask { await running.value; return true }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                running.cancel()
                return false
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        #expect(stopped, "the session kept trying to connect after closeDraining")
        #expect(session.takeHeld().isEmpty)
    }
}
