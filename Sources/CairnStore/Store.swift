import Digest
import Foundation
import Glibc
import LMDB
import Synchronization

/// A chunked, deduplicating store of file trees on local disk: pack files plus one LMDB index.
///
/// ```swift
/// let store = try Store.create(at: "/data/cairn")            // or Store.open(at:)
/// let staged = try store.stage(directory: "./model")         // chunk, hash, compress, write packs
/// let manifestID = try store.commit(staged) { txn, info in info.manifestID }  // one transaction
/// try store.restore(staged.manifest.files, to: "/tmp/out")
/// ```
///
/// The store knows files, chunks and manifests only; what a manifest means (a model version) is
/// recorded by the layer above in its own tables, inside the same commit transaction
/// (``commit(_:_:)``, ``MetadataTransaction``).
///
/// Thread-safe: one `Store` per directory per process, shared by all threads.
public final class Store: Sendable {
    /// The store's directory.
    public let root: String
    /// The store's fixed parameters, as read from its `config.json`.
    public let config: StoreConfig
    let chunker: Chunker
    let environment: Environment
    let chunksDB: Database
    let packsDB: Database
    let manifestsDB: Database
    let metaDB: Database
    /// Packs retired by GC (id → retirement time), deleted from disk after the grace period.
    let retiredDB: Database
    let workers: WorkerPool
    let packHandles = PackHandles()
    private let readCounter = Atomic<Int64>(0)

    /// Names of the store's own LMDB databases; upper layers may not open tables with these names.
    static let reservedTables: Set<String> = ["chunks", "packs", "manifests", "store-meta", "retired-packs"]

    /// Creates a new, empty store at `root` (the directory may exist but must be empty).
    ///
    /// - Throws: ``CairnStoreError``: `.conflict` if a store is already there or the directory is
    ///   not empty, `.invalidArgument` for an invalid `config`, `.io`.
    @discardableResult
    public static func create(at root: String, config: StoreConfig = StoreConfig()) throws -> Store {
        try config.validate()
        let root = Self.normalize(root)
        if FileIO.exists(root + "/config.json") {
            throw CairnStoreError(.conflict, "a cairn store already exists at \(root)")
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: root), !entries.isEmpty {
            throw CairnStoreError(.conflict, "\(root) is not empty; a new store needs an empty or new directory")
        }
        try FileIO.makeDirectories(root + "/packs")
        try FileIO.makeDirectories(root + "/tmp")
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let data = try encoder.encode(config)
        // config.json is written last (via a temporary name): its presence marks a complete store.
        let temp = root + "/config.json.tmp"
        let fd = try FileIO.open(temp, O_WRONLY | O_CREAT | O_TRUNC)
        defer { close(fd) }
        try data.withUnsafeBytes { try FileIO.pwrite(fd, $0, at: 0, path: temp) }
        try FileIO.fsync(fd, path: temp)
        let store = try Store(root: root, config: config)
        try FileIO.rename(temp, root + "/config.json")
        try FileIO.fsyncDirectory(root)
        return store
    }

    /// Opens the store at `root`.
    ///
    /// - Throws: ``CairnStoreError`` with `.notFound` when there is no store, `.corruption` or
    ///   `.invalidArgument` for an unreadable or unsupported config, `.io` when its index cannot be
    ///   opened.
    public static func open(at root: String) throws -> Store {
        let root = Self.normalize(root)
        guard let data = FileManager.default.contents(atPath: root + "/config.json") else {
            throw CairnStoreError(.notFound, "no cairn store at \(root)")
        }
        let config: StoreConfig
        do {
            config = try JSONDecoder().decode(StoreConfig.self, from: data)
        } catch {
            throw CairnStoreError(.corruption, "\(root)/config.json is not a valid store config: \(error)")
        }
        try config.validate()
        try checkIndexExists(root: root)
        return try Store(root: root, config: config)
    }

    /// A store whose index is gone (or empty) while packs remain is damaged, not empty: opening it
    /// would create a fresh, empty index, and every command would then see no versions (and a
    /// garbage collection would delete every pack as unreferenced). Refused instead.
    private static func checkIndexExists(root: String) throws {
        let size = (try? FileManager.default.attributesOfItem(atPath: root + "/index.mdb"))?[.size] as? Int
        guard size == nil || size == 0 else { return }
        let packs = (FileManager.default.enumerator(atPath: root + "/packs")?.allObjects as? [String] ?? [])
            .filter { $0.hasSuffix(".pack") }
        guard packs.isEmpty else {
            throw CairnStoreError(
                .corruption,
                "the index of \(root) (index.mdb) is \(size == nil ? "missing" : "empty") while \(packs.count) pack file\(packs.count == 1 ? " remains" : "s remain"); "
                    + "nothing was changed: restore index.mdb from a backup"
            )
        }
    }

    private init(root: String, config: StoreConfig) throws {
        self.root = root
        self.config = config
        self.chunker = Chunker(config.chunker)
        do {
            environment = try Environment(path: root + "/index.mdb", maxDatabases: 64)
            chunksDB = try environment.openDatabase("chunks")
            packsDB = try environment.openDatabase("packs")
            manifestsDB = try environment.openDatabase("manifests")
            metaDB = try environment.openDatabase("store-meta")
            retiredDB = try environment.openDatabase("retired-packs")
        } catch let error as LMDBError where error.isDamage {
            throw CairnStoreError(
                .corruption,
                "the index of \(root) (index.mdb) is damaged: \(error); nothing was changed: restore it from a backup"
            )
        } catch let error as LMDBError {
            throw CairnStoreError(.io, "cannot open the index of \(root): \(error)")
        }
        workers = WorkerPool(level: Int32(config.compression.level), maxChunk: config.chunker.max)
    }

    deinit {
        packHandles.closeAll()
        environment.close()
    }

    private static func normalize(_ path: String) -> String {
        var p = path
        while p.count > 1 && p.hasSuffix("/") { p.removeLast() }
        return p
    }

    /// Bytes read from pack files since the store was opened (every `pread` of pack data).
    /// Tests use it to prove that partial reads touch only the chunks they need.
    public var bytesReadFromPacks: Int64 { readCounter.load(ordering: .relaxed) }

    func countRead(_ n: Int) { readCounter.add(Int64(n), ordering: .relaxed) }

    func packPath(_ id: UInt64) -> String { root + "/" + PackFormat.relativePath(id) }

    /// Reads pack bytes at `offset` with `pread` (counted in ``bytesReadFromPacks``); returns the
    /// bytes read, fewer than asked only where the pack ends.
    func readPack(_ id: UInt64, into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        let path = packPath(id)
        let got = try packHandles.withDescriptor(for: id, path: path) { fd in
            try FileIO.pread(fd, buffer, at: offset, path: path)
        }
        countRead(got)
        return got
    }

    /// Reads pack bytes from `offset` into `segments`, in order, with one system call per
    /// ``FileIO/preadv(_:_:at:path:)`` batch; returns the bytes read (fewer only at the pack's end).
    func readPack(_ id: UInt64, into segments: [UnsafeMutableRawBufferPointer], at offset: Int64) throws -> Int {
        let path = packPath(id)
        let got = try packHandles.withDescriptor(for: id, path: path) { fd in
            try FileIO.preadv(fd, segments, at: offset, path: path)
        }
        countRead(got)
        return got
    }

    /// Asks the kernel to start reading pack bytes into the page cache (`POSIX_FADV_WILLNEED`),
    /// so that a later ``readPack(_:into:at:)`` of them does not wait for the disk.
    func prefetchPack(_ id: UInt64, range: Range<Int64>) {
        let path = packPath(id)
        _ = try? packHandles.withDescriptor(for: id, path: path) { fd in
            posix_fadvise(fd, off_t(range.lowerBound), off_t(range.count), POSIX_FADV_WILLNEED)
        }
    }

    // MARK: Index access

    func location(of id: SHA256Digest, in txn: Transaction) throws -> ChunkLocation? {
        try id.withUnsafeBytes { key in
            try txn.withValue(chunksDB, key: key) { value in
                guard let value else { return nil }
                guard let location = ChunkLocation(value, maxChunk: config.chunker.max) else {
                    throw CairnStoreError(.corruption, "index entry of chunk \(id.hex) is malformed")
                }
                return location
            }
        }
    }

    func containsChunk(_ id: SHA256Digest) throws -> Bool {
        try lmdb { try environment.read { txn in try id.withUnsafeBytes { try txn.contains(chunksDB, key: $0) } } }
    }

    /// Runs an LMDB operation, turning LMDB errors into store errors.
    func lmdb<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as LMDBError {
            throw indexError(error)
        }
    }

    /// The store error for an LMDB failure: damage is corruption; a write that failed for want of
    /// space says so and names the file (LMDB reports a short write as EIO, so the free space is
    /// looked at); anything else is I/O.
    func indexError(_ error: LMDBError) -> CairnStoreError {
        let index = root + "/index.mdb"
        if error.isDamage {
            return CairnStoreError(.corruption, "the index \(index) is damaged: \(error); nothing was changed")
        }
        if error.code == ENOSPC || error.code == EDQUOT || error.code == EIO, let free = FileIO.freeBytes(at: root),
            error.code != EIO || free < 64 << 20
        {
            return CairnStoreError(
                .io,
                "the disk is full: cannot write the index \(index) (\(free) bytes free); nothing was changed"
            )
        }
        return CairnStoreError(.io, "index: \(error)")
    }

    /// The manifest stored under `id`.
    ///
    /// - Throws: ``CairnStoreError`` with `.notFound` if there is none, `.corruption` if it does
    ///   not decode, `.io`.
    public func manifest(_ id: SHA256Digest) throws -> Manifest {
        try readMetadata { try $0.manifest(id) }
    }

    // MARK: Metadata for upper layers

    /// Opens (creating if needed) a table for an upper layer's records in the store's index.
    ///
    /// - Throws: ``CairnStoreError`` with `.invalidArgument` for a name the store uses itself,
    ///   `.io` when the index cannot open it.
    public func table(_ name: String) throws -> MetadataTable {
        guard !Self.reservedTables.contains(name) else {
            throw CairnStoreError(.invalidArgument, "table name \"\(name)\" is reserved by the store")
        }
        return MetadataTable(database: try lmdb { try environment.openDatabase(name) })
    }

    /// Runs `body` in a read-only snapshot of the index.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be read; errors thrown by `body`.
    public func readMetadata<T>(_ body: (MetadataTransaction) throws -> T) throws -> T {
        try lmdb { try environment.read { txn in try body(MetadataTransaction(store: self, txn: txn)) } }
    }

    /// Runs `body` in a write transaction of the index; nothing it wrote is kept if it throws.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be written; errors thrown
    ///   by `body` (nothing is committed).
    public func writeMetadata<T>(_ body: (MetadataTransaction) throws -> T) throws -> T {
        try lmdb { try environment.write { txn in try body(MetadataTransaction(store: self, txn: txn)) } }
    }

    // MARK: Statistics

    /// What the store holds: unique chunk bytes, their stored size, pack files on disk.
    public struct Statistics: Sendable, Equatable {
        /// Number of distinct chunks in the index.
        public var chunkCount: Int
        /// Sum of the raw lengths of distinct chunks (what dedup keeps, before compression).
        public var uniqueBytes: Int64
        /// Sum of the stored lengths of indexed chunks (after compression).
        public var compressedBytes: Int64
        /// Size of the pack files referenced by the index (what the data takes on disk).
        public var storedBytes: Int64
        /// Pack files referenced by the index.
        public var packCount: Int
        /// Manifests stored.
        public var manifestCount: Int
        /// Size of the LMDB index file in use.
        public var indexBytes: Int64
        /// Distinct chunks per codec: how many, raw and stored bytes.
        public var codecs: [Codec.Usage] = []
    }

    /// What the store holds, read from one snapshot of the index.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be read.
    public func statistics() throws -> Statistics {
        try lmdb {
            try environment.read { txn in
                var s = Statistics(
                    chunkCount: 0,
                    uniqueBytes: 0,
                    compressedBytes: 0,
                    storedBytes: 0,
                    packCount: 0,
                    manifestCount: try txn.count(manifestsDB),
                    indexBytes: Int64(try environment.usedBytes())
                )
                var locations: [ChunkLocation] = []
                try txn.forEach(chunksDB) { _, value in
                    if let loc = ChunkLocation(value, maxChunk: config.chunker.max) {
                        s.chunkCount += 1
                        s.uniqueBytes += Int64(loc.rawLength)
                        s.compressedBytes += Int64(loc.storedLength)
                        locations.append(loc)
                    }
                    return true
                }
                s.codecs = Codec.usage(locations)
                try txn.forEach(packsDB) { _, value in
                    if let pack = PackRecord(value) {
                        s.packCount += 1
                        s.storedBytes += pack.size
                    }
                    return true
                }
                return s
            }
        }
    }
}

/// The `packs` database value (20 bytes, little-endian): size u64 · chunk count u32 · created (Unix s) i64.
struct PackRecord: Equatable {
    var size: Int64
    var chunkCount: UInt32
    var createdAt: Int64

    func encoded() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        out.withUnsafeMutableBytes { raw in
            raw.storeBytes(of: UInt64(size).littleEndian, toByteOffset: 0, as: UInt64.self)
            raw.storeBytes(of: chunkCount.littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: UInt64(bitPattern: createdAt).littleEndian, toByteOffset: 12, as: UInt64.self)
        }
        return out
    }

    init(size: Int64, chunkCount: UInt32, createdAt: Int64) {
        self.size = size
        self.chunkCount = chunkCount
        self.createdAt = createdAt
    }

    init?(_ b: UnsafeRawBufferPointer) {
        guard b.count == 20 else { return nil }
        size = Int64(UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)))
        chunkCount = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        createdAt = Int64(bitPattern: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 12, as: UInt64.self)))
    }

    static func key(_ id: UInt64) -> [UInt8] {
        withUnsafeBytes(of: id.bigEndian) { Array($0) }
    }
}

/// Open file descriptors of pack files, shared by reader threads (`pread` needs no seek position).
/// At most 512 stay open; beyond that a reader opens and closes its own descriptor, so no thread
/// ever loses a descriptor it is reading through.
final class PackHandles: Sendable {
    private let handles = Mutex<[UInt64: Int32]>([:])
    private static let limit = 512

    /// Calls `body` with a descriptor open on the pack.
    func withDescriptor<T>(for id: UInt64, path: String, _ body: (Int32) throws -> T) throws -> T {
        if let fd = handles.withLock({ $0[id] }) { return try body(fd) }
        let fd: Int32
        do {
            fd = try FileIO.open(path, O_RDONLY)
        } catch {
            throw CairnStoreError(.corruption, "pack \(PackFormat.fileName(id)) is missing or unreadable: \(error)")
        }
        // Readers ask for exactly the spans they need, so the kernel's readahead would only add
        // bytes nobody reads, in large folios that are slow to allocate on a VM (see FileIO.largestWrite).
        posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM)
        let cached = handles.withLock { table -> Int32? in
            if let existing = table[id] { return existing }
            guard table.count < Self.limit else { return nil }
            table[id] = fd
            return fd
        }
        guard let cached else {
            defer { close(fd) }
            return try body(fd)
        }
        if cached != fd { close(fd) }
        return try body(cached)
    }

    /// Closes the descriptor of a pack about to be deleted (only GC deletes packs; readers of a
    /// retired pack finish within the grace period, long before its file is deleted).
    func forget(_ id: UInt64) {
        handles.withLock { table in
            if let fd = table.removeValue(forKey: id) { close(fd) }
        }
    }

    func closeAll() {
        handles.withLock { table in
            for (_, fd) in table { close(fd) }
            table.removeAll()
        }
    }
}
