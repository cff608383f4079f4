import Digest
import Foundation
import Glibc
import LMDB

/// What a garbage collection did.
public struct GarbageCollectionReport: Sendable, Codable, Equatable {
    /// Chunks dropped from the index (no live manifest uses them).
    public var removedChunks = 0
    /// Their raw bytes.
    public var removedChunkBytes: Int64 = 0
    /// Manifests dropped (no live version uses them).
    public var removedManifests = 0
    /// Packs whose live chunks were copied to new packs.
    public var rewrittenPacks = 0
    /// Pack files deleted from disk in this run (retired ones past the grace period, and orphans).
    public var deletedPackFiles = 0
    /// Pack files retired in this run and kept on disk until the grace period has passed.
    public var retiredPacks = 0
    /// Temporary files deleted from `tmp/` (left by killed pushes, older than the grace period).
    public var removedTemporaryFiles = 0
    /// Their bytes.
    public var removedTemporaryBytes: Int64 = 0
    /// Bytes of pack files referenced by the index before the run.
    public var storedBytesBefore: Int64 = 0
    /// Bytes of pack files referenced by the index after the run.
    public var storedBytesAfter: Int64 = 0

    enum CodingKeys: String, CodingKey {
        case removedChunks = "removed_chunks"
        case removedChunkBytes = "removed_chunk_bytes"
        case removedManifests = "removed_manifests"
        case rewrittenPacks = "rewritten_packs"
        case deletedPackFiles = "deleted_pack_files"
        case retiredPacks = "retired_packs"
        case removedTemporaryFiles = "removed_temporary_files"
        case removedTemporaryBytes = "removed_temporary_bytes"
        case storedBytesBefore = "stored_bytes_before"
        case storedBytesAfter = "stored_bytes_after"
    }
}

extension Store {
    /// Reclaims space that no live manifest uses.
    ///
    /// 1. In ONE index write transaction (so no push can commit in between): `liveManifests` names the
    ///    manifests to keep; every other manifest is dropped, then every chunk no kept manifest
    ///    references. Packs left without live chunks are retired.
    /// 2. Packs whose live share fell below half are rewritten: their live chunks are copied to new
    ///    packs and the index is repointed in one transaction; the old packs are retired.
    /// 3. Retired pack files are deleted once retired longer than `gracePeriod` seconds, so readers
    ///    that looked up a location before the change can finish. Pack files no index entry refers to
    ///    (left by interrupted pushes) older than the grace period are deleted when no push is running.
    ///
    /// A push that staged before step 1 and commits after it finds the chunks it relied on gone and
    /// stores them again (see ``commit(_:_:)``). Only one GC runs at a time (`locks/gc.lock`).
    ///
    /// ```swift
    /// let report = try store.collectGarbage { txn in liveManifestIDs(txn) }
    /// ```
    ///
    /// - Throws: ``CairnStoreError``: `.corruption` when a live manifest or an index entry is
    ///   damaged or a chunk to copy does not verify (nothing is removed in the first two cases),
    ///   `.io`; errors thrown by `liveManifests` (nothing is removed).
    public func collectGarbage(
        gracePeriod: Double = 3600,
        liveManifests: (MetadataTransaction) throws -> Set<SHA256Digest>
    ) throws -> GarbageCollectionReport {
        let gcLease = try StoreLock.exclusiveGC(root: root)
        defer { withExtendedLifetime(gcLease) {} }
        var report = GarbageCollectionReport()
        let now = Date().timeIntervalSince1970
        report.storedBytesBefore = try statistics().storedBytes

        // 1. Mark and sweep the index.
        let toRewrite: [UInt64] = try lmdb {
            try environment.write { txn in
                let live = try liveManifests(MetadataTransaction(store: self, txn: txn))
                var reachable = Set<SHA256Digest>()
                var deadManifests: [[UInt8]] = []
                var damaged: [String] = []
                try txn.forEach(manifestsDB) { key, value in
                    let id = try Self.indexID(key, of: "manifest")
                    if live.contains(id) {
                        do {
                            for file in try Manifest.decode(value).files {
                                for chunk in file.chunks { reachable.insert(chunk.id) }
                            }
                        } catch {
                            damaged.append(id.hex)
                        }
                    } else {
                        deadManifests.append(Array(key))
                    }
                    return true
                }
                // A live manifest that is gone or that we cannot read could reference anything:
                // sweeping would lose data.
                for id in live where try !id.withUnsafeBytes({ try txn.contains(manifestsDB, key: $0) }) {
                    throw CairnStoreError(
                        .corruption,
                        "gc stopped: live manifest \(id.hex) is missing from the index; nothing was removed"
                    )
                }
                if !damaged.isEmpty {
                    throw CairnStoreError(
                        .corruption,
                        "gc stopped: live manifest \(damaged[0]) is damaged; nothing was removed"
                    )
                }
                for key in deadManifests { try txn.delete(manifestsDB, key: key) }
                report.removedManifests = deadManifests.count

                // A live delta chunk keeps its reference chunk alive (references are never deltas).
                try txn.forEach(chunksDB) { key, value in
                    if let location = ChunkLocation(value, maxChunk: config.chunker.max),
                        let reference = location.reference,
                        reachable.contains(try Self.indexID(key, of: "chunk"))
                    {
                        reachable.insert(reference)
                    }
                    return true
                }
                var deadChunks: [[UInt8]] = []
                var liveBytes: [UInt64: Int64] = [:]
                try txn.forEach(chunksDB) { key, value in
                    let id = try Self.indexID(key, of: "chunk")
                    guard let location = ChunkLocation(value, maxChunk: config.chunker.max) else {
                        throw CairnStoreError(
                            .corruption,
                            "gc stopped: the index entry of chunk \(id.hex) is malformed; nothing was removed"
                        )
                    }
                    if reachable.contains(id) {
                        liveBytes[location.packID, default: 0] += Int64(location.recordLength)
                    } else {
                        deadChunks.append(Array(key))
                        report.removedChunkBytes += Int64(location.rawLength)
                    }
                    return true
                }
                for key in deadChunks { try txn.delete(chunksDB, key: key) }
                report.removedChunks = deadChunks.count

                var rewrite: [UInt64] = []
                var retire: [UInt64] = []
                try txn.forEach(packsDB) { key, value in
                    guard key.count == 8, let pack = PackRecord(value) else { return true }
                    let id = UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
                    let live = liveBytes[id] ?? 0
                    if live == 0 {
                        retire.append(id)
                    } else if Double(live) < 0.5 * Double(pack.size) {
                        rewrite.append(id)
                    }
                    return true
                }
                for id in retire { try retirePack(id, at: Date().timeIntervalSince1970, in: txn) }
                report.retiredPacks += retire.count
                return rewrite
            }
        }

        // 2. Rewrite packs with a low live share.
        if !toRewrite.isEmpty {
            report.rewrittenPacks = try rewritePacks(toRewrite, at: now)
            report.retiredPacks += report.rewrittenPacks
        }

        // 3. Delete retired pack files past the grace period, and old unreferenced ones.
        var temporary: (files: Int, bytes: Int64) = (0, 0)
        report.deletedPackFiles = try deleteExpiredPacks(
            gracePeriod: gracePeriod,
            now: Date().timeIntervalSince1970,
            temporary: &temporary
        )
        report.removedTemporaryFiles = temporary.files
        report.removedTemporaryBytes = temporary.bytes
        report.storedBytesAfter = try statistics().storedBytes
        return report
    }

    /// Forgets the pack holding `chunk`: every chunk in it leaves the index and the pack is
    /// retired (a later GC deletes its file). For a cache whose pack was found damaged, so that
    /// those chunks are fetched again; a store of record would lose them. Returns how many chunks
    /// were dropped (0 when `chunk` is not indexed).
    package func dropPack(holding chunk: SHA256Digest) throws -> Int {
        try lmdb {
            try environment.write { txn in
                guard let pack = try location(of: chunk, in: txn)?.packID else { return 0 }
                var keys: [[UInt8]] = []
                try txn.forEach(chunksDB) { key, value in
                    if ChunkLocation(value, maxChunk: config.chunker.max)?.packID == pack { keys.append(Array(key)) }
                    return true
                }
                for key in keys { _ = try txn.delete(chunksDB, key: key) }
                try retirePack(pack, at: Date().timeIntervalSince1970, in: txn)
                return keys.count
            }
        }
    }

    private func retirePack(_ id: UInt64, at time: Double, in txn: Transaction) throws {
        try txn.delete(packsDB, key: PackRecord.key(id))
        var stamp = UInt64(time).littleEndian
        try withUnsafeBytes(of: &stamp) { try txn.put(retiredDB, key: PackRecord.key(id), value: Array($0)) }
    }

    /// Copies the live chunks of `packs` into new packs and repoints the index; returns how many
    /// packs were retired.
    private func rewritePacks(_ packs: [UInt64], at now: Double) throws -> Int {
        let targets = Set(packs)
        var moving: [(id: SHA256Digest, location: ChunkLocation)] = []
        try lmdb {
            try environment.read { txn in
                try txn.forEach(chunksDB) { key, value in
                    if let location = ChunkLocation(value, maxChunk: config.chunker.max),
                        targets.contains(location.packID)
                    {
                        moving.append((try Self.indexID(key, of: "chunk"), location))
                    }
                    return true
                }
            }
        }
        moving.sort { ($0.location.packID, $0.location.offset) < ($1.location.packID, $1.location.offset) }
        let writer = PackWriter(root: root, targetSize: config.packSize)
        let buffer = AlignedBuffer(capacity: 1 << 20)
        for (id, location) in moving {
            buffer.reserve(location.recordLength)
            let record = UnsafeMutableRawBufferPointer(rebasing: buffer.memory[0..<location.recordLength])
            let got = try readPack(location.packID, into: record, at: Int64(location.offset))
            // Copy only what verifies: GC must never spread a damaged chunk.
            try workers.withContext { ctx in
                let target = UnsafeMutableRawBufferPointer(rebasing: ctx.scratch.memory[0..<Int(location.rawLength)])
                try decodeRecord(
                    UnsafeRawBufferPointer(rebasing: record[0..<got]),
                    expected: ChunkRef(id: id, length: location.rawLength),
                    location: location,
                    into: target,
                    context: ctx
                ) {
                    CairnStoreError(
                        .corruption,
                        "gc stopped: chunk \(id.hex) \($0); a deep verify names every damaged chunk"
                    )
                }
            }
            try writer.append(
                id: id,
                codec: Codec(rawValue: location.codecRaw)!,
                rawLength: Int(location.rawLength),
                data: UnsafeRawBufferPointer(rebasing: record[PackFormat.recordHeaderSize..<got]),
                reference: location.reference
            )
        }
        try writer.finish()
        let newLocations = Dictionary(writer.written.map { ($0.id, $0.location) }, uniquingKeysWith: { a, _ in a })
        let old = Dictionary(moving.map { ($0.id, $0.location) }, uniquingKeysWith: { a, _ in a })
        try lmdb {
            try environment.write { txn in
                for pack in writer.sealed {
                    let record = PackRecord(size: pack.size, chunkCount: UInt32(pack.chunkCount), createdAt: Int64(now))
                    try txn.put(packsDB, key: PackRecord.key(pack.id), value: record.encoded())
                }
                for (id, location) in newLocations.sorted(by: { $0.key < $1.key }) {
                    // Repoint only entries that still point where we copied from.
                    guard let current = try self.location(of: id, in: txn), current == old[id] else { continue }
                    let value = location.encoded()
                    try id.withUnsafeBytes { key in
                        try value.withUnsafeBytes { try txn.put(chunksDB, key: key, value: $0) }
                    }
                }
                let retiredAt = Date().timeIntervalSince1970
                for id in packs { try retirePack(id, at: retiredAt, in: txn) }
            }
        }
        return packs.count
    }

    /// Deletes retired packs older than the grace period and unreferenced pack files (and temporary
    /// files) older than it when no push is running. Returns the number of pack files deleted.
    private func deleteExpiredPacks(
        gracePeriod: Double,
        now: Double,
        temporary: inout (files: Int, bytes: Int64)
    ) throws -> Int {
        var deleted = 0
        var expired: [UInt64] = []
        var retired = Set<UInt64>()
        try lmdb {
            try environment.read { txn in
                try txn.forEach(retiredDB) { key, value in
                    guard key.count == 8, value.count == 8 else { return true }
                    let id = UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))
                    retired.insert(id)
                    let at = Double(UInt64(littleEndian: value.loadUnaligned(as: UInt64.self)))
                    if at + gracePeriod <= now { expired.append(id) }
                    return true
                }
            }
        }
        var gone: [UInt64] = []
        for id in expired {
            packHandles.forget(id)
            if unlink(packPath(id)) == 0 {
                deleted += 1
                gone.append(id)
            } else if errno == ENOENT {
                gone.append(id)  // already deleted (an earlier GC was interrupted): forget it
            }
        }
        if !gone.isEmpty {
            try lmdb {
                try environment.write { txn in for id in gone { try txn.delete(retiredDB, key: PackRecord.key(id)) } }
            }
        }
        // Unreferenced files: only while no push is in flight (their packs are unreferenced until commit).
        guard let pushLock = try StoreLock.tryExclusivePush(root: root) else { return deleted }
        defer { withExtendedLifetime(pushLock) {} }
        let referenced: Set<UInt64> = try lmdb {
            try environment.read { txn in
                var ids = Set<UInt64>()
                try txn.forEach(packsDB) { key, _ in
                    if key.count == 8 { ids.insert(UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))) }
                    return true
                }
                return ids
            }
        }
        for id in packFilesOnDisk() where !referenced.contains(id) && !retired.contains(id) {
            let path = packPath(id)
            var st = stat()
            guard stat(path, &st) == 0, Double(st.st_mtim.tv_sec) + gracePeriod <= now else { continue }
            packHandles.forget(id)
            if unlink(path) == 0 { deleted += 1 }
        }
        for file in temporaryFiles() where file.modified + gracePeriod <= now && unlink(file.path) == 0 {
            temporary.files += 1
            temporary.bytes += file.size
        }
        return deleted
    }

    /// The temporary files in `tmp/` (`*.tmp`): path, size and modification time (seconds).
    func temporaryFiles() -> [(path: String, size: Int64, modified: Double)] {
        guard let dir = opendir(root + "/tmp") else { return [] }
        defer { closedir(dir) }
        var files: [(path: String, size: Int64, modified: Double)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name.hasSuffix(".tmp") else { continue }
            let path = root + "/tmp/" + name
            var st = stat()
            if stat(path, &st) == 0 { files.append((path, Int64(st.st_size), Double(st.st_mtim.tv_sec))) }
        }
        return files
    }

    /// The id an index key holds, or the error that stops a collection on a damaged index.
    static func indexID(_ key: UnsafeRawBufferPointer, of what: String) throws -> SHA256Digest {
        guard let id = SHA256Digest(indexKey: key) else {
            throw CairnStoreError(
                .corruption,
                "gc stopped: the \(what) index has a key of \(key.count) bytes (it is damaged); nothing was removed"
            )
        }
        return id
    }
}
