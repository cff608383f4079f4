import NIOPosix

/// The threads that run the server's blocking work: every LMDB transaction (reads included), the
/// audit log's hash-chain walk, pack and file I/O, fsyncs.
///
/// None of that may run where requests are served. Hummingbird runs route handlers and middleware
/// as tasks on Swift's cooperative pool, one thread per core (two on the machines we measure on),
/// and connections on NIO's event loops: a thread blocked there in a read transaction, a commit or
/// an audit walk stalls every request queued behind it. A handoff costs a few microseconds, so
/// only what answers from memory (the caches of ``GenerationCache``) stays on the caller's thread.
final class BlockingWork: Sendable {
    private let pool: NIOThreadPool

    /// Starts `threads` threads (at least 2).
    init(threads: Int) {
        pool = NIOThreadPool(numberOfThreads: max(2, threads))
        pool.start()
    }

    deinit {
        pool.shutdownGracefully { _ in }
    }

    /// Runs `body` on one of the threads and returns what it returns.
    ///
    /// - Throws: what `body` throws; NIO's `NIOThreadPoolError.ThreadPoolInactive` once the pool is
    ///   shut down.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }
}
