import AsyncHTTPClient
import CairnAPI
import CairnStore
import NIOCore
import NIOHTTP1
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
            return FetchedBundle(
                remote: remote,
                future: try remote.start(
                    .POST,
                    "/v1/chunks/fetch" + (deltas ? "?deltas=1" : ""),
                    body: .bytes(ChunkIDList.encode(batch)),
                    contentType: "application/octet-stream",
                    collector: PooledReplyCollector()
                )
            )
        }
    }
}

/// A `POST /v1/chunks/fetch` through AsyncHTTPClient on its way, read by a
/// ``PooledReplyCollector``. The bundle's buffer is kept once waited for and goes back to
/// ``BufferPool/replies`` with the fetch.
final class FetchedBundle: PendingBundle {
    private let remote: RemoteRegistry
    private let future: EventLoopFuture<PooledReplyCollector.Collected>
    /// The bundle, once waited for (the lock is not contended: a restore reads a bundle, then
    /// stages it, one after the other).
    private let bundle = Mutex<AlignedBuffer?>(nil)

    init(remote: RemoteRegistry, future: EventLoopFuture<PooledReplyCollector.Collected>) {
        self.remote = remote
        self.future = future
    }

    deinit {
        if let bundle = bundle.withLock({ $0 }) { BufferPool.replies.give(bundle) }
    }

    /// Waits for the bundle (blocking; see "Blocking calls" on ``RemoteRegistry``), then calls
    /// `body` with its bytes; throws the server's error for an error reply.
    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        let buffer = try bundle.withLock { kept in
            if let kept { return kept }
            let collected = try remote.wait(for: future)
            guard let fetched = collected.bundle else { throw RemoteRegistry.error(from: collected.reply) }
            kept = fetched
            return fetched
        }
        return try body(buffer.bytes)
    }
}

/// Collects a reply into a buffer from ``BufferPool/replies``, sized by its Content-Length
/// (AsyncHTTPClient's default collector grows a fresh buffer per reply, whose pages are faulted in
/// anew each time). The buffer comes with the reply (``Collected/bundle``) for its owner to give
/// back.
final class PooledReplyCollector: HTTPClientResponseDelegate {
    /// A reply as collected: a successful one's body in a pooled buffer, an error reply's (small)
    /// in ``RemoteRegistry/Reply/body``.
    struct Collected {
        var reply: RemoteRegistry.Reply
        /// The body of a reply with a status below 400; nil for an error reply.
        var bundle: AlignedBuffer?
    }

    typealias Response = Collected

    /// What has arrived so far.
    private struct Arrived {
        var status = 0
        var headers = HTTPHeaders()
        var body: AlignedBuffer?
    }

    /// Written by AsyncHTTPClient's callbacks, one after the other on the request's event loop:
    /// the lock is never contended.
    private let arrived = Mutex(Arrived())

    func didReceiveHead(task: HTTPClient.Task<Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        let length = head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0
        arrived.withLock {
            $0.status = Int(head.status.code)
            $0.headers = head.headers
            $0.body = BufferPool.replies.take(capacity: length)
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Response>, _ part: ByteBuffer) -> EventLoopFuture<Void> {
        arrived.withLock { arrived in
            let body = arrived.body ?? BufferPool.replies.take(capacity: part.readableBytes)
            arrived.body = body
            part.withUnsafeReadableBytes { body.append($0) }
        }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Response>) throws -> Response {
        let (status, headers, body) = arrived.withLock { arrived in
            defer { arrived.body = nil }
            return (arrived.status, arrived.headers, arrived.body ?? BufferPool.replies.take(capacity: 0))
        }
        guard status >= 400 else {
            return Collected(reply: .init(status: status, headers: headers, body: ByteBuffer()), bundle: body)
        }
        // Error replies are small: they carry their body, and the buffer goes back at once.
        defer { BufferPool.replies.give(body) }
        return Collected(reply: .init(status: status, headers: headers, body: body.byteBuffer()), bundle: nil)
    }
}
