import KVRESP
import NIOCore

/// Bytes → `RESPValue`s with the bounded parser.
final class RESPDecoder: ByteToMessageDecoder {
    typealias InboundOut = RESPValue
    let parser: RESPParser

    init(parser: RESPParser) { self.parser = parser }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let parsed = try buffer.withUnsafeReadableBytes { try parser.parse($0) }
        guard let (value, consumed) = parsed else { return .needMoreData }
        buffer.moveReaderIndex(forwardBy: consumed)
        context.fireChannelRead(wrapInboundOut(value))
        return .continue
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        try decode(context: context, buffer: &buffer)
    }
}

/// A pipelined batch: encoded commands and one promise per reply, in order.
struct RESPRequest: Sendable {
    var bytes: [UInt8]
    var replies: [EventLoopPromise<RESPValue>]
}

/// Matches replies to requests in order (RESP2 is strictly FIFO per connection). Any error or
/// close fails every reply still pending, so no caller waits on a dead connection.
final class RESPPipelineHandler: ChannelDuplexHandler {
    typealias InboundIn = RESPValue
    typealias OutboundIn = RESPRequest
    typealias OutboundOut = ByteBuffer

    private var pending = CircularBuffer<EventLoopPromise<RESPValue>>()

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        pending.append(contentsOf: request.replies)
        context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: request.bytes)), promise: promise)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let value = unwrapInboundIn(data)
        guard let promise = pending.popFirst() else {
            context.fireErrorCaught(ClusterError.badReply("reply with no request pending"))
            context.close(promise: nil)
            return
        }
        promise.succeed(value)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        failAll(error)
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(ClusterError.unavailable("connection to \(context.remoteAddress.map { "\($0)" } ?? "node") closed"))
        context.fireChannelInactive()
    }

    private func failAll(_ error: Error) {
        while let p = pending.popFirst() { p.fail(error) }
    }
}
