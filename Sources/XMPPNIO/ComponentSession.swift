import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import XMPPCore

/// Where and who a component is (XEP-0114).
public struct ComponentConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var domain: String
    public var secret: String
    /// Identity and features answered to disco#info on the bare domain.
    public var identity: (category: String, type: String, name: String)
    public var features: [String]

    public init(host: String, port: Int, domain: String, secret: String, identity: (category: String, type: String, name: String), features: [String] = []) {
        self.host = host
        self.port = port
        self.domain = domain
        self.secret = secret
        self.identity = identity
        self.features = features
    }
}

/// A long-lived component session: connects, authenticates, answers ping and disco#info on
/// its own domain, hands every other stanza to its owner, and reconnects with jittered
/// exponential backoff when the stream ends.
public final class ComponentSession: Sendable {
    public let configuration: ComponentConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    private let channel = NIOLockedValueBox<(any Channel)?>(nil)
    /// Set by `close()`: the stream's end is then expected and not retried.
    private let closing = NIOLockedValueBox(false)
    /// A domain served by this same process, and how to hand it a stanza: stanzas to it skip
    /// the XMPP server (the link's in-memory transport, DESIGN.md §1).
    private let shortcut = NIOLockedValueBox<Shortcut?>(nil)
    /// Who waits in `closeDraining` for the stream's last stanza to be handled; taken under
    /// `channel`'s lock, so a stream ending as one registers cannot strand it.
    private let drainWaiters = NIOLockedValueBox<[CheckedContinuation<Void, Never>]>([])
    /// From `closeDraining` on, what is sent is kept here rather than written after the
    /// stream's end (where the server would drop it): the next process sends it.
    private let held = NIOLockedValueBox<[XMLElement]?>(nil)

    /// A class, not a tuple: a closure stored by value in the generic box is reabstracted on
    /// every `inout` access, read and written back wrapped in two more thunks each time, so
    /// every stanza sent made the next one slower (found by profiling issue 8's latency).
    private final class Shortcut: Sendable {
        let domain: String
        let deliver: @Sendable (XMLElement) -> Void
        init(domain: String, deliver: @escaping @Sendable (XMLElement) -> Void) {
            self.domain = domain
            self.deliver = deliver
        }
    }

    public init(configuration: ComponentConfiguration, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
    }

    public var domain: JID { JID(local: nil, domain: configuration.domain) }

    /// From now on, stanzas addressed to `domain` (or a JID on it) are handed to `deliver`, in
    /// order, instead of being serialized to the XMPP server. For a master and a bridge in one
    /// process: the same stanzas, no serialization, no trip through the server.
    public func shortcut(to domain: String, deliver: @escaping @Sendable (XMLElement) -> Void) {
        let shortcut = Shortcut(domain: domain, deliver: deliver)
        self.shortcut.withLockedValue { $0 = shortcut }
    }

    /// Whether stanzas to `domain` skip the XMPP server (see `shortcut`).
    public func isShortcut(_ domain: String) -> Bool {
        shortcut.withLockedValue { $0?.domain == domain }
    }

    /// Sends stanzas in order, flushed once. While disconnected they are dropped with a log
    /// line: what the room needs again is resent by the protocol on reconnection.
    public func send(_ elements: [XMLElement]) {
        guard !elements.isEmpty else { return }
        var elements = elements
        if let shortcut = shortcut.withLockedValue({ $0 }) {
            elements.removeAll { element in
                guard let to = element["to"].flatMap(JID.init), to.domain == shortcut.domain else { return false }
                shortcut.deliver(element)
                return true
            }
            if elements.isEmpty { return }
        }
        let kept = held.withLockedValue { held in
            guard held != nil else { return false }
            held!.append(contentsOf: elements)
            return true
        }
        if kept { return }
        guard let channel = channel.withLockedValue({ $0 }) else {
            logger.warning("not connected to the XMPP server; stanzas dropped", metadata: ["count": "\(elements.count)"])
            return
        }
        var text = ""
        for element in elements { element.write(into: &text, parentNamespace: NS.component) }
        channel.writeAndFlush(channel.allocator.buffer(string: text), promise: nil)
    }

    public func send(_ element: XMLElement) { send([element]) }

    /// Runs until the task is cancelled. `onConnected` runs after each successful handshake,
    /// `onStanza` for every stanza not answered here, in stream order.
    public func run(
        onConnected: @Sendable () async -> Void = {},
        onStanza: @Sendable (XMLElement) async -> Void
    ) async {
        var failures = 0
        while !Task.isCancelled, !closing.withLockedValue({ $0 }) {
            do {
                let (connected, events) = try await connect()
                failures = 0
                // `closeDraining` may have run while this connection was being made: it found
                // no stream to close, so this one must not start.
                let started = channel.withLockedValue { channel in
                    guard !closing.withLockedValue({ $0 }) else { return false }
                    channel = connected
                    return true
                }
                guard started else {
                    connected.close(promise: nil)
                    return
                }
                logger.info("component connected", metadata: ["domain": "\(configuration.domain)"])
                await onConnected()
                await withTaskCancellationHandler {
                    for await event in events {
                        switch event {
                        case .stanza(let stanza):
                            if let reply = answerDomainQuery(stanza) {
                                send(reply)
                            } else {
                                await onStanza(stanza)
                            }
                        }
                    }
                } onCancel: {
                    connected.writeAndFlush(connected.allocator.buffer(string: "</stream:stream>")).whenComplete { _ in
                        connected.close(promise: nil)
                    }
                }
                let waiters = channel.withLockedValue { channel in
                    channel = nil
                    return drainWaiters.withLockedValue { waiters in
                        defer { waiters = [] }
                        return waiters
                    }
                }
                for waiter in waiters { waiter.resume() }
                if Task.isCancelled || closing.withLockedValue({ $0 }) { return }
                logger.warning("component stream ended; reconnecting", metadata: ["domain": "\(configuration.domain)"])
            } catch {
                failures += 1
                logger.warning(
                    "cannot connect the component to the XMPP server",
                    metadata: ["domain": "\(configuration.domain)", "server": "\(configuration.host):\(configuration.port)", "error": "\(error)", "attempt": "\(failures)"])
            }
            let delay = Backoff.delay(attempt: max(failures, 1))
            try? await Task.sleep(for: delay)
        }
    }

    /// Closes the stream politely (used on shutdown).
    public func close() async {
        closing.withLockedValue { $0 = true }
        guard let connected = channel.withLockedValue({ $0 }) else { return }
        try? await connected.writeAndFlush(connected.allocator.buffer(string: "</stream:stream>")).get()
        try? await connected.close().get()
    }

    /// Closes the stream and returns once the server has closed its side and every stanza it
    /// sent before is handled (`onStanza` returned), or after `limit`, when the connection is
    /// closed from here; what handling them sends is kept, for `takeHeld`. A live restart
    /// (SIGUSR2): what the server already wrote is not lost in the socket; what it gets
    /// afterwards it bounces to the sender, who is told.
    public func closeDraining(within limit: TimeAmount = .seconds(2)) async {
        closing.withLockedValue { $0 = true }
        hold()
        await withCheckedContinuation { (waiter: CheckedContinuation<Void, Never>) in
            let connected = channel.withLockedValue { channel in
                if channel != nil { drainWaiters.withLockedValue { $0.append(waiter) } }
                return channel
            }
            guard let connected else {
                waiter.resume()
                return
            }
            connected.writeAndFlush(connected.allocator.buffer(string: "</stream:stream>"), promise: nil)
            connected.eventLoop.scheduleTask(in: limit) { connected.close(promise: nil) }
        }
    }

    /// From now until `takeHeld`, what is sent is kept rather than written (a master taking up
    /// a live restart's rooms, before its stream is up).
    public func hold() {
        held.withLockedValue { $0 = $0 ?? [] }
    }

    /// What was sent after `closeDraining` (or `hold`) began, in order; stanzas to the
    /// shortcut's domain were delivered, not kept.
    public func takeHeld() -> [XMLElement] {
        held.withLockedValue { held in
            defer { held = nil }
            return held ?? []
        }
    }

    private func connect() async throws -> (any Channel, AsyncStream<ComponentStreamEvent>) {
        let (events, continuation) = AsyncStream<ComponentStreamEvent>.makeStream()
        let loop = group.next()
        let ready = loop.makePromise(of: Void.self)
        let configuration = self.configuration
        let logger = self.logger
        let connected: any Channel
        do {
            connected = try await ClientBootstrap(group: loop)
            .connectTimeout(.seconds(5))
            .channelOption(.writeBufferWaterMark, value: WriteStallHandler.waterMark)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(WriteStallHandler(logger: logger))
                    try channel.pipeline.syncOperations.addHandler(
                        ComponentStreamHandler(
                            domain: configuration.domain, secret: configuration.secret, limits: .init(),
                            continuation: continuation, ready: ready, logger: logger))
                }
            }
            .connect(host: configuration.host, port: configuration.port).get()
        } catch {
            // No channel, so no handler will ever complete the handshake promise.
            ready.fail(error)
            continuation.finish()
            throw error
        }
        let timeout = loop.scheduleTask(in: .seconds(10)) { ready.fail(ComponentError.handshakeTimeout) }
        do {
            try await ready.futureResult.get()
            timeout.cancel()
        } catch {
            timeout.cancel()
            connected.close(promise: nil)
            throw error
        }
        return (connected, events)
    }

    /// Ping and disco#info on the bare component domain (XEP-0199, XEP-0030).
    private func answerDomainQuery(_ stanza: XMLElement) -> XMLElement? {
        guard stanza.name == "iq", stanza["type"] == "get" || stanza["type"] == "set",
            let to = stanza["to"].flatMap(JID.init), to.local == nil, to.resource == nil,
            let payload = stanza.elements.first
        else { return nil }
        if payload.name == "ping" && payload.namespace == NS.ping { return stanza.iqResult() }
        if payload.name == "query" && payload.namespace == NS.discoInfo && stanza["type"] == "get" && payload["node"] == nil {
            var query = XMLElement("query", namespace: NS.discoInfo)
            let identity = configuration.identity
            query.append(XMLElement("identity", namespace: NS.discoInfo, attributes: ["category": identity.category, "type": identity.type, "name": identity.name]))
            for feature in [NS.discoInfo, NS.ping] + configuration.features {
                query.append(XMLElement("feature", namespace: NS.discoInfo, attributes: ["var": feature]))
            }
            return stanza.iqResult(query)
        }
        return nil
    }
}

/// Jittered exponential backoff: 0.5 s doubling to 30 s, each delay drawn from [d/2, d].
public enum Backoff {
    public static func delay(attempt: Int, base: Double = 0.5, cap: Double = 30) -> Duration {
        let ceiling = min(cap, base * Double(1 << min(attempt - 1, 16)))
        return .milliseconds(Int(Double.random(in: (ceiling / 2)...ceiling) * 1000))
    }
}
