import NIOCore
import Synchronization

/// Buffers of chunk bundles sent in replies to fetches where the connection cannot send file bodies
/// (``FileBodies``; a router under test), kept for reuse: bundles are megabytes
/// each, and a fresh buffer per request costs a page fault per 4 KiB. At most four are kept. A
/// buffer given back while something still holds it (a reply still being sent) gets new storage
/// on its next use, never shared.
final class FetchReplyBuffers: Sendable {
    private let free = Mutex<[ByteBuffer]>([])

    /// An empty buffer of at least `capacity` bytes.
    func take(capacity: Int) -> ByteBuffer {
        var buffer = free.withLock { $0.popLast() } ?? ByteBufferAllocator().buffer(capacity: capacity)
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Gives back a buffer taken with ``take(capacity:)`` once nothing reads it any more.
    func recycle(_ buffer: ByteBuffer) {
        free.withLock { if $0.count < 4 { $0.append(buffer) } }
    }
}
