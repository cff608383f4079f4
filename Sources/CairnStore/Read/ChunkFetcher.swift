import Digest
import Synchronization

// Where a read gets the chunks its store's packs lack: one protocol for every kind of fetcher
// (another store, a cache's own files, anything that can produce chunk bundles).

/// A fetcher of the chunks a store lacks: with one, ``Store/restore(_:to:context:progress:fetcher:keepsFetched:)``
/// treats the store as a cache, fetching what its packs do not hold as the files are written and
/// verifying every fetched chunk like a stored one.
///
/// Only ``startFetch(_:)`` is required. A fetcher may also keep local copies of chunks (files
/// written earlier, say): it hands them out as bundles whose ``PendingBundle/isKeptLocally`` is
/// true, lets a read drop a copy that fails to verify (``dropLocalCopy(of:)``), and gives a read
/// the reference of a delta the store does not hold (``readLocalCopy(of:into:)``). A fetcher that
/// sends deltas stops when one cannot be rebuilt (``stopFetchingDeltas()``).
///
/// ```swift
/// final class Bytes: PendingBundle {
///     let bytes: [UInt8]
///     init(_ bytes: [UInt8]) { self.bytes = bytes }
///     func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T { try bytes.withUnsafeBytes(body) }
/// }
/// struct FromStore: ChunkFetcher {
///     let source: Store
///     func startFetch(_ chunks: [ChunkRef]) throws -> [any PendingBundle] {
///         [Bytes(try source.exportChunks(chunks.map(\.id), maxBytes: 64 << 20))]
///     }
/// }
/// try cache.restore(manifest.files, to: "/tmp/out", fetcher: FromStore(source: origin))
/// ```
public protocol ChunkFetcher: Sendable {
    /// Starts fetching `chunks` (each once) as bundles (``ChunkBundle``), split as the fetcher's own
    /// limits require; returns without waiting for them.
    ///
    /// - Throws: whatever keeps the fetch from starting; the restore fails with it.
    func startFetch(_ chunks: [ChunkRef]) throws -> [any PendingBundle]

    /// Drops the local copy `chunk` was read from, which did not verify, so that a read started
    /// again fetches the chunk anew; returns whether there was such a copy. The default has none.
    ///
    /// - Throws: when the copy cannot be dropped; the restore fails with it.
    func dropLocalCopy(of chunk: SHA256Digest) throws -> Bool

    /// Reads the raw bytes of `chunk` from a local copy into `target` (exactly its length), if the
    /// fetcher keeps one: the reference of a delta it fetched, which the store does not hold. The
    /// bytes are not verified here (the chunk rebuilt from them is). The default keeps none.
    func readLocalCopy(of chunk: SHA256Digest, into target: UnsafeMutableRawBufferPointer) -> Bool

    /// Stops fetching chunks as deltas (one could not be rebuilt here: its reference is neither
    /// stored nor kept locally, or gave other bytes); returns whether it fetched deltas.
    /// The default never does.
    func stopFetchingDeltas() -> Bool
}

extension ChunkFetcher {
    /// No local copies: returns false (never throws).
    ///
    /// - Throws: never.
    public func dropLocalCopy(of chunk: SHA256Digest) throws -> Bool { false }

    /// No local copies: returns false.
    public func readLocalCopy(of chunk: SHA256Digest, into target: UnsafeMutableRawBufferPointer) -> Bool { false }

    /// Never fetches deltas: returns false.
    public func stopFetchingDeltas() -> Bool { false }

    /// Runs `verify` on `bundle`'s bytes. When a chunk does not verify, the error no longer names
    /// it as a damaged chunk of the store (it came from this fetcher); if the bundle was read from
    /// a local copy, that copy is dropped and the error says so (``CairnStoreError/droppedSource``):
    /// the read can start again, fetching those chunks.
    package func verifying<T>(_ bundle: any PendingBundle, _ verify: () throws -> T) throws -> T {
        do {
            return try verify()
        } catch var error as CairnStoreError {
            guard let chunk = error.damagedChunk else { throw error }
            error.damagedChunk = nil
            if bundle.isKeptLocally, try dropLocalCopy(of: chunk) { error.droppedSource = true }
            throw error
        }
    }
}

/// A bundle of chunks (``ChunkBundle``) on its way from a ``ChunkFetcher``.
public protocol PendingBundle: AnyObject, Sendable {
    /// Waits for the bundle, then calls `body` with its bytes (valid during the call; the same
    /// bytes on every call). Do not keep the pointer past the call.
    ///
    /// - Throws: the fetch's error if the bundle did not arrive; errors thrown by `body`.
    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T

    /// Whether the bundle was read from the fetcher's local copies: a restore does not stage its
    /// chunks into the store (they are kept already), and drops the copy of one that does not
    /// verify (``ChunkFetcher/dropLocalCopy(of:)``).
    var isKeptLocally: Bool { get }
}

extension PendingBundle {
    /// Not read from local copies: returns false.
    public var isKeptLocally: Bool { false }
}

extension Store {
    /// Gives the raw bytes of a delta's reference chunk (id, length), valid until the context is
    /// used again, or nil when it is not held.
    typealias ReferenceSource = (SHA256Digest, Int, WorkerContext) -> UnsafeRawBufferPointer?

    /// A chunk that came as a delta and could not be rebuilt here: its reference is not held
    /// (`referenceDiffers` false) or gave other bytes.
    struct UnbuiltDelta: Sendable {
        var chunk: ChunkRef
        var reference: SHA256Digest
        var referenceDiffers: Bool
    }

    /// The deltas of a verification that could not be rebuilt (added from several threads).
    final class UnbuiltDeltas: Sendable {
        private let list = Mutex<[UnbuiltDelta]>([])
        func add(_ delta: UnbuiltDelta) { list.withLock { $0.append(delta) } }
        var all: [UnbuiltDelta] { list.withLock { $0 } }
    }
}
