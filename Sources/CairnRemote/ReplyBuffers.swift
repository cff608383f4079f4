import CairnStore
import NIOCore

extension BufferPool {
    /// Reply bodies' memory (of ``SocketClient``, ``PooledReplyCollector`` and cached-file
    /// bundles), kept for reuse: a fresh multi-megabyte buffer costs a page fault and the zeroing
    /// of a page per 4 KiB on its first touch — on a VM, where fresh pages also cost the host, that
    /// was a sixth of a remote pull's CPU time. Sizes round up to 1 MiB, at most eight are kept.
    ///
    /// A reply buffer has one owner at a time and is written only before it is handed on: it is
    /// filled by one thread (a socket lane's queue, AsyncHTTPClient's callbacks on one event loop,
    /// a cached-file reader), handed to its readers through a lock, a semaphore or a future (each
    /// orders the writes before the reads), read by them and no longer written, then given back
    /// here, after which its former owner does not touch it.
    static let replies = BufferPool(granule: 1 << 20, keeping: 8)
}

extension AlignedBuffer {
    /// A copy of the bytes in use, for code that needs a ByteBuffer.
    func byteBuffer() -> ByteBuffer { ByteBuffer(bytes: bytes) }
}
