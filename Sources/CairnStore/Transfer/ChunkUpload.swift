import Digest
import Synchronization

// Chunks received in several bundles, staged into packs and committed in one transaction.

/// Chunks received in several bundles (a tree pushed from elsewhere, chunks fetched into a cache) staged
/// into packs like a local push stages a tree, and committed with the manifest that references
/// them in ONE index transaction (``commit(manifest:_:)``), or indexed on their own
/// (``commitChunks()``). Packs are sealed (fsynced) at the store's pack size and before the commit,
/// so chunks are durable before anything references them, and no fsync is paid per bundle.
///
/// ```swift
/// let upload = try ChunkUpload(store: store)
/// for bundle in bundles { try upload.add(bundle: bundle) }        // each verified before it is written
/// let id = try upload.commit(manifest: manifest) { txn, info in info.manifestID }
/// ```
///
/// Thread-safe: bundles may be added from several threads (verification runs outside the lock,
/// which guards the pack writer and the staged ids).
/// Until committed, the chunks are invisible; an abandoned upload leaves at most unreferenced packs
/// (garbage collection removes them). GC does not delete packs while an upload is open.
public final class ChunkUpload: Sendable {
    /// The store the chunks are staged into.
    public let store: Store
    /// Held while the upload is open: GC does not delete unreferenced packs (these) meanwhile.
    private let lease: StoreLock.Lease
    private let state: Mutex<State>

    /// What the lock guards: the pack writer and what was staged through it.
    private struct State {
        let writer: PackWriter
        var staged = Set<SHA256Digest>()
        var stagedRawBytes: Int64 = 0
        /// Committed or abandoned: nothing more can be staged.
        var closed = false

        func checkOpen() throws {
            guard !closed else { throw CairnStoreError(.conflict, "this upload was already committed or abandoned") }
        }

        /// Seals the open pack and closes the upload (abandoning the pack if sealing fails).
        mutating func seal() throws {
            closed = true
            do {
                try writer.finish()
            } catch {
                writer.abandon()
                throw error
            }
        }
    }

    /// Opens an upload into `store`: a shared push lease is held until it is released, so that a
    /// garbage collection leaves its packs alone.
    ///
    /// - Parameter bypassesPageCache: write packs with direct I/O where the file system allows it,
    ///   else drop their pages from the page cache once on disk (a cache being filled: its packs
    ///   are not read again soon).
    /// - Throws: ``CairnStoreError`` with `.io` when the store's lock cannot be taken.
    public init(store: Store, bypassesPageCache: Bool = false) throws {
        self.store = store
        lease = try StoreLock.sharedPushLease(root: store.root)
        let writer = PackWriter(
            root: store.root,
            targetSize: store.config.packSize,
            bypassesPageCache: bypassesPageCache
        )
        state = Mutex(State(writer: writer))
    }

    /// Verifies every chunk of a bundle (nothing is kept if one does not match its id) and stages
    /// those neither indexed nor staged yet. `newChunks`/`newBytes` count what was staged.
    ///
    /// With `assignIDs`, chunks sent with an all-zero id get the SHA-256 of their bytes as id, and
    /// the result lists every chunk's id in bundle order (a sender that did not hash them).
    ///
    /// - Parameter onVerified: called with each chunk's id and raw bytes once they are verified,
    ///   from several threads at once.
    /// - Throws: ``CairnStoreError`` as ``Store/storeChunks(bundle:compressRaw:onVerified:)`` does;
    ///   `.conflict` after the upload was committed or abandoned.
    @discardableResult
    public func add(
        bundle: UnsafeRawBufferPointer,
        compressRaw: Bool = true,
        assignIDs: Bool = false,
        onVerified: ((SHA256Digest, UnsafeRawBufferPointer) throws -> Void)? = nil
    ) throws -> ChunkStoreResult {
        let verified = try store.verifyBundle(
            bundle,
            compressRaw: compressRaw,
            assignIDs: assignIDs,
            onVerified: onVerified
        )
        var result = try stage(verified, bundle: bundle)
        if assignIDs { result.ids = verified.ids.map(\.hex) }
        return result
    }

    /// The first half of ``add(bundle:compressRaw:assignIDs:onVerified:)``: verifies every chunk
    /// (in parallel, outside the upload's lock), so one bundle can be verified while the previous
    /// one is written by ``stage(_:bundle:)``.
    ///
    /// - Parameter decodeInto: where to decode a compressed chunk, given its id and raw length: the
    ///   caller's memory of exactly that length, or nil for scratch memory. `onVerified` then gets
    ///   those bytes. Called from several threads at once, never twice for one entry.
    /// - Throws: ``CairnStoreError`` as ``Store/storeChunks(bundle:compressRaw:onVerified:)`` does.
    package func verify(
        bundle: UnsafeRawBufferPointer,
        compressRaw: Bool = true,
        decodeInto: ((SHA256Digest, Int) -> UnsafeMutableRawBufferPointer?)? = nil,
        onVerified: ((SHA256Digest, UnsafeRawBufferPointer) throws -> Void)? = nil
    ) throws -> VerifiedBundle {
        try store.verifyBundle(bundle, compressRaw: compressRaw, decodeInto: decodeInto, onVerified: onVerified)
    }

    /// The second half of ``add(bundle:compressRaw:assignIDs:onVerified:)``: stages the verified
    /// chunks that are neither indexed nor staged yet. `bundle` must be the same bytes `verify` saw.
    ///
    /// - Throws: ``CairnStoreError``: `.conflict` after the upload was committed or abandoned,
    ///   `.invalidArgument` for a bundle verified without keeping its rebuilt deltas, `.io`.
    @discardableResult
    package func stage(_ verified: VerifiedBundle, bundle: UnsafeRawBufferPointer) throws -> ChunkStoreResult {
        guard verified.stageable else {
            throw CairnStoreError(
                .invalidArgument,
                "a bundle whose deltas were rebuilt without keeping them cannot be stored"
            )
        }
        let absent = Set(try store.missingChunks(verified.entries.map(\.id)))
        let borrowed = BorrowedBytes(bytes: bundle)
        return try state.withLock { state in
            try state.checkOpen()
            let (count, raw) = try verified.append(to: state.writer, bundle: borrowed.bytes) {
                absent.contains($0) && !state.staged.contains($0)
            }
            for e in verified.entries where absent.contains(e.id) { state.staged.insert(e.id) }
            state.stagedRawBytes += raw
            return ChunkStoreResult(received: verified.entries.count, newChunks: count, newBytes: raw, storedBytes: 0)
        }
    }

    /// Whether chunk `id` was staged by this upload.
    public func contains(_ id: SHA256Digest) -> Bool { state.withLock { $0.staged.contains(id) } }

    /// Raw bytes staged so far.
    public var stagedBytes: Int64 { state.withLock { $0.stagedRawBytes } }

    /// Seals the packs, then in ONE index transaction indexes the staged chunks, checks that every
    /// chunk `manifest` references is indexed, stores the manifest and runs `body` (as
    /// ``Store/commit(_:_:)`` does for a local push). `info.newBytes` counts the staged chunks that
    /// were new to the index.
    ///
    /// - Throws: ``MissingChunksError`` when chunks are neither staged nor indexed (nothing is
    ///   written and the upload stays open: add them and commit again); ``CairnStoreError`` with
    ///   `.conflict` after the upload was committed or abandoned, `.io`; errors from `body`.
    public func commit<T>(manifest: Manifest, _ body: (MetadataTransaction, CommitInfo) throws -> T) throws -> T {
        let staged = try state.withLock { state -> StagedIngest in
            try state.checkOpen()
            let missing = try store.missingChunks(manifest.chunkIDs(excluding: state.staged))
            if !missing.isEmpty { throw MissingChunksError(ids: missing) }
            try state.seal()
            return StagedIngest(
                manifest: manifest,
                manifestID: manifest.id,
                writtenRawBytes: state.stagedRawBytes,
                writtenPackBytes: state.writer.bytesWritten,
                packs: state.writer.sealed,
                written: state.writer.written,
                sources: [:],
                lease: lease
            )
        }
        return try store.commit(staged, body)
    }

    /// Seals the packs and indexes the staged chunks in one transaction, without a manifest (a
    /// cache's chunks). Returns what was added.
    ///
    /// - Throws: ``CairnStoreError``: `.conflict` after the upload was committed or abandoned, `.io`.
    @discardableResult
    public func commitChunks() throws -> ChunkStoreResult {
        try state.withLock { state in
            try state.checkOpen()
            try state.seal()
            let (chunks, bytes, stored) = try store.indexWritten(state.writer)
            return ChunkStoreResult(
                received: state.staged.count,
                newChunks: chunks,
                newBytes: bytes,
                storedBytes: stored
            )
        }
    }

    /// Drops what was staged (the packs already sealed stay unreferenced until GC).
    public func abandon() {
        state.withLock { state in
            if !state.closed {
                state.closed = true
                state.writer.abandon()
            }
        }
    }
}

/// A bundle's bytes taken into the upload's locked state for the length of one call
/// (``ChunkUpload/stage(_:bundle:)``).
private struct BorrowedBytes: @unchecked Sendable {
    // @unchecked Sendable: a raw pointer, which the compiler does not let into the lock's region.
    // What makes it safe: the bytes are only read, only during the call that borrowed them (the
    // caller keeps them alive and unchanged meanwhile), and the pack writer copies them into its
    // own buffer, keeping no pointer.
    let bytes: UnsafeRawBufferPointer
}
