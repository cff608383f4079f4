import Digest
import Synchronization
import Zstd

/// Per-thread resources of the parallel stages: a SHA-256 context, zstd contexts and scratch
/// buffers. Creating these per chunk would cost more than the chunk's work, so a pool lends them out.
///
/// Its members are used by one thread at a time (their own Sendable conformances say so): a
/// context is only reachable through ``WorkerPool/withContext(_:)``, which lends it to one closure.
final class WorkerContext: Sendable {
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

/// Lends ``WorkerContext``s to threads; contexts are created on demand and reused. The contexts it
/// keeps are guarded by its lock; one taken out is used by one closure, on one thread, until it
/// is put back.
final class WorkerPool: Sendable {
    private let free = Mutex<[WorkerContext]>([])
    private let level: Int32
    private let maxChunk: Int

    init(level: Int32, maxChunk: Int) {
        self.level = level
        self.maxChunk = maxChunk
    }

    /// Calls `body` with a context of its own (a free one, or a new one); the context goes back to
    /// the pool when `body` returns. `body` must not keep it.
    func withContext<T>(_ body: (WorkerContext) throws -> T) rethrows -> T {
        let context = free.withLock { $0.popLast() } ?? WorkerContext(level: level, maxChunk: maxChunk)
        defer { free.withLock { $0.append(context) } }
        return try body(context)
    }
}
