import Digest
import Dispatch
import Foundation
import Glibc
import Synchronization
import Zstd

/// Progress of a long operation, reported between pipeline rounds (on the calling thread).
public struct TransferProgress: Sendable {
    /// Bytes of file content processed so far.
    public var doneBytes: Int64
    /// Bytes of file content in total.
    public var totalBytes: Int64
    /// Of `doneBytes`, the bytes that were new to the store (ingest) — 0 for reads.
    public var newBytes: Int64
}

/// The result of staging a tree: its manifest, and the packs already written for chunks the store
/// did not have. Nothing is visible in the store until ``Store/commit(_:_:)``.
public struct StagedIngest: Sendable {
    /// The tree's manifest.
    public let manifest: Manifest
    /// Its id (the SHA-256 of its encoding).
    public let manifestID: SHA256Digest
    /// Raw bytes of the chunks this push wrote (chunks the store did not have when they were hashed).
    public let writtenRawBytes: Int64
    /// Bytes written to pack files (records, tables, headers).
    public let writtenPackBytes: Int64
    let packs: [PackWriter.SealedPack]
    let written: [(id: SHA256Digest, location: ChunkLocation)]
    /// Relative path → path to re-read a chunk from, should a concurrent GC drop one this push shares.
    let sources: [String: String]
    /// Held from staging until the value is released: GC does not delete unreferenced packs while
    /// any push holds one (they may be this push's packs, not yet committed).
    let lease: StoreLock.Lease?
}

/// What a commit added to the store.
public struct CommitInfo: Sendable {
    /// The id of the committed manifest.
    public let manifestID: SHA256Digest
    /// Whether the manifest was new to the store.
    public let manifestIsNew: Bool
    /// Raw bytes of chunks this commit added to the index (0 when every chunk was already there).
    public let newBytes: Int64
    /// Bytes on disk of the packs this commit added.
    public let storedBytes: Int64
    /// Number of chunks added to the index.
    public let newChunks: Int
    /// The added chunks per codec: what each codec stored them in.
    public let codecs: [Codec.Usage]
}

extension Store {
    /// Chunks, hashes, compresses and writes to packs every regular file under `directory` (or the
    /// single file `directory` names). The result becomes visible only when committed.
    ///
    /// Runs on every core: boundaries are found sequentially per file while other threads hash and
    /// compress chunks and write packs. Memory stays bounded (three 8 MiB batches) whatever the size.
    ///
    /// - Throws: ``CairnStoreError``: `.invalidArgument` for symlinks or special files, or for a
    ///   tree that holds this store or lies inside it (before anything is written), `.io` for read
    ///   or write failures, `.conflict` if a file changes while it is read.
    public func stage(
        directory: String,
        planner: ChunkingPlanner? = nil,
        progress: ((TransferProgress) -> Void)? = nil
    ) throws -> StagedIngest {
        try refuseOwnTree(directory)
        let files = try FileTree.scan(directory)
        return try stage(files: files, planner: planner, progress: progress)
    }

    /// Stages the given files (see ``stage(directory:planner:progress:)``). `planner` may cut some
    /// files by their structure (see ``ChunkingPlan``); others use content-defined chunking.
    ///
    /// - Throws: ``CairnStoreError``: `.invalidArgument` for an unsafe or repeated path (before
    ///   anything is written), `.io` for read or write failures, `.conflict` if a file changes
    ///   while it is read.
    public func stage(
        files: [SourceFile],
        planner: ChunkingPlanner? = nil,
        progress: ((TransferProgress) -> Void)? = nil
    ) throws -> StagedIngest {
        var seenPaths = Set<String>()
        for f in files {
            try RelativePath.validate(f.relativePath)
            guard seenPaths.insert(f.relativePath).inserted else {
                throw CairnStoreError(.invalidArgument, "the path \(f.relativePath) appears twice")
            }
        }
        let pipeline = IngestPipeline(
            store: self,
            files: files,
            plans: plans(for: files, planner: planner),
            progress: progress
        )
        return try pipeline.run()
    }

    /// Makes a staged tree visible: in ONE index write transaction, checks that every chunk the
    /// manifest references is indexed, adds the new chunks (in sorted key order), the new packs and
    /// the manifest, then runs `body` so the layer above can record what the manifest means in the
    /// same transaction. If anything throws, nothing becomes visible.
    ///
    /// A chunk this push found already stored may have been dropped by a concurrent garbage
    /// collection since: the commit then re-reads it from the pushed file, stores it again and retries.
    ///
    /// ```swift
    /// let staged = try store.stage(directory: "./model")
    /// let id = try store.commit(staged) { txn, info in info.manifestID }
    /// ```
    ///
    /// - Throws: ``CairnStoreError`` with `.conflict` if a pushed file changed so that a chunk cannot
    ///   be re-stored, `.io`; errors thrown by `body` (nothing is committed).
    public func commit<T>(_ staged: StagedIngest, _ body: (MetadataTransaction, CommitInfo) throws -> T) throws -> T {
        var packs = staged.packs
        var written = staged.written
        FaultInjection.beforeCommit()
        for _ in 0..<4 {
            switch try commitAttempt(staged, packs: packs, written: written, body) {
            case .committed(let value):
                return value
            case .missing(let chunks):
                written.removeAll { chunks.contains($0.id) }
                let restored = try restoreChunks(chunks, of: staged)
                packs += restored.sealed
                written += restored.written
            }
        }
        throw CairnStoreError(
            .conflict,
            "chunks kept disappearing while committing (concurrent garbage collection); push again"
        )
    }

    private enum CommitOutcome<T> {
        case committed(T)
        case missing(Set<SHA256Digest>)
    }

    private func commitAttempt<T>(
        _ staged: StagedIngest,
        packs: [PackWriter.SealedPack],
        written: [(id: SHA256Digest, location: ChunkLocation)],
        _ body: (MetadataTransaction, CommitInfo) throws -> T
    ) throws -> CommitOutcome<T> {
        var writtenIDs = Set<SHA256Digest>()
        for entry in written { writtenIDs.insert(entry.id) }
        let sorted = written.sorted { $0.id < $1.id }
        let now = Int64(Date().timeIntervalSince1970)
        return try lmdb {
            try environment.write { txn -> CommitOutcome<T> in
                // Every referenced chunk this push did not write must still be indexed.
                var missing = Set(try unindexed(staged.manifest.chunkIDs(excluding: writtenIDs), in: txn))
                // A delta written by this push needs its reference: if a concurrent GC dropped it, the
                // delta chunk is stored again in plain form.
                let references = written.compactMap { $0.location.reference }.filter { !writtenIDs.contains($0) }
                let lostReferences = Set(try unindexed(references, in: txn))
                for entry in written where entry.location.reference.map(lostReferences.contains) == true {
                    missing.insert(entry.id)
                }
                if !missing.isEmpty { return .missing(missing) }
                var newBytes: Int64 = 0
                var newChunks = 0
                var added: [ChunkLocation] = []
                var usedPacks = Set<UInt64>()
                // New chunk entries, in key order (random-order inserts multiply B-tree writes).
                for entry in sorted {
                    let inserted = try entry.id.withUnsafeBytes { key -> Bool in
                        if try txn.contains(chunksDB, key: key) { return false }
                        try entry.location.encoded().withUnsafeBytes { try txn.put(chunksDB, key: key, value: $0) }
                        return true
                    }
                    if inserted {
                        newBytes += Int64(entry.location.rawLength)
                        newChunks += 1
                        added.append(entry.location)
                        usedPacks.insert(entry.location.packID)
                    }
                }
                var storedBytes: Int64 = 0
                for pack in packs.sorted(by: { $0.id < $1.id }) {
                    // A pack none of whose chunks were new (another push stored them first) stays
                    // unreferenced; GC removes it.
                    guard usedPacks.contains(pack.id) else { continue }
                    let record = PackRecord(size: pack.size, chunkCount: UInt32(pack.chunkCount), createdAt: now)
                    try txn.put(packsDB, key: PackRecord.key(pack.id), value: record.encoded())
                    storedBytes += pack.size
                }
                let manifestKey = staged.manifestID.bytes
                let manifestIsNew = try txn.get(manifestsDB, key: manifestKey) == nil
                if manifestIsNew {
                    try txn.put(manifestsDB, key: manifestKey, value: staged.manifest.encoded())
                }
                let info = CommitInfo(
                    manifestID: staged.manifestID,
                    manifestIsNew: manifestIsNew,
                    newBytes: newBytes,
                    storedBytes: storedBytes,
                    newChunks: newChunks,
                    codecs: Codec.usage(added)
                )
                return .committed(try body(MetadataTransaction(store: self, txn: txn), info))
            }
        }
    }

    /// Reads the given chunks again from the pushed files, checks their SHA-256 and writes them to a
    /// new pack (used when a concurrent GC dropped chunks this push had found already stored).
    private func restoreChunks(
        _ ids: Set<SHA256Digest>,
        of staged: StagedIngest
    ) throws -> (sealed: [PackWriter.SealedPack], written: [(id: SHA256Digest, location: ChunkLocation)]) {
        let writer = PackWriter(root: root, targetSize: config.packSize)
        var remaining = ids
        let scratch = AlignedBuffer(capacity: config.chunker.max)
        let output = AlignedBuffer(capacity: zstdCompressBound(config.chunker.max))
        for file in staged.manifest.files where !remaining.isEmpty {
            let offsets = file.chunkOffsets()
            for (i, chunk) in file.chunks.enumerated() where remaining.contains(chunk.id) {
                guard let source = staged.sources[file.path] else { continue }
                let fd = try FileIO.open(source, O_RDONLY | O_NOFOLLOW)
                defer { close(fd) }
                let bytes = UnsafeMutableRawBufferPointer(rebasing: scratch.memory[0..<Int(chunk.length)])
                let got = try FileIO.pread(fd, bytes, at: offsets[i], path: source)
                try workers.withContext { ctx in
                    ctx.hasher.update(UnsafeRawBufferPointer(rebasing: bytes[0..<got]))
                    guard got == Int(chunk.length), ctx.hasher.finalize() == chunk.id else {
                        throw CairnStoreError(
                            .conflict,
                            "\(file.path) changed since it was pushed, and a chunk it shares was garbage-collected meanwhile; push again"
                        )
                    }
                    let n = try ctx.compressor.compress(UnsafeRawBufferPointer(bytes), into: output.memory)
                    if n < bytes.count {
                        try writer.append(
                            id: chunk.id,
                            codec: .zstd,
                            rawLength: bytes.count,
                            data: UnsafeRawBufferPointer(rebasing: output.memory[0..<n])
                        )
                    } else {
                        try writer.append(
                            id: chunk.id,
                            codec: .raw,
                            rawLength: bytes.count,
                            data: UnsafeRawBufferPointer(bytes)
                        )
                    }
                }
                remaining.remove(chunk.id)
            }
        }
        try writer.finish()
        return (writer.sealed, writer.written)
    }
}

/// One round's worth of input: up to `capacity` bytes of one file, cut into chunks, with room for
/// the chunks' compressed forms. Three batches rotate through the pipeline's stages.
private final class IngestBatch: ChunkBatch {
    let output = AlignedBuffer(capacity: 1 << 20)
    /// Chunk i may write its compressed form to output[slots[i] ..< slots[i + 1]].
    var slots: [Int] = []
    let results: UnsafeMutableBufferPointer<ChunkResult>

    struct ChunkResult {
        var id = SHA256Digest.zero
        var isNew = false
        var codec = Codec.raw
        var storedLength = 0
        var reference: SHA256Digest? = nil
    }

    init(capacity: Int, minChunk: Int) {
        results = .allocate(capacity: capacity / minChunk + 2)
        super.init(capacity: capacity)
    }

    deinit { results.deallocate() }
}

/// The ingest pipeline. Each round runs, in one parallel loop: reading and cutting the next batch;
/// the whole-file SHA-256 of the current batch; writing the previous batch's new chunks to packs;
/// and hashing, dedup lookup and compression of each chunk of the current batch.
private final class IngestPipeline {
    let store: Store
    let files: [SourceFile]
    let progress: ((TransferProgress) -> Void)?
    /// The read stage's state: which file and offset come next.
    let reader: ChunkedReader
    let writer: PackWriter
    let seen = Mutex<Set<SHA256Digest>>([])
    let fileHasher = SHA256Hasher()
    let errors = FirstError()

    // Results.
    var fileChunks: [[ChunkRef]]
    var fileDigests: [SHA256Digest]
    var doneBytes: Int64 = 0
    var newRawBytes: Int64 = 0

    init(store: Store, files: [SourceFile], plans: [ChunkingPlan], progress: ((TransferProgress) -> Void)?) {
        self.store = store
        self.files = files
        reader = ChunkedReader(files: files, plans: plans, parameters: store.config.chunker)
        self.progress = progress
        writer = PackWriter(root: store.root, targetSize: store.config.packSize)
        fileChunks = Array(repeating: [], count: files.count)
        fileDigests = Array(repeating: .zero, count: files.count)
    }

    func run() throws -> StagedIngest {
        let lease = try StoreLock.sharedPushLease(root: store.root)
        let total = files.reduce(Int64(0)) { $0 + $1.size }
        let minChunk = store.config.chunker.min
        let batches = (0..<3).map { _ in IngestBatch(capacity: reader.batchCapacity, minChunk: minChunk) }
        do {
            var round = 0
            var hasCurrent = try fill(batches[0])
            var pending: IngestBatch? = nil
            while hasCurrent {
                let current = batches[round % 3]
                let next = batches[(round + 1) % 3]
                var hasNext = false
                let writing = pending
                parallelFor(3 + current.chunkCount) { i in
                    if errors.isSet { return }
                    do {
                        switch i {
                        case 0: hasNext = try fill(next)
                        case 1: hashFile(current)
                        case 2: if let writing { try write(writing) }
                        default: try process(current, i - 3)
                        }
                    } catch {
                        errors.record(error)
                    }
                }
                try errors.rethrow()
                collect(current)
                progress?(TransferProgress(doneBytes: doneBytes, totalBytes: total, newBytes: newRawBytes))
                pending = current
                hasCurrent = hasNext
                round += 1
            }
            if let pending { try write(pending) }
            try writer.finish()
        } catch {
            writer.abandon()
            throw error
        }
        let entries = files.indices.map { i in
            FileEntry(path: files[i].relativePath, size: files[i].size, sha256: fileDigests[i], chunks: fileChunks[i])
        }
        let manifest = Manifest(files: entries)
        return StagedIngest(
            manifest: manifest,
            manifestID: manifest.id,
            writtenRawBytes: newRawBytes,
            writtenPackBytes: writer.bytesWritten,
            packs: writer.sealed,
            written: writer.written,
            sources: Dictionary(files.map { ($0.relativePath, $0.absolutePath) }, uniquingKeysWith: { a, _ in a }),
            lease: lease
        )
    }

    /// Read stage: fills `batch` with the next bytes to ingest, cut into chunks, and makes room
    /// for each chunk's encoded form. Returns false when every file has been read.
    func fill(_ batch: IngestBatch) throws -> Bool {
        guard try reader.fill(batch) else { return false }
        batch.slots.removeAll(keepingCapacity: true)
        var slot = 0
        batch.slots.append(0)
        for i in 0..<batch.chunkCount {
            slot += ByteGrouping.bound(batch.cuts[i + 1] - batch.cuts[i], elementSize: 4) + 32
            batch.slots.append(slot)
        }
        batch.output.reserve(slot)
        return true
    }

    /// Whole-file SHA-256 stage: batches of a file arrive in order, one per round.
    func hashFile(_ batch: IngestBatch) {
        fileHasher.update(UnsafeRawBufferPointer(rebasing: batch.input.memory[0..<batch.consumed]))
        if batch.isFileEnd { fileDigests[batch.fileIndex] = fileHasher.finalize() }
    }

    /// Chunk stage: hash, dedup check, and when new: encode it in the smallest form tried.
    func process(_ batch: IngestBatch, _ i: Int) throws {
        let bytes = batch.chunk(i)
        try store.workers.withContext { context in
            context.hasher.update(bytes)
            var result = IngestBatch.ChunkResult()
            result.id = context.hasher.finalize()
            let firstInPush = seen.withLock { $0.insert(result.id).inserted }
            if firstInPush, try !store.containsChunk(result.id) {
                result.isNew = true
                let slot = UnsafeMutableRawBufferPointer(
                    rebasing: batch.output.memory[batch.slots[i]..<batch.slots[i + 1]]
                )
                let form = try store.encodeForStore(
                    bytes,
                    elementSize: batch.elementSizes[i],
                    reference: batch.references[i],
                    into: slot,
                    context
                )
                result.codec = form.codec
                result.storedLength = form.length
                result.reference = form.reference
            }
            batch.results[i] = result
        }
    }

    /// Write stage: appends a finished batch's new chunks to packs.
    func write(_ batch: IngestBatch) throws {
        for i in 0..<batch.chunkCount where batch.results[i].isNew {
            let r = batch.results[i]
            let data = UnsafeRawBufferPointer(
                rebasing: batch.output.memory[batch.slots[i]..<batch.slots[i] + r.storedLength]
            )
            try writer.append(
                id: r.id,
                codec: r.codec,
                rawLength: batch.cuts[i + 1] - batch.cuts[i],
                data: data,
                reference: r.reference
            )
        }
    }

    /// After a round: records the batch's chunk list in order.
    func collect(_ batch: IngestBatch) {
        for i in 0..<batch.chunkCount {
            let length = batch.cuts[i + 1] - batch.cuts[i]
            fileChunks[batch.fileIndex].append(ChunkRef(id: batch.results[i].id, length: UInt32(length)))
            if batch.results[i].isNew { newRawBytes += Int64(length) }
        }
        doneBytes += Int64(batch.consumed)
    }

}

extension TransferProgress {
    /// Progress reported by a layer above the store (a transfer between stores).
    package init(done: Int64, of total: Int64, new: Int64) {
        self.init(doneBytes: done, totalBytes: total, newBytes: new)
    }
}

extension Store {
    /// Refuses a tree that holds the store or lies inside it: a store ingesting its own packs
    /// while it writes new ones would never see the same tree twice, and would store itself.
    func refuseOwnTree(_ directory: String) throws {
        let tree = URL(fileURLWithPath: directory).standardized.resolvingSymlinksInPath().path
        let store = URL(fileURLWithPath: root).standardized.resolvingSymlinksInPath().path
        let within = { (inner: String, outer: String) in inner == outer || outer == "/" || inner.hasPrefix(outer + "/")
        }
        if within(store, tree) {
            throw CairnStoreError(.invalidArgument, "\(directory) holds the store \(root) itself; nothing was stored")
        }
        if within(tree, store) {
            throw CairnStoreError(.invalidArgument, "\(directory) is inside the store \(root); nothing was stored")
        }
    }
}
