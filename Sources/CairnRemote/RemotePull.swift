import AsyncHTTPClient
import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

// Pulls and reads: the chunk cache, fetches into it, restores from it, ranged reads.
extension RemoteRegistry {
    // MARK: The chunk cache

    /// The local chunk cache (a store at ``cacheDirectory``), created with the server's chunking
    /// parameters on first use; one ``Store`` per directory in this process.
    ///
    /// - Throws: ``RemoteError`` when the server's configuration cannot be fetched;
    ///   ``CairnStoreError`` when the cache cannot be opened or created.
    package func cacheStore() throws -> Store {
        try Self.openCache(at: cacheDirectory, config: try serverConfig())
    }

    /// Stores opened by this process, by directory (one environment per file per process).
    private static let openStores = Mutex<[String: Store]>([:])

    /// The store at `path`, opened (or created with `config`'s parameters) once per process.
    static func openCache(at path: String, config: ServerConfig) throws -> Store {
        try openStores.withLock { stores in
            if let store = stores[path] { return store }
            let store: Store
            if FileManager.default.fileExists(atPath: path + "/config.json") {
                store = try Store.open(at: path)
            } else {
                do {
                    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                    store = try Store.create(
                        at: path,
                        config: StoreConfig(chunker: config.chunker, compressionLevel: config.compressionLevel)
                    )
                } catch let error as CairnStoreError where error.code == .conflict {
                    store = try Store.open(at: path)  // another process created it meanwhile
                }
            }
            stores[path] = store
            return store
        }
    }

    /// Where a read gets the chunks the cache's packs lack: the files earlier pulls kept in the
    /// cache, then the server.
    func cacheThenServer(_ cache: Store, asksForDeltas: Bool = false) throws -> CacheThenServer {
        CacheThenServer(
            files: try CachedFiles(cache: cache),
            server: ServerChunks(remote: self, config: try serverConfig()),
            asksForDeltas: asksForDeltas
        )
    }

    /// Whether the cache holds most of the chunks of one of `version`'s parents (in its packs or
    /// linked files): then the chunks the server stores as deltas against them can come as deltas.
    func cacheHoldsAParent(of version: VersionRecord, cache: Store, cached: CachedFiles) -> Bool {
        // An empty cache holds nothing: no requests.
        let holdsSomething = [cached.directory, cache.root + "/packs"].contains {
            !((try? FileManager.default.contentsOfDirectory(atPath: $0)) ?? []).isEmpty
        }
        guard holdsSomething else { return false }
        for parent in version.parents {
            guard let reference = try? Reference(parsing: parent), let record = try? resolve(reference),
                let manifest = try? self.manifest(of: record)
            else { continue }
            var unique = Set<SHA256Digest>()
            let refs = manifest.files.flatMap(\.chunks).filter { unique.insert($0.id).inserted }
            guard !refs.isEmpty, let missing = try? Set(cache.missingChunks(refs.map(\.id))),
                let linked = try? cached.locate(refs.filter { missing.contains($0.id) })
            else { continue }
            if (refs.count - missing.count + linked.count) * 2 >= refs.count { return true }
        }
        return false
    }

    /// Fetches into the cache's packs the chunks of `files` they lack (from the cache's linked
    /// files, else from the server), in batches (two in flight); returns the bytes received. Each
    /// chunk is verified as it is stored. A linked file whose chunk does not verify is dropped and
    /// the fetch starts again.
    ///
    /// - Throws: ``RemoteError`` when the server fails a fetch; ``CairnStoreError`` with
    ///   `.corruption` when a chunk the server sent does not verify, or when the cache fails.
    @discardableResult
    package func fetchIntoCache(_ files: [FileEntry], progress: ((TransferProgress) -> Void)? = nil) throws -> Int64 {
        while true {
            do {
                return try fetchIntoCacheOnce(files, progress: progress)
            } catch let error as CairnStoreError where error.droppedSource {
                continue  // a linked file that did not verify was dropped: its chunks come from the server now
            }
        }
    }

    private func fetchIntoCacheOnce(_ files: [FileEntry], progress: ((TransferProgress) -> Void)?) throws -> Int64 {
        let config = try serverConfig()
        let cache = try cacheStore()
        var lengths: [SHA256Digest: Int] = [:]
        var ids: [SHA256Digest] = []
        for file in files {
            for chunk in file.chunks where lengths[chunk.id] == nil {
                lengths[chunk.id] = Int(chunk.length)
                ids.append(chunk.id)
            }
        }
        let missing = try cache.missingChunks(ids)
        if missing.isEmpty { return 0 }
        // Staged into packs as they arrive and indexed once at the end (one fsync per pack, not per batch).
        let staging = try ChunkUpload(store: cache, bypassesPageCache: true)
        defer { staging.abandon() }
        let limit = batchLimit(config)
        let batches = Self.batches(missing.map { lengths[$0]! }, limit: limit, maxCount: config.maxBatchIDs)
        let rawTotal = missing.reduce(Int64(0)) { $0 + Int64(lengths[$1]!) }
        var rawDone: Int64 = 0
        var received: Int64 = 0
        // Read from the cache's linked files or fetched through the same transport as a pull's, one
        // batch ahead.
        let fetcher = try cacheThenServer(cache)
        var inFlight: (bundles: [any PendingBundle], raw: Int64)?
        // Each bundle is verified (in parallel) on this thread, then written to the cache's packs
        // on a serial queue while the next one is verified.
        let writing = DispatchQueue(label: "cairn.cache.stage")
        defer { writing.sync {} }  // before the staging is abandoned, should this throw
        let writeError = FirstError()
        func store(_ pending: (bundles: [any PendingBundle], raw: Int64)) throws {
            for bundle in pending.bundles {
                // The server sent chunks raw only where compression did not help: keep them so.
                let verified = try fetcher.verifying(bundle) {
                    try bundle.withBytes { bytes in
                        if !bundle.isKeptLocally { received += Int64(bytes.count) }
                        return try staging.verify(bundle: bytes, compressRaw: false)
                    }
                }
                writing.async {
                    do {
                        try bundle.withBytes { _ = try staging.stage(verified, bundle: $0) }
                    } catch {
                        writeError.record(error)
                    }
                }
            }
            try writeError.rethrow()
            rawDone += pending.raw
            progress?(TransferProgress(done: rawDone, of: rawTotal, new: rawDone))
        }
        for range in batches {
            let batch = missing[range].map { ChunkRef(id: $0, length: UInt32(lengths[$0]!)) }
            let bundles = try fetcher.startFetch(batch)
            if let pending = inFlight { try store(pending) }
            inFlight = (bundles, batch.reduce(Int64(0)) { $0 + Int64($1.length) })
        }
        if let pending = inFlight { try store(pending) }
        writing.sync {}
        try writeError.rethrow()
        try staging.commitChunks()
        return received
    }

    // MARK: Pulls and reads

    /// Writes files of `version` under `directory` (all, those `selection` matches, or those at
    /// `paths`) from the chunk cache, fetching only the chunks it lacks, each verified; returns the
    /// files written.
    ///
    /// Where `directory` is on the cache's file system, the written files are kept in the cache as
    /// hard links (no second copy), and a fine-tune whose parent the cache holds can come as the
    /// deltas the server stores; elsewhere fetched chunks are kept in the cache's packs.
    ///
    /// - Parameters:
    ///   - progress: called as the restore goes on.
    /// - Throws: ``RegistryError`` with `.notFound` when a path is not in the version or `selection`
    ///   matches no file, `.corruption` when the manifest does not match its id; ``RemoteError`` when
    ///   the server fails a call (see Errors on ``RemoteRegistry``); ``CairnStoreError`` with
    ///   `.corruption` when a chunk the server sent does not verify, `.io` when a file cannot be
    ///   written or the cache fails.
    public func pull(
        _ version: VersionRecord,
        to directory: String,
        paths: [String]?,
        selection: FileSelection?,
        progress: ((TransferProgress) -> Void)?
    ) throws -> [FileEntry] {
        let files = try Registry.files(
            of: try manifest(of: version),
            version: version,
            paths: paths,
            selection: selection
        )
        // The files are restored from the cache as from a local store; the chunks it lacks are read
        // from the files earlier pulls kept in it, or fetched from the server, window by window as
        // they are needed, and verified once. Where the written files can be linked into the cache
        // (one file system), they are its copy of their chunks; elsewhere the fetched chunks are
        // written to the cache's packs as well.
        let cache = try cacheStore()
        let cached = try CachedFiles(cache: cache)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let links = cached.canLink(filesUnder: directory)
        // Deltas come as such only where nothing fetched is kept in packs (their references may
        // not be there).
        let serverSendsDeltas = try serverConfig().sendsDeltas == true
        let deltas = links && serverSendsDeltas && cacheHoldsAParent(of: version, cache: cache, cached: cached)
        try cache.restore(
            files,
            to: directory,
            context: "model \(version.model) version \(version.version)",
            progress: progress,
            fetcher: try cacheThenServer(cache, asksForDeltas: deltas),
            keepsFetched: !links
        )
        if links { try cached.add(files, writtenUnder: directory) }
        return files
    }

    /// Bytes per ranged request of ``read(_:path:range:sink:)``.
    static let readWindow: Int64 = 8 << 20

    /// Streams the file `path` of `version`, or the bytes `range` of it (inclusive bounds, as in
    /// HTTP; an end past the file is clipped), to `sink`, in ranged requests of 8 MiB (two in
    /// flight) straight from the server, not through the chunk cache.
    ///
    /// A whole file is checked against its SHA-256 once `sink` has had all of it; a range is not
    /// verified here (``readRange(_:file:range:sink:)`` reads verified ranges through the cache).
    ///
    /// - Throws: ``RegistryError`` with `.notFound` when `path` is not in the version,
    ///   `.invalidArgument` for a range that starts past the end, `.corruption` when the whole file
    ///   does not match its SHA-256; ``RemoteError`` when the server fails a request, with
    ///   `.badResponse` when it sends another length than asked for (the file changed on the server)
    ///   (see Errors on ``RemoteRegistry``); whatever `sink` throws.
    public func read(
        _ version: VersionRecord,
        path: String,
        range: ClosedRange<Int64>?,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let (file, bytes) = try Registry.fileRange(in: try manifest(of: version), of: version, path: path, range: range)
        if bytes.isEmpty { return }
        let filePath = Self.versionPath(version) + "/files/" + PathSegment.encodePath(path)
        let hasher = range == nil ? SHA256Hasher() : nil
        func request(_ window: Range<Int64>) throws -> EventLoopFuture<HTTPClient.Response> {
            try start(
                .GET,
                filePath,
                headers: [
                    ("Range", "bytes=\(window.lowerBound)-\(window.upperBound - 1)"),
                    ("If-Range", "\"\(file.sha256.hex)\""),
                ]
            )
        }
        var at = bytes.lowerBound
        var next: (future: EventLoopFuture<HTTPClient.Response>, window: Range<Int64>)? = nil
        while at < bytes.upperBound || next != nil {
            let current: (future: EventLoopFuture<HTTPClient.Response>, window: Range<Int64>)
            if let n = next {
                current = n
            } else {
                let window = at..<min(at + Self.readWindow, bytes.upperBound)
                current = (try request(window), window)
                at = window.upperBound
            }
            next = nil
            if at < bytes.upperBound {
                let window = at..<min(at + Self.readWindow, bytes.upperBound)
                next = (try request(window), window)
                at = window.upperBound
            }
            let reply = try finish(current.future)
            guard reply.body.readableBytes == current.window.count else {
                throw RemoteError(
                    status: reply.status,
                    code: .badResponse,
                    message: "asked for \(current.window.count) bytes of \(path), got \(reply.body.readableBytes)"
                )
            }
            try reply.body.readableBytesView.withUnsafeBytes { chunk in
                hasher?.update(chunk)
                try sink(chunk)
            }
        }
        if let hasher, hasher.finalize() != file.sha256 {
            throw RegistryError(
                .corruption,
                "\(path) of \(version.reference) from \(baseURL) does not match its SHA-256"
            )
        }
    }
}
