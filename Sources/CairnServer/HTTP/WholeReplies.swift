import NIOCore
import NIOHTTPTypes

/// Holds a connection's close back until the reply written before it has gone out. On a
/// `Connection: close` request, and on a graceful shutdown, Hummingbird closes the channel right
/// after writing a reply's end, which drops whatever of a large reply the socket had not taken yet
/// (a client reading slower than the server writes got 4 of 5 MB). A close waits until the end of
/// the last reply is written (writes complete in order), for at most ``limit``: a client that
/// stops reading cannot hold a shutting-down server for longer.
final class WholeReplies: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart
    static let limit: TimeAmount = .seconds(60)

    /// Replies whose end is written but not yet sent.
    private var unsent = 0
    /// A close waiting for them, and the promises of the closes asked for meanwhile.
    private var held = false
    private var closePromises: [EventLoopPromise<Void>] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .end = unwrapOutboundIn(data) else {
            context.write(data, promise: promise)
            return
        }
        unsent += 1
        let sent = promise ?? context.eventLoop.makePromise()
        sent.futureResult.assumeIsolated().whenComplete { _ in
            self.unsent -= 1
            if self.unsent == 0, self.held { self.release(context) }
        }
        context.write(data, promise: sent)
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        guard mode == .all, unsent > 0 else {
            context.close(mode: mode, promise: promise)
            return
        }
        if let promise { closePromises.append(promise) }
        guard !held else { return }
        held = true
        context.flush()
        context.eventLoop.assumeIsolated().scheduleTask(in: Self.limit) {
            if self.held { self.release(context) }
        }
    }

    private func release(_ context: ChannelHandlerContext) {
        held = false
        let promises = closePromises
        closePromises = []
        let closed = context.eventLoop.makePromise(of: Void.self)
        closed.futureResult.whenComplete { result in for promise in promises { promise.completeWith(result) } }
        context.close(mode: .all, promise: closed)
    }
}
