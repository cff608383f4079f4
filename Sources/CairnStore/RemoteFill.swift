import Digest
import Dispatch
import Synchronization

/// Where a restore gets the chunks its store lacks: a remote pull restores from its chunk cache and
/// fetches the rest from the server (CairnRemote implements this over HTTP).
public protocol ChunkFetcher: Sendable {
    /// Starts fetching `chunks` (each once) as bundles (``ChunkBundle``), split as the other side's
    /// limits require; returns without waiting for them.
    func startFetch(_ chunks: [ChunkRef]) throws -> [any PendingBundle]

    /// Drops the local source of `chunk`, which did not verify, so that it is fetched anew (from
    /// the server) by a restore started again; returns whether there was such a source.
    func dropSource(of chunk: SHA256Digest) throws -> Bool

    /// Reads the raw bytes of `chunk` from a local source into `target` (exactly its length), if it
    /// has one: the reference of a delta it fetched. The bytes are not verified here (the chunk
    /// rebuilt from them is).
    func readLocal(_ chunk: SHA256Digest, into target: UnsafeMutableRawBufferPointer) -> Bool

    /// Stops asking for deltas (one that was sent could not be rebuilt here); returns whether it asked.
    func stopDeltas() -> Bool
}

extension ChunkFetcher {
    public func dropSource(of chunk: SHA256Digest) throws -> Bool { false }
    public func readLocal(_ chunk: SHA256Digest, into target: UnsafeMutableRawBufferPointer) -> Bool { false }
    public func stopDeltas() -> Bool { false }

    /// Runs `verify` on `bundle`'s bytes. When a chunk does not verify, the error no longer names
    /// it as a damaged chunk of the store (it came from elsewhere); if the bundle was read from a
    /// local source of this fetcher, that source is dropped and the error says so
    /// (``CairnStoreError/droppedSource``): the read can start again, fetching those chunks.
    public func verifying<T>(_ bundle: any PendingBundle, _ verify: () throws -> T) throws -> T {
        do {
            return try verify()
        } catch var error as CairnStoreError {
            guard let chunk = error.damagedChunk else { throw error }
            error.damagedChunk = nil
            if bundle.isKeptLocally, try dropSource(of: chunk) { error.droppedSource = true }
            throw error
        }
    }
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

/// A bundle on its way.
public protocol PendingBundle: AnyObject, Sendable {
    /// Waits for the bundle, then calls `body` with its bytes (valid during the call; the same
    /// bytes on every call).
    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T

    /// Whether the bundle's chunks are kept locally already (read from the cache's own files): a
    /// restore does not stage them.
    var isKeptLocally: Bool { get }
}

extension PendingBundle {
    public var isKeptLocally: Bool { false }
}

/// The fetching side of a restore from a cache (``Store/restore(_:to:context:progress:fetcher:)``):
/// per read window, the chunks the store lacks are fetched (the next window's while this one is
/// decoded), verified, copied into the window and staged into the store, which indexes them when
/// the restore is done. Fetched chunks that the restore needs again later are kept in memory (up
/// to ``keepLimit`` bytes), as the store cannot read staged chunks before they are indexed.
final class RemoteFill: @unchecked Sendable {
    // @unchecked Sendable: `remaining` is used by the read loop's thread only; the rest is locked
    // or thread-safe (ChunkUpload).
    let fetcher: any ChunkFetcher
    let store: Store
    let staging: ChunkUpload
    /// Whether fetched chunks are staged into the store (not when the caller keeps the restored
    /// files themselves as the cache's copy).
    let keepsFetched: Bool
    /// Occurrences of each chunk in the files still to be written.
    private var remaining: [SHA256Digest: Int] = [:]
    /// Chunks whose fetch has been started (by an earlier window or this one).
    private var requested = Set<SHA256Digest>()
    private let kept = Mutex<(chunks: [SHA256Digest: [UInt8]], bytes: Int)>(([:], 0))
    static let keepLimit = 64 << 20

    init(store: Store, files: [FileEntry], fetcher: any ChunkFetcher, keepsFetched: Bool) throws {
        self.fetcher = fetcher
        self.store = store
        self.keepsFetched = keepsFetched
        staging = try ChunkUpload(store: store, bypassesPageCache: true)
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

    /// Windows started ahead of their file's read (see ``Store/read(_:range:context:alignment:fill:following:sink:)``),
    /// by file path and first missing chunk.
    private var startedAhead: [String: Window] = [:]

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
    func fill(
        _ window: Window, file: FileEntry, context: Store.ReadContext,
        memory: @escaping (Int) -> UnsafeMutableRawBufferPointer?,
        place: @escaping (Int, UnsafeRawBufferPointer) -> Void
    ) throws -> [(bundle: any PendingBundle, verified: VerifiedBundle)] {
        let laterUse = remainingAfter(window)
        var refetch: [ChunkRef] = []
        for chunk in window.earlier {
            let found = kept.withLock { state -> Bool in
                guard let bytes = state.chunks[chunk.id] else { return false }
                bytes.withUnsafeBytes { raw in for i in window.places[chunk.id]! { place(i, raw) } }
                return true
            }
            if !found { refetch.append(chunk) }
        }
        var bundles = window.bundles
        var fetched = window.fetched
        if !refetch.isEmpty {
            bundles += try fetcher.startFetch(refetch)
            fetched += refetch.map(\.id)
        }
        let places = window.places
        let arrived = Mutex(Set<SHA256Digest>())
        // Chunks given a place to be decoded into: each once, should a bundle repeat a chunk.
        let decodedInPlace = Mutex(Set<SHA256Digest>())
        var verified: [(bundle: any PendingBundle, verified: VerifiedBundle)] = []
        // A delta's reference: in the store, else in the fetcher's local source.
        let references: Store.ReferenceSource = { [store, fetcher] id, length, ctx in
            if let bytes = try? store.loadReference(id, length: length, context: ctx, verify: false) { return bytes }
            ctx.reference.reserve(length)
            let target = UnsafeMutableRawBufferPointer(rebasing: ctx.reference.memory[0..<length])
            return fetcher.readLocal(id, into: target) ? UnsafeRawBufferPointer(target) : nil
        }
        // Deltas that cannot be rebuilt here (nothing fetched is staged then) are fetched whole
        // afterwards; where something is staged, no delta is asked for.
        let unbuilt = keepsFetched ? nil : Store.UnbuiltDeltas()
        func check(_ bundle: any PendingBundle) throws {
            let checked = try fetcher.verifying(bundle) {
                try bundle.withBytes { bytes in
                    try store.verifyBundle(
                        bytes, compressRaw: false,
                        decodeInto: { id, _ in
                            guard let first = places[id]?.first, decodedInPlace.withLock({ $0.insert(id).inserted }) else { return nil }
                            return memory(first)
                        }, references: references, unbuilt: unbuilt
                    ) { [self] id, raw in
                        guard let indices = places[id] else { return }
                        for i in indices { place(i, raw) }
                        arrived.withLock { _ = $0.insert(id) }
                        if laterUse.contains(id) { keep(id, raw) }
                    }
                }
            }
            verified.append((bundle, checked))
        }
        for bundle in bundles { try check(bundle) }
        if let failed = unbuilt?.all, !failed.isEmpty {
            // The cache lacks some references (or holds changed ones, dropped): no more deltas.
            _ = fetcher.stopDeltas()
            for delta in failed where delta.referenceDiffers { _ = try? fetcher.dropSource(of: delta.reference) }
            for bundle in try fetcher.startFetch(failed.map(\.chunk)) { try check(bundle) }
        }
        let got = arrived.withLock { $0 }
        if let absent = fetched.first(where: { !got.contains($0) }) {
            let prefix = context.isEmpty ? "" : "\(context): "
            throw CairnStoreError(.notFound, "\(prefix)file \(file.path): chunk \(absent.hex) was not sent by the server")
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
        if done.isEmpty { return }
        kept.withLock { state in
            for id in done {
                if let bytes = state.chunks.removeValue(forKey: id) { state.bytes -= bytes.count }
            }
        }
    }

    /// Stages verified bundles into the store's packs, on a thread of its own: the restore goes on
    /// meanwhile (up to ``stageBacklog`` calls ahead). ``finishStaging()`` waits for it.
    func stage(_ bundles: [(bundle: any PendingBundle, verified: VerifiedBundle)]) {
        let bundles = keepsFetched ? bundles.filter { !$0.bundle.isKeptLocally } : []
        guard !bundles.isEmpty else { return }
        stageSlots.wait()
        stager.async { [self] in
            defer { stageSlots.signal() }
            guard !stageError.isSet else { return }
            do {
                for item in bundles {
                    _ = try item.bundle.withBytes { try staging.stage(item.verified, bundle: $0) }
                }
            } catch {
                stageError.record(error)
            }
        }
    }

    /// Waits until everything handed to ``stage(_:)`` is staged; throws the first error staging met.
    func finishStaging() throws {
        stager.sync {}
        try stageError.rethrow()
    }

    private let stager = DispatchQueue(label: "cairn.restore.stage")
    private static let stageBacklog = 4
    private let stageSlots = DispatchSemaphore(value: RemoteFill.stageBacklog)
    private let stageError = FirstError()

    /// Ids of the window's chunks that occur again after it.
    private func remainingAfter(_ window: Window) -> Set<SHA256Digest> {
        Set(window.places.keys.filter { (remaining[$0] ?? 0) > window.places[$0]!.count })
    }

    private func keep(_ id: SHA256Digest, _ raw: UnsafeRawBufferPointer) {
        kept.withLock { state in
            guard state.chunks[id] == nil, state.bytes + raw.count <= Self.keepLimit else { return }
            state.chunks[id] = Array(raw)
            state.bytes += raw.count
        }
    }
}
