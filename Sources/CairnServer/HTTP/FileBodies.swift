import CairnStore
import Glibc
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import Synchronization

/// Response bodies whose bulk is sent from files by the kernel (`sendfile(2)`), not read into
/// memory and written out again: a chunk fetch's stored bytes go from the page cache to the socket,
/// without the two copies through a reply buffer (and without the buffer: a fetch holds no bundle
/// in memory). Server CPU per remote pull of a 338 MB model: 0.105 -> 0.090 s; most of what is left
/// is the TCP work of the loopback connection.
///
/// Hummingbird writes bodies as ByteBuffers only. A route registers the body here and writes the
/// marker it gets back instead; ``FileBodyWriter``, a handler in each connection's pipeline, swaps
/// the marker for the body's pieces (file ranges as NIO `FileRegion`s) below Hummingbird, where the
/// HTTP encoder takes them. Only connections with that handler can send such bodies
/// (``canSend(on:)``): elsewhere (a router under test) a route writes its body as bytes.
final class FileBodies: Sendable {
    /// A registered body: ``CairnStore/Store/ExportPieces`` whose descriptors it owns.
    struct Body: Sendable {
        let pieces: Store.ExportPieces
        let bytes: ByteBuffer
    }

    /// Bodies registered and not yet sent, by token; the connections with a ``FileBodyWriter``,
    /// each with the tokens of its bodies (closed with it if it goes away before they are sent).
    private struct State {
        var pending: [UInt64: Body] = [:]
        var channels: [ObjectIdentifier: Set<UInt64>] = [:]
    }
    private let state = Mutex(State())
    private static let magic: [UInt8] = Array("cairn file body\0".utf8)
    static let markerSize = 24

    /// Whether `channel`'s pipeline has a ``FileBodyWriter``.
    func canSend(on channel: any Channel) -> Bool {
        state.withLock { $0.channels[ObjectIdentifier(channel)] != nil }
    }

    /// Registers `pieces` (taking over their descriptors) to be sent on `channel`; the marker to
    /// write as the body, or nil if the connection is gone (the descriptors are then closed).
    func register(_ pieces: Store.ExportPieces, on channel: any Channel) -> ByteBuffer? {
        let body = Body(pieces: pieces, bytes: ByteBuffer(bytes: pieces.bytes))
        let connection = ObjectIdentifier(channel)
        let token = state.withLock { state -> UInt64? in
            guard state.channels[connection] != nil else { return nil }
            var token: UInt64
            repeat { token = UInt64.random(in: 1...UInt64.max) } while state.pending[token] != nil
            state.pending[token] = body
            state.channels[connection]!.insert(token)
            return token
        }
        guard let token else {
            for descriptor in pieces.descriptors { close(descriptor) }
            return nil
        }
        var marker = ByteBuffer(bytes: Self.magic)
        marker.writeInteger(token)
        return marker
    }

    /// The body a marker written on `channel` stands for, taken out of the table; nil for any
    /// other buffer.
    fileprivate func take(_ buffer: ByteBuffer, on channel: any Channel) -> Body? {
        guard buffer.readableBytes == Self.markerSize,
            buffer.readableBytesView.prefix(Self.magic.count).elementsEqual(Self.magic),
            let token = buffer.getInteger(at: buffer.readerIndex + Self.magic.count, as: UInt64.self)
        else { return nil }
        return state.withLock { state in
            guard state.channels[ObjectIdentifier(channel)]?.remove(token) != nil else { return nil }
            return state.pending.removeValue(forKey: token)
        }
    }

    fileprivate func added(_ channel: any Channel) {
        state.withLock { $0.channels[ObjectIdentifier(channel)] = [] }
    }

    /// Forgets a connection; closes the descriptors of bodies registered for it and never sent.
    fileprivate func removed(_ channel: any Channel) {
        let abandoned = state.withLock { state -> [Body] in
            let tokens = state.channels.removeValue(forKey: ObjectIdentifier(channel)) ?? []
            return tokens.compactMap { state.pending.removeValue(forKey: $0) }
        }
        for body in abandoned { for descriptor in body.pieces.descriptors { close(descriptor) } }
    }
}

/// Swaps a ``FileBodies`` marker for its body's pieces, written to the HTTP/1 encoder as byte
/// buffers and file regions. The socket is corked while they are sent, so that the small pieces
/// between file ranges (a bundle's entry headers) leave in full segments, not one each.
///
/// The file ranges must stay readable until sent: packs are never cut short in place (GC deletes
/// whole packs, and an open descriptor keeps a deleted file's bytes). A pack truncated from outside
/// after ``CairnStore/Store/exportPieces(_:)`` checked its size would stall its connection (NIO
/// keeps retrying a `sendfile` that sends nothing).
final class FileBodyWriter: ChannelOutboundHandler, RemovableChannelHandler {
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart
    private let bodies: FileBodies

    init(bodies: FileBodies) { self.bodies = bodies }

    func handlerAdded(context: ChannelHandlerContext) { bodies.added(context.channel) }
    func handlerRemoved(context: ChannelHandlerContext) { bodies.removed(context.channel) }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard case .body(let buffer) = unwrapOutboundIn(data), let body = bodies.take(buffer, on: context.channel)
        else {
            context.write(data, promise: promise)
            return
        }
        let handles = body.pieces.descriptors.map { NIOFileHandle(_deprecatedTakingOwnershipOfDescriptor: $0) }
        let encoder: ChannelHandlerContext
        do {
            encoder = try context.pipeline.syncOperations.context(handlerType: HTTP1ToHTTPServerCodec.self)
        } catch {
            // The head (with its Content-Length) has gone out: the connection cannot be used further.
            for handle in handles { try? handle.close() }
            promise?.fail(error)
            context.close(promise: nil)
            return
        }
        let cork = ChannelOptions.tcpOption(.init(rawValue: TCP_CORK))
        try? context.channel.syncOptions?.setOption(cork, value: 1)
        let done = context.eventLoop.makePromise(of: Void.self)
        let channel = context.channel
        done.futureResult.whenComplete { _ in
            for handle in handles { try? handle.close() }
            try? channel.syncOptions?.setOption(cork, value: 0)
        }
        if let promise { done.futureResult.cascade(to: promise) }
        let pieces = body.pieces.pieces
        for (i, piece) in pieces.enumerated() {
            let data: IOData
            switch piece {
            case .bytes(let range):
                data = .byteBuffer(body.bytes.getSlice(at: range.lowerBound, length: range.count)!)
            case .pack(let file, let offset, let length):
                data = .fileRegion(
                    FileRegion(fileHandle: handles[file], readerIndex: Int(offset), endIndex: Int(offset) + length)
                )
            }
            encoder.write(NIOAny(HTTPServerResponsePart.body(data)), promise: i == pieces.count - 1 ? done : nil)
        }
        if pieces.isEmpty { done.succeed() }
    }
}
