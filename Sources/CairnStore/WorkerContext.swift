import Digest
import Dispatch
import Synchronization
import Zstd

/// Per-thread resources of the parallel stages: a SHA-256 context, zstd contexts and scratch
/// buffers. Creating these per chunk would cost more than the chunk's work, so a pool lends them out.
final class WorkerContext: @unchecked Sendable {
    // @unchecked Sendable: lent to one thread at a time by WorkerPool.
    let hasher = SHA256Hasher()
    let compressor: ZstdCompressor
    let decompressor = ZstdDecompressor()
    /// Pack bytes read by one read span (grows to the largest span, at most a few MiB).
    let readBuffer = AlignedBuffer(capacity: 1 << 20)
    /// One decompressed chunk (up to the maximum chunk size).
    let scratch: AlignedBuffer
    /// Byte planes of one chunk being encoded or decoded.
    let planes: AlignedBuffer
    /// The decoded reference chunk of a delta.
    let reference: AlignedBuffer
    /// The stored record of a reference chunk (read separately from a span's buffer).
    let referenceRecord = AlignedBuffer(capacity: 1 << 18)
    /// Input and output of a delta candidate during ingest.
    let deltaInput: AlignedBuffer
    let deltaOutput: AlignedBuffer
    /// zstd for byte planes, tuned for low-entropy bytes (see ``ZstdCompressor/entropyTuned()``).
    let planeCompressor = ZstdCompressor.entropyTuned()

    init(level: Int32, maxChunk: Int) {
        compressor = ZstdCompressor(level: level)
        scratch = AlignedBuffer(capacity: maxChunk)
        planes = AlignedBuffer(capacity: maxChunk)
        reference = AlignedBuffer(capacity: maxChunk)
        deltaInput = AlignedBuffer(capacity: maxChunk)
        deltaOutput = AlignedBuffer(capacity: ByteGrouping.bound(maxChunk, elementSize: 4) + 32)
    }
}

/// Lends ``WorkerContext``s to threads; contexts are created on demand and reused.
final class WorkerPool: Sendable {
    private let free = Mutex<[WorkerContext]>([])
    private let level: Int32
    private let maxChunk: Int

    init(level: Int32, maxChunk: Int) {
        self.level = level
        self.maxChunk = maxChunk
    }

    func withContext<T>(_ body: (WorkerContext) throws -> T) rethrows -> T {
        let context = free.withLock { $0.popLast() } ?? WorkerContext(level: level, maxChunk: maxChunk)
        defer { free.withLock { $0.append(context) } }
        return try body(context)
    }
}

/// Holds the first error thrown by any iteration of a parallel loop.
final class FirstError: Sendable {
    private let error = Mutex<(any Error)?>(nil)

    var isSet: Bool { error.withLock { $0 != nil } }

    func record(_ e: any Error) {
        error.withLock { if $0 == nil { $0 = e } }
    }

    func rethrow() throws {
        if let e = error.withLock({ $0 }) { throw e }
    }
}

/// Runs `body(i)` for i in 0..<iterations on all cores (`DispatchQueue.concurrentPerform`, which
/// hands out indices in order and dynamically) and returns when every iteration has finished.
///
/// The closure is not `@Sendable`: callers guarantee that iterations touch disjoint state or
/// synchronized state only (each pipeline stage documents which). Indices are started in order, so
/// long tasks placed first start first.
func parallelFor(_ iterations: Int, _ body: (Int) -> Void) {
    guard iterations > 0 else { return }
    if iterations == 1 {
        body(0)
        return
    }
    withoutActuallyEscaping(body) { escapable in
        let box = UncheckedSendableBox(escapable)
        DispatchQueue.concurrentPerform(iterations: iterations) { box.value($0) }
    }
}

/// Runs `background` on a thread of its own while `foreground` runs on this one, and returns when
/// both are done: for blocking I/O next to ``parallelFor(_:_:)``, which it would otherwise slow by
/// holding one of its CPU-bound workers while it waits for the disk.
func alongside(_ background: () -> Void, _ foreground: () -> Void) {
    withoutActuallyEscaping(background) { escapable in
        // The block holds the slot, not the closure, which is dropped before `done` is signalled:
        // nothing may keep it once withoutActuallyEscaping returns.
        let slot = ClosureSlot(escapable)
        let done = DispatchSemaphore(value: 0)
        // A serial queue of its own: dispatch gives it a thread even when every worker is busy.
        DispatchQueue(label: "cairn.io").async {
            slot.body?()
            slot.body = nil
            done.signal()
        }
        foreground()
        done.wait()
    }
}

private final class ClosureSlot: @unchecked Sendable {
    // @unchecked Sendable: set before the block is queued, used and cleared by that block only.
    var body: (() -> Void)?
    init(_ body: @escaping () -> Void) { self.body = body }
}

private struct UncheckedSendableBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
