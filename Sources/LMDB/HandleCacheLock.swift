import Synchronization

/// A small lock for the environment's handle cache.
final class HandleCacheLock: Sendable {
    private let mutex = Mutex<Void>(())

    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        try mutex.withLock { _ in try body() }
    }
}
