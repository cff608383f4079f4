import Digest
import Dispatch
import Synchronization

/// The side of a restore that fills in the chunks its store lacks, through a ``ChunkFetcher``
/// (``Store/restore(_:to:context:progress:fetcher:keepsFetched:)``): per read window, the chunks the
/// store lacks are fetched (later windows' while this one is decoded), verified, copied into the
/// window and handed to ``stager``, which stages them into the store's packs; the store indexes
/// them when the restore is done. Fetched chunks that the restore needs again later are kept in
/// memory (up to ``keepLimit`` bytes), as the store cannot read staged chunks before they are indexed.
///
/// Not Sendable: used by the read loop's thread only. What other threads touch — the kept chunks
/// (from verification's worker threads) and the stager (from the window writer's thread) — are
/// Sendable objects of their own.
final class MissingChunkFill {
    let fetcher: any ChunkFetcher
    let store: Store
    /// Stages verified bundles into the store on a thread of its own.
    let stager: FetchedBundleStager
    /// Fetched chunks needed again by a later window.
    private let kept = KeptChunks(limit: MissingChunkFill.keepLimit)
    /// Occurrences of each chunk in the files still to be written.
    private var remaining: [SHA256Digest: Int] = [:]
    /// Chunks whose fetch has been started (by an earlier window or this one).
    private var requested = Set<SHA256Digest>()
    /// Windows started ahead of their file's read, by file path and first missing chunk.
    private var startedAhead: [String: Window] = [:]
    /// Whether fetched chunks are staged into the store (not when the caller keeps the restored
    /// files themselves as the cache's copy). Deltas are fetched only where nothing is staged
    /// (their references may not be stored).
    let keepsFetched: Bool

    static let keepLimit = 64 << 20

    init(store: Store, files: [FileEntry], fetcher: any ChunkFetcher, keepsFetched: Bool) throws {
        self.fetcher = fetcher
        self.store = store
        self.keepsFetched = keepsFetched
        stager = FetchedBundleStager(
            upload: try ChunkUpload(store: store, bypassesPageCache: true),
            staging: keepsFetched
        )
        for file in files {
            for chunk in file.chunks { remaining[chunk.id, default: 0] += 1 }
        }
    }

    /// A window's chunks that the store lacks: where each goes, and the fetches for those not
    /// requested by an earlier window.
    struct Window {
        /// Chunk indices in the file, by id.
        var places: [SHA256Digest: [Int]] = [:]
        var bundles: [any PendingBundle] = []
        /// Ids fetched for this window.
        var fetched: [SHA256Digest] = []
        /// Chunks an earlier window fetches: taken from the kept ones (or fetched again if they
        /// were not kept).
        var earlier: [ChunkRef] = []
    }

    /// A fetched bundle and its verified chunks, to be staged.
    typealias Verified = (bundle: any PendingBundle, verified: VerifiedBundle)

    /// Starts fetching what chunks `missing` (indices into `file.chunks`) need. Windows must be
    /// started and filled in the same order. A window started `ahead` (by the read of a file
    /// before its own) is kept until its own file's read starts it again, which returns it.
    func start(_ file: FileEntry, missing: [Int], ahead: Bool = false) throws -> Window {
        let key = "\(missing[0])/\(file.path)"
        if ahead, let window = startedAhead[key] { return window }  // by the read of an earlier file
        if !ahead, let window = startedAhead.removeValue(forKey: key) { return window }
        let window = try startFetching(file, missing: missing)
        if ahead { startedAhead[key] = window }
        return window
    }

    private func startFetching(_ file: FileEntry, missing: [Int]) throws -> Window {
        var window = Window()
        var wanted: [ChunkRef] = []
        for i in missing {
            let chunk = file.chunks[i]
            if window.places[chunk.id] == nil {
                // In file order, each once.
                if requested.insert(chunk.id).inserted { wanted.append(chunk) } else { window.earlier.append(chunk) }
            }
            window.places[chunk.id, default: []].append(i)
        }
        window.fetched = wanted.map(\.id)
        if !wanted.isEmpty { window.bundles = try fetcher.startFetch(wanted) }
        return window
    }

    /// Fills the window's places from kept chunks and fetched bundles (verifying every chunk);
    /// `place` copies a chunk's bytes to a chunk index (nothing when they are already there);
    /// `memory` gives a chunk index's whole place in the window, if the window holds all of it,
    /// for a fetched chunk to be decoded straight into. Returns the verified bundles, to be staged.
    ///
    /// - Throws: ``CairnStoreError`` with `.notFound` for a chunk the fetcher did not provide,
    ///   `.corruption` for one that does not verify; errors of the fetcher.
    func fill(
        _ window: Window,
        file: FileEntry,
        context: Store.ReadContext,
        memory: @escaping (Int) -> UnsafeMutableRawBufferPointer?,
        place: @escaping (Int, UnsafeRawBufferPointer) -> Void
    ) throws -> [Verified] {
        let laterUse = remainingAfter(window)
        var refetch: [ChunkRef] = []
        for chunk in window.earlier {
            let found = kept.withBytes(of: chunk.id) { raw in for i in window.places[chunk.id]! { place(i, raw) } }
            if !found { refetch.append(chunk) }
        }
        var bundles = window.bundles
        var fetched = window.fetched
        if !refetch.isEmpty {
            bundles += try fetcher.startFetch(refetch)
            fetched += refetch.map(\.id)
        }
        let places = window.places
        let kept = kept
        let arrived = Mutex(Set<SHA256Digest>())
        // Chunks given a place to be decoded into: each once, should a bundle repeat a chunk.
        let decodedInPlace = Mutex(Set<SHA256Digest>())
        var verified: [Verified] = []
        // A delta's reference: in the store, else in the fetcher's local copies.
        let references: Store.ReferenceSource = { [store, fetcher] id, length, ctx in
            if let bytes = try? store.loadReference(id, length: length, context: ctx, verify: false) { return bytes }
            ctx.reference.reserve(length)
            let target = UnsafeMutableRawBufferPointer(rebasing: ctx.reference.memory[0..<length])
            return fetcher.readLocalCopy(of: id, into: target) ? UnsafeRawBufferPointer(target) : nil
        }
        // Deltas that cannot be rebuilt here (nothing fetched is staged then) are fetched whole
        // afterwards; where something is staged, no delta is asked for.
        let unbuilt = keepsFetched ? nil : Store.UnbuiltDeltas()
        func check(_ bundle: any PendingBundle) throws {
            let checked = try fetcher.verifying(bundle) {
                try bundle.withBytes { bytes in
                    try store.verifyBundle(
                        bytes,
                        compressRaw: false,
                        decodeInto: { id, _ in
                            guard let first = places[id]?.first, decodedInPlace.withLock({ $0.insert(id).inserted })
                            else { return nil }
                            return memory(first)
                        },
                        references: references,
                        unbuilt: unbuilt
                    ) { id, raw in
                        guard let indices = places[id] else { return }
                        for i in indices { place(i, raw) }
                        arrived.withLock { _ = $0.insert(id) }
                        if laterUse.contains(id) { kept.keep(id, raw) }
                    }
                }
            }
            verified.append((bundle, checked))
        }
        for bundle in bundles { try check(bundle) }
        if let failed = unbuilt?.all, !failed.isEmpty {
            // The store lacks some references (or the fetcher's copies of them changed: dropped):
            // no more deltas.
            _ = fetcher.stopFetchingDeltas()
            for delta in failed where delta.referenceDiffers { _ = try? fetcher.dropLocalCopy(of: delta.reference) }
            for bundle in try fetcher.startFetch(failed.map(\.chunk)) { try check(bundle) }
        }
        let got = arrived.withLock { $0 }
        if let absent = fetched.first(where: { !got.contains($0) }) {
            let prefix = context.isEmpty ? "" : "\(context): "
            throw CairnStoreError(
                .notFound,
                "\(prefix)file \(file.path): chunk \(absent.hex) was not provided by the chunk fetcher"
            )
        }
        return verified
    }

    /// Counts the window's chunks as written; forgets kept chunks that are not needed any more.
    func written(_ window: Window, file: FileEntry, chunks: Range<Int>) {
        var done: [SHA256Digest] = []
        for i in chunks {
            let id = file.chunks[i].id
            remaining[id, default: 1] -= 1
            if remaining[id] == 0 { done.append(id) }
        }
        kept.forget(done)
    }

    /// Ids of the window's chunks that occur again after it.
    private func remainingAfter(_ window: Window) -> Set<SHA256Digest> {
        Set(window.places.keys.filter { (remaining[$0] ?? 0) > window.places[$0]!.count })
    }
}

/// Fetched chunks a restore needs again in a later window, kept in memory up to a limit (filled
/// from verification's worker threads).
final class KeptChunks: Sendable {
    private let state = Mutex<(chunks: [SHA256Digest: [UInt8]], bytes: Int)>(([:], 0))
    private let limit: Int

    init(limit: Int) { self.limit = limit }

    /// Keeps a copy of `raw` as chunk `id`, unless kept already or over the limit.
    func keep(_ id: SHA256Digest, _ raw: UnsafeRawBufferPointer) {
        state.withLock { state in
            guard state.chunks[id] == nil, state.bytes + raw.count <= limit else { return }
            state.chunks[id] = Array(raw)
            state.bytes += raw.count
        }
    }

    /// Calls `body` with the kept bytes of `id` (under the lock); returns whether there were any.
    func withBytes(of id: SHA256Digest, _ body: (UnsafeRawBufferPointer) -> Void) -> Bool {
        state.withLock { state in
            guard let bytes = state.chunks[id] else { return false }
            bytes.withUnsafeBytes(body)
            return true
        }
    }

    /// Drops the kept copies of `ids`.
    func forget(_ ids: [SHA256Digest]) {
        guard !ids.isEmpty else { return }
        state.withLock { state in
            for id in ids {
                if let bytes = state.chunks.removeValue(forKey: id) { state.bytes -= bytes.count }
            }
        }
    }
}

/// Stages a restore's verified bundles into its store's packs on a thread of its own, while the
/// restore goes on (up to ``backlog`` calls ahead), through one ``ChunkUpload`` that the restore
/// commits (indexes) at its end.
final class FetchedBundleStager: Sendable {
    let upload: ChunkUpload
    /// Whether bundles are staged at all (not when the restored files are the cache's copy).
    private let staging: Bool
    private let queue = DispatchQueue(label: "cairn.restore.stage")
    private static let backlog = 4
    private let slots = DispatchSemaphore(value: FetchedBundleStager.backlog)
    private let errors = FirstError()

    init(upload: ChunkUpload, staging: Bool) {
        self.upload = upload
        self.staging = staging
    }

    /// Stages `bundles` (but those read from the fetcher's local copies) after the ones handed
    /// over before; returns at once unless ``backlog`` calls are waiting.
    func stage(_ bundles: [MissingChunkFill.Verified]) {
        let bundles = staging ? bundles.filter { !$0.bundle.isKeptLocally } : []
        guard !bundles.isEmpty else { return }
        slots.wait()
        queue.async { [self] in
            defer { slots.signal() }
            guard !errors.isSet else { return }
            do {
                for item in bundles {
                    _ = try item.bundle.withBytes { try upload.stage(item.verified, bundle: $0) }
                }
            } catch {
                errors.record(error)
            }
        }
    }

    /// Waits until everything handed to ``stage(_:)`` is staged.
    ///
    /// - Throws: the first error staging met.
    func finish() throws {
        queue.sync {}
        try errors.rethrow()
    }
}
