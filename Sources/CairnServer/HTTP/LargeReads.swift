import NIOCore

/// Lets a connection read up to 1 MiB per read (NIO's default stops at 64 KiB): chunk uploads are
/// megabytes, and each read costs a pass through the HTTP decoder and the request body stream.
final class LargeReads: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = Never

    func handlerAdded(context: ChannelHandlerContext) {
        context.channel.setOption(
            ChannelOptions.recvAllocator,
            value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 1 << 20)
        ).whenComplete { _ in }
    }
}
