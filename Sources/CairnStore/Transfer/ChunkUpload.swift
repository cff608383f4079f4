import Digest
import Foundation

// Chunks received in several bundles, staged into packs and committed in one transaction.

/// Chunks received in several bundles (a remote push's uploads, a remote pull's fetches) staged
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
/// Thread-safe: bundles may be added from several threads (verification runs outside the lock).
/// Until committed, the chunks are invisible; an abandoned upload leaves at most unreferenced packs
/// (garbage collection removes them). GC does not delete packs while an upload is open.
public final class ChunkUpload: @unchecked Sendable {
    // @unchecked Sendable: the writer and the set of staged ids are used under `lock` only.
    public let store: Store
    private let lock = NSLock()
    private let writer: PackWriter
    private var staged = Set<SHA256Digest>()
    private var stagedRawBytes: Int64 = 0
    private var closed = false
    private let lease: StoreLock.Lease

    /// - Parameter bypassesPageCache: write packs with direct I/O where the file system allows it,
    ///   else drop their pages from the page cache once on disk (a cache being filled: its packs
    ///   are not read again soon).
    public init(store: Store, bypassesPageCache: Bool = false) throws {
        self.store = store
        writer = PackWriter(root: store.root, targetSize: store.config.packSize, bypassesPageCache: bypassesPageCache)
        lease = try StoreLock.sharedPushLease(root: store.root)
    }

    deinit {
        if !closed { writer.abandon() }
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Verifies every chunk of a bundle (nothing is kept if one does not match its id) and stages
    /// those neither indexed nor staged yet. `newChunks`/`newBytes` count what was staged.
    ///
    /// - Throws: ``CairnStoreError`` as ``Store/storeChunks(bundle:compressRaw:onVerified:)`` does;
    ///   `.conflict` after the upload was committed or abandoned.
    ///
    /// With `assignIDs`, chunks sent with an all-zero id get the SHA-256 of their bytes as id, and
    /// the result lists every chunk's id in bundle order (a sender that did not hash them).
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

    /// The first half of ``add(bundle:compressRaw:onVerified:)``: verifies every chunk (in
    /// parallel, outside the upload's lock), so one bundle can be verified while the previous one
    /// is written by ``stage(_:bundle:)``.
    ///
    /// - Parameter decodeInto: where to decode a compressed chunk, given its id and raw length: the
    ///   caller's memory of exactly that length, or nil for scratch memory. `onVerified` then gets
    ///   those bytes. Called from several threads at once, never twice for one entry.
    public func verify(
        bundle: UnsafeRawBufferPointer,
        compressRaw: Bool = true,
        decodeInto: ((SHA256Digest, Int) -> UnsafeMutableRawBufferPointer?)? = nil,
        onVerified: ((SHA256Digest, UnsafeRawBufferPointer) throws -> Void)? = nil
    ) throws -> VerifiedBundle {
        try store.verifyBundle(bundle, compressRaw: compressRaw, decodeInto: decodeInto, onVerified: onVerified)
    }

    /// The second half of ``add(bundle:compressRaw:onVerified:)``: stages the verified chunks that
    /// are neither indexed nor staged yet. `bundle` must be the same bytes `verify` saw.
    @discardableResult
    public func stage(_ verified: VerifiedBundle, bundle: UnsafeRawBufferPointer) throws -> ChunkStoreResult {
        guard verified.stageable else {
            throw CairnStoreError(
                .invalidArgument,
                "a bundle whose deltas were rebuilt without keeping them cannot be stored"
            )
        }
        let absent = Set(try store.missingChunks(verified.entries.map(\.id)))
        return try locked {
            guard !closed else { throw CairnStoreError(.conflict, "this upload was already committed or abandoned") }
            let (count, raw) = try verified.append(to: writer, bundle: bundle) {
                absent.contains($0) && !staged.contains($0)
            }
            for e in verified.entries where absent.contains(e.id) { staged.insert(e.id) }
            stagedRawBytes += raw
            return ChunkStoreResult(received: verified.entries.count, newChunks: count, newBytes: raw, storedBytes: 0)
        }
    }

    /// Whether chunk `id` was staged by this upload.
    public func contains(_ id: SHA256Digest) -> Bool { locked { staged.contains(id) } }

    /// Raw bytes staged so far.
    public var stagedBytes: Int64 { locked { stagedRawBytes } }

    /// Seals the packs, then in ONE index transaction indexes the staged chunks, checks that every
    /// chunk `manifest` references is indexed, stores the manifest and runs `body` (as
    /// ``Store/commit(_:_:)`` does for a local push). `info.newBytes` counts the staged chunks that
    /// were new to the index.
    ///
    /// - Throws: ``MissingChunksError`` when chunks are neither staged nor indexed (nothing is
    ///   written; add them and commit again); ``CairnStoreError``; errors from `body`.
    public func commit<T>(manifest: Manifest, _ body: (MetadataTransaction, CommitInfo) throws -> T) throws -> T {
        try locked {
            guard !closed else { throw CairnStoreError(.conflict, "this upload was already committed or abandoned") }
            var referenced: [SHA256Digest] = []
            var seen = Set<SHA256Digest>()
            for file in manifest.files {
                for chunk in file.chunks where !staged.contains(chunk.id) && seen.insert(chunk.id).inserted {
                    referenced.append(chunk.id)
                }
            }
            let missing = try store.missingChunks(referenced)
            if !missing.isEmpty { throw MissingChunksError(ids: missing) }
            do {
                try writer.finish()
            } catch {
                closed = true
                writer.abandon()
                throw error
            }
            closed = true
            let stagedIngest = StagedIngest(
                manifest: manifest,
                manifestID: manifest.id,
                writtenRawBytes: stagedRawBytes,
                writtenPackBytes: writer.bytesWritten,
                packs: writer.sealed,
                written: writer.written,
                sources: [:],
                lease: lease
            )
            return try store.commit(stagedIngest, body)
        }
    }

    /// Seals the packs and indexes the staged chunks in one transaction, without a manifest (a
    /// pull's cache). Returns what was added.
    @discardableResult
    public func commitChunks() throws -> ChunkStoreResult {
        try locked {
            guard !closed else { throw CairnStoreError(.conflict, "this upload was already committed or abandoned") }
            closed = true
            do {
                try writer.finish()
            } catch {
                writer.abandon()
                throw error
            }
            let (chunks, bytes, stored) = try store.indexWritten(writer)
            return ChunkStoreResult(received: staged.count, newChunks: chunks, newBytes: bytes, storedBytes: stored)
        }
    }

    /// Drops what was staged (the packs already sealed stay unreferenced until GC).
    public func abandon() {
        locked {
            if !closed {
                closed = true
                writer.abandon()
            }
        }
    }
}
