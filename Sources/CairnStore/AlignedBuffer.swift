import Synchronization

/// Page-aligned memory owned by one object and freed with it: the store's scratch memory (worker
/// contexts, read windows, re-encoded chunks of a bundle), and a buffer that bytes are received
/// into (``count`` bytes in use, ``append(_:)``).
///
/// Page alignment lets the memory go straight to a descriptor opened with `O_DIRECT`.
///
/// ```swift
/// let buffer = BufferPool.shared.take(capacity: 16 << 20)
/// defer { BufferPool.shared.give(buffer) }
/// buffer.append(received)                    // or write into buffer.memory directly
/// try consume(buffer.bytes)
/// ```
package final class AlignedBuffer: @unchecked Sendable {
    // @unchecked Sendable: it owns raw memory, which the compiler cannot check. What makes sharing
    // it safe: it has one user at a time (a worker context lent to one thread, a pipeline stage,
    // a pool), and a user hands it on only through a synchronizing operation (a lock, a queue, a
    // semaphore, the join of a parallel loop). Iterations of one parallel loop may write disjoint
    // ranges of `memory` at once; nothing reads those before the loop has joined. Only the current
    // user calls `reserve`, `append` or sets `count`.

    /// The memory, 4096-byte aligned; replaced by ``reserve(_:)`` when it grows.
    package private(set) var memory: UnsafeMutableRawBufferPointer
    /// Bytes in use from the start of ``memory``, for a buffer being filled (0 for scratch memory).
    package var count = 0

    /// Alignment of ``memory``: a page, and a multiple of every device's logical block size.
    package static let alignment = 4096

    /// A buffer of at least `capacity` bytes (at least 1), none in use.
    package init(capacity: Int) {
        memory = UnsafeMutableRawBufferPointer.allocate(byteCount: Swift.max(capacity, 1), alignment: Self.alignment)
    }

    deinit { memory.deallocate() }

    /// Bytes of ``memory``.
    package var capacity: Int { memory.count }

    /// The ``count`` bytes in use. Do not keep the pointer past the next ``reserve(_:)`` or
    /// ``append(_:)``, or past handing the buffer on.
    package var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: memory[0..<count]) }

    /// Grows ``memory`` to at least `capacity` bytes (exactly that many when it grows), keeping the
    /// ``count`` bytes in use; the rest of its contents is lost.
    package func reserve(_ capacity: Int) {
        guard capacity > memory.count else { return }
        let grown = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: Self.alignment)
        if count > 0 { grown.baseAddress!.copyMemory(from: memory.baseAddress!, byteCount: count) }
        memory.deallocate()
        memory = grown
    }

    /// Makes room for `bytes` more after the ``count`` bytes in use, growing the memory (at least
    /// doubling it) when they do not fit, so that filling a buffer piece by piece copies each byte
    /// a bounded number of times.
    package func reserveRoom(_ bytes: Int) {
        if count + bytes > memory.count { reserve(Swift.max(count + bytes, 2 * memory.count)) }
    }

    /// Appends `raw` after the ``count`` bytes in use, growing the memory (at least doubling it)
    /// when it does not fit.
    package func append(_ raw: UnsafeRawBufferPointer) {
        guard raw.count > 0 else { return }
        reserveRoom(raw.count)
        (memory.baseAddress! + count).copyMemory(from: raw.baseAddress!, byteCount: raw.count)
        count += raw.count
    }
}

/// Large ``AlignedBuffer``s kept for reuse: a fresh multi-megabyte buffer costs a page fault and
/// the zeroing of a page per 4 KiB on its first touch, every time (on a VM, where fresh pages also
/// cost the host, that was a sixth of the CPU time of fetching a model into a cache). A buffer goes back exactly when
/// its user is done with it, and is taken by the size it needs: sizes are rounded up to a granule
/// so that buffers of slightly different sizes are shared.
///
/// ```swift
/// let window = BufferPool.shared.take(capacity: 16 << 20)
/// defer { BufferPool.shared.give(window) }
/// ```
package final class BufferPool: Sendable {
    /// The store's pool (read windows, re-encoded chunks of verified bundles): 8 MiB granules, at
    /// most six kept (two read windows and the bundles being stored).
    package static let shared = BufferPool(granule: 8 << 20, keeping: 6)

    private let free = Mutex<[AlignedBuffer]>([])
    private let granule: Int
    private let limit: Int

    /// A pool rounding sizes up to `granule` bytes and keeping at most `limit` buffers.
    package init(granule: Int, keeping limit: Int) {
        self.granule = granule
        self.limit = limit
    }

    /// A buffer of at least `capacity` bytes with none in use (``AlignedBuffer/count`` 0): the
    /// smallest kept one that is large enough, else the largest kept one grown to `capacity`
    /// rounded up to the granule, else a new one of that size.
    package func take(capacity: Int) -> AlignedBuffer {
        let kept = free.withLock { list -> AlignedBuffer? in
            var best: Int? = nil
            var largest: Int? = nil
            for i in list.indices {
                let size = list[i].capacity
                if size >= capacity, best.map({ size < list[$0].capacity }) ?? true { best = i }
                if largest.map({ size > list[$0].capacity }) ?? true { largest = i }
            }
            guard let i = best ?? largest else { return nil }
            return list.remove(at: i)
        }
        let rounded = (capacity + granule - 1) / granule * granule
        guard let buffer = kept else { return AlignedBuffer(capacity: rounded) }
        buffer.count = 0
        if buffer.capacity < capacity { buffer.reserve(rounded) }
        return buffer
    }

    /// Keeps `buffer` for a later ``take(capacity:)`` (unless the pool is full); its user must
    /// not touch it any more.
    package func give(_ buffer: AlignedBuffer) {
        free.withLock { list in
            if list.count < limit { list.append(buffer) }
        }
    }
}
