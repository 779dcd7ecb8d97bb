import Logging
import NIOCore
import XMPPCore

/// What a component stream reports to its session.
enum ComponentStreamEvent: Sendable {
    case stanza(XMLElement)
}

/// Reads and writes one XEP-0114 component stream: sends the header, answers the server's
/// header with the handshake, then hands every stanza to the session. A malformed stream is
/// answered with a stream error (RFC 6120 §4.9) and closed.
final class ComponentStreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let domain: String
    private let secret: String
    private let parser: XMLStreamParser
    private let continuation: AsyncStream<ComponentStreamEvent>.Continuation
    private let ready: EventLoopPromise<Void>
    private let logger: Logger
    private var authenticated = false

    init(
        domain: String, secret: String, limits: XMLStreamParser.Limits,
        continuation: AsyncStream<ComponentStreamEvent>.Continuation, ready: EventLoopPromise<Void>, logger: Logger
    ) {
        self.domain = domain
        self.secret = secret
        self.parser = XMLStreamParser(limits: limits)
        self.continuation = continuation
        self.ready = ready
        self.logger = logger
    }

    func channelActive(context: ChannelHandlerContext) {
        write(context: context, ComponentHandshake.streamHeader(to: domain))
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        let events: [XMLStreamEvent]
        do {
            events = try buffer.withUnsafeReadableBytes { try parser.feed($0) }
        } catch let error as XMLStreamError {
            logger.warning("malformed stream from the XMPP server; closing it", metadata: ["error": "\(error)"])
            write(context: context, Self.streamError(error.code.streamErrorCondition) + "</stream:stream>")
            context.close(promise: nil)
            return
        } catch {
            context.close(promise: nil)
            return
        }
        for event in events {
            switch event {
            case .streamOpened(let header):
                guard let id = header["id"] else {
                    logger.error("the XMPP server's stream header has no id")
                    context.close(promise: nil)
                    return
                }
                write(context: context, "<handshake>\(ComponentHandshake.digest(streamID: id, secret: secret))</handshake>")
            case .element(let element) where element.name == "handshake" && !authenticated:
                authenticated = true
                ready.succeed(())
            case .element(let element) where element.name == "error" && element.namespace == NS.stream:
                let condition = element.elements.first { $0.namespace == NS.streams && $0.name != "text" }?.name ?? "unknown"
                logger.error("the XMPP server closed the component stream", metadata: ["condition": "\(condition)"])
                ready.fail(ComponentError.streamError(condition))
                context.close(promise: nil)
            case .element(let element):
                if authenticated {
                    continuation.yield(.stanza(element))
                } else {
                    logger.warning("stanza before the handshake completed; ignored", metadata: ["element": "\(element.name)"])
                }
            case .streamClosed:
                write(context: context, "</stream:stream>")
                context.close(promise: nil)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        ready.fail(ComponentError.closed)
        continuation.finish()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        logger.warning("component connection error", metadata: ["error": "\(error)"])
        context.close(promise: nil)
    }

    private func write(context: ChannelHandlerContext, _ text: String) {
        context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(string: text)), promise: nil)
    }

    static func streamError(_ condition: String) -> String {
        "<stream:error><\(condition) xmlns='\(NS.streams)'/></stream:error>"
    }
}

/// Why a component session is not connected.
public enum ComponentError: Error, Sendable, CustomStringConvertible {
    case streamError(String)
    case closed
    case handshakeTimeout

    public var description: String {
        switch self {
        case .streamError(let condition): "stream error: \(condition)"
        case .closed: "connection closed"
        case .handshakeTimeout: "no handshake reply"
        }
    }
}
