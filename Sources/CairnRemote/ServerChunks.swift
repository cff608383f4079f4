import AsyncHTTPClient
import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// The server as a source of chunks for a restore from the cache: one `POST /v1/chunks/fetch` per
/// batch within the server's limits, started at once and waited for when the restore needs it.
struct ServerChunks: ChunkFetcher {
    let remote: RemoteRegistry
    let config: ServerConfig

    func startFetch(_ chunks: [ChunkRef]) throws -> [any PendingBundle] { try startFetch(chunks, deltas: false) }

    /// With `deltas`, chunks the server stores as deltas come as such (``ChunkBundle/parse(_:maxChunk:allowingDeltas:)``).
    func startFetch(_ chunks: [ChunkRef], deltas: Bool) throws -> [any PendingBundle] {
        let batches = RemoteRegistry.batches(
            chunks.map { Int($0.length) },
            limit: RemoteRegistry.serverBatchLimit(config),
            maxCount: config.maxBatchIDs
        )
        if let sockets = remote.socketClient {
            return batches.map { sockets.fetch(ChunkIDList.encode(chunks[$0].map(\.id)), deltas: deltas) }
        }
        return try batches.map { range in
            let batch = chunks[range].map(\.id)
            let collector = PooledReplyCollector()
            return FetchedBundle(
                remote: remote,
                collector: collector,
                future: try remote.start(
                    .POST,
                    "/v1/chunks/fetch" + (deltas ? "?deltas=1" : ""),
                    body: .bytes(ChunkIDList.encode(batch)),
                    contentType: "application/octet-stream",
                    collector: collector
                )
            )
        }
    }
}

/// A `POST /v1/chunks/fetch` on its way; its reply is kept once it has arrived.
final class FetchedBundle: PendingBundle, @unchecked Sendable {
    // @unchecked Sendable: used by one thread at a time (the restore's read loop, then its stager).
    private let remote: RemoteRegistry
    private let collector: PooledReplyCollector
    private let future: EventLoopFuture<RemoteRegistry.Reply>
    private var body: ReceiveBuffer?

    init(remote: RemoteRegistry, collector: PooledReplyCollector, future: EventLoopFuture<RemoteRegistry.Reply>) {
        self.remote = remote
        self.collector = collector
        self.future = future
    }

    deinit {
        if let body { ReceiveBuffers.shared.give(body) }
    }

    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        if self.body == nil {
            _ = try remote.finish(future)  // throws the server's error for an error reply
            self.body = collector.takeBody()
        }
        return try body(self.body!.bytes)
    }
}

/// Collects a reply into a buffer from ``ReceiveBuffers``, sized by its Content-Length
/// (AsyncHTTPClient's default collector grows a fresh buffer per reply, whose pages are faulted in
/// anew each time). The body stays with the collector (``takeBody()``) until the reply's owner
/// takes it.
final class PooledReplyCollector: HTTPClientResponseDelegate, @unchecked Sendable {
    // @unchecked Sendable: AsyncHTTPClient calls a delegate on its event loop only; `takeBody` is
    // called after the reply's future completed.
    typealias Response = RemoteRegistry.Reply
    private var status = 0
    private var headers = HTTPHeaders()
    private var body: ReceiveBuffer?

    /// The body, once the reply is complete (to be given back to ``ReceiveBuffers``).
    func takeBody() -> ReceiveBuffer {
        defer { body = nil }
        return body ?? ReceiveBuffers.shared.take(capacity: 0)
    }

    func didReceiveHead(task: HTTPClient.Task<Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status = Int(head.status.code)
        headers = head.headers
        body = ReceiveBuffers.shared.take(capacity: head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0)
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Response>, _ part: ByteBuffer) -> EventLoopFuture<Void> {
        if body == nil { body = ReceiveBuffers.shared.take(capacity: part.readableBytes) }
        part.withUnsafeReadableBytes { body!.append($0) }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Response>) throws -> Response {
        // Error replies are small: they carry their body; a bundle stays here for takeBody().
        guard status >= 400 else { return Response(status: status, headers: headers, body: ByteBuffer()) }
        let error = takeBody()
        defer { ReceiveBuffers.shared.give(error) }
        return Response(status: status, headers: headers, body: error.byteBuffer())
    }
}
