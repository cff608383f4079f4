import NIOCore
import Synchronization

/// Page-aligned memory a reply body is received into: `count` bytes of `memory`.
final class ReceiveBuffer: @unchecked Sendable {
    // @unchecked Sendable: a buffer has one owner at a time, and is written only before it is
    // handed on. It is filled by one thread (a socket lane's queue, AsyncHTTPClient's callbacks on
    // one event loop, a cached-file reader), handed to its readers through a lock, a semaphore or a
    // future (each orders the writes before the reads), read by them one at a time and no longer
    // written, then given back to ``ReceiveBuffers``, after which its former owner does not touch
    // it. The compiler cannot check this: raw memory (pointers are not Sendable) is what lets a
    // body be received in place and the buffer be reused; a ByteBuffer is Sendable, but is copied
    // to fresh memory when written while anything else still holds it.
    private(set) var memory: UnsafeMutableRawBufferPointer
    var count = 0

    init(capacity: Int) {
        memory = .allocate(byteCount: max(capacity, 1), alignment: 4096)
    }

    deinit { memory.deallocate() }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: memory[0..<count]) }

    /// Room for `capacity` bytes in all, keeping the bytes received so far.
    func reserve(_ capacity: Int) {
        guard capacity > memory.count else { return }
        let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: max(capacity, 2 * memory.count), alignment: 4096)
        grown.baseAddress!.copyMemory(from: memory.baseAddress!, byteCount: count)
        memory.deallocate()
        memory = grown
    }

    func append(_ raw: UnsafeRawBufferPointer) {
        guard raw.count > 0 else { return }
        reserve(count + raw.count)
        (memory.baseAddress! + count).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        count += raw.count
    }

    func byteBuffer() -> ByteBuffer { ByteBuffer(bytes: bytes) }
}

/// Reply bodies' memory (of ``SocketClient`` and ``PooledReplyCollector``), kept for reuse: a
/// fresh multi-megabyte buffer costs a page fault and the zeroing of a page per 4 KiB on its first
/// touch — on a VM, where fresh pages also cost the host, that was a sixth of a remote pull's CPU
/// time. A body's memory goes back exactly when its reply
/// is done with (unlike a ByteBuffer's, which is replaced when written while anything else still
/// holds it), and a buffer is taken by the size it needs, so bundles of about the same size share
/// them. At most eight are kept.
final class ReceiveBuffers: Sendable {
    static let shared = ReceiveBuffers()
    private let free = Mutex<[ReceiveBuffer]>([])
    /// Sizes are rounded up to this, so that buffers fit bundles of slightly different sizes.
    private static let granule = 1 << 20

    /// An empty buffer of at least `capacity` bytes.
    func take(capacity: Int) -> ReceiveBuffer {
        let kept = free.withLock { list -> ReceiveBuffer? in
            // The smallest that fits, else the largest (which then gets memory of the right size).
            if let i = list.indices.filter({ list[$0].memory.count >= capacity }).min(by: {
                list[$0].memory.count < list[$1].memory.count
            }) {
                return list.remove(at: i)
            }
            guard let i = list.indices.max(by: { list[$0].memory.count < list[$1].memory.count }) else { return nil }
            return list.remove(at: i)
        }
        let rounded = (capacity + Self.granule - 1) / Self.granule * Self.granule
        guard let buffer = kept else { return ReceiveBuffer(capacity: rounded) }
        buffer.count = 0
        buffer.reserve(rounded)
        return buffer
    }

    /// Keeps `buffer` for a later reply; its owner must not use it any more.
    func give(_ buffer: ReceiveBuffer) {
        free.withLock { if $0.count < 8 { $0.append(buffer) } }
    }
}
