import NIOCore

/// One framed IRC line, or word that a line was too long and was dropped.
public enum IRCLine: Sendable {
    case line(ByteBuffer)
    case dropped(bytes: Int)
    /// The start of a line whose end has not arrived, when the decoder is taken out of a
    /// connection that stays open (handed to another process): it goes on there.
    case unfinished(ByteBuffer)
}

/// Frames IRC lines on LF (CR is stripped by the parser), bounded.
///
/// NIO's `LineBasedFrameDecoder` under `ByteToMessageHandler(maximumBufferSize:)` fails the
/// whole connection when a line is too long; an IRC bridge must lose one line, not every
/// channel. So a line longer than `maximumLineBytes` is skipped up to its LF and reported.
/// The default fits the IRCv3 maximum: 8,191 bytes of tags plus 512 for the rest.
public struct IRCLineDecoder: ByteToMessageDecoder {
    public typealias InboundOut = IRCLine

    public static let defaultMaximumLineBytes = 8191 + 512
    private let maximumLineBytes: Int
    private var discarding = 0
    private var isDiscarding = false

    public init(maximumLineBytes: Int = IRCLineDecoder.defaultMaximumLineBytes) {
        self.maximumLineBytes = maximumLineBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let view = buffer.readableBytesView
        if let newline = view.firstIndex(of: 0x0A) {
            let length = newline - view.startIndex
            if isDiscarding || length > maximumLineBytes {
                buffer.moveReaderIndex(forwardBy: length + 1)
                context.fireChannelRead(wrapInboundOut(.dropped(bytes: discarding + length)))
                isDiscarding = false
                discarding = 0
                return .continue
            }
            let line = buffer.readSlice(length: length)!
            buffer.moveReaderIndex(forwardBy: 1)
            context.fireChannelRead(wrapInboundOut(.line(line)))
            return .continue
        }
        if buffer.readableBytes > maximumLineBytes {
            isDiscarding = true
            discarding += buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        }
        return .needMoreData
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if !seenEOF, !isDiscarding, buffer.readableBytes > 0, let rest = buffer.readSlice(length: buffer.readableBytes) {
            context.fireChannelRead(wrapInboundOut(.unfinished(rest)))
        }
        buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
        return .needMoreData
    }
}
