import Digest
import Glibc
import Synchronization

/// What `verify` found.
public struct VerifyReport: Sendable {
    /// One thing found wrong.
    public struct Problem: Sendable, CustomStringConvertible {
        /// What is wrong.
        public enum Kind: String, Sendable {
            /// A pack in the index is missing, truncated, or its trailer / table of contents is damaged.
            case damagedPack = "damaged-pack"
            /// An index entry points at data that does not hold the chunk.
            case badIndexEntry = "bad-index-entry"
            /// A chunk's stored bytes do not decode to bytes with its SHA-256 (deep only).
            case corruptChunk = "corrupt-chunk"
            /// A manifest references a chunk that is not indexed.
            case missingChunk = "missing-chunk"
            /// A manifest cannot be decoded.
            case damagedManifest = "damaged-manifest"
        }
        /// What is wrong.
        public var kind: Kind
        /// The chunk concerned, if any.
        public var chunk: SHA256Digest?
        /// The pack concerned, if any.
        public var packID: UInt64?
        /// The manifest concerned, if any.
        public var manifest: SHA256Digest?
        /// One line for a person.
        public var message: String
        /// The ``message``.
        public var description: String { message }
    }

    /// Whether every chunk was re-hashed.
    public var deep: Bool
    /// Packs in the index.
    public var packs = 0
    /// Chunks in the index.
    public var chunks = 0
    /// Manifests stored.
    public var manifests = 0
    /// Bytes re-hashed (deep only).
    public var verifiedBytes: Int64 = 0
    /// Pack files on disk that the index does not reference (left by interrupted pushes; GC removes them).
    public var unreferencedPacks = 0
    /// Temporary files in the store's `tmp/` (packs of pushes that were killed before they
    /// finished; GC removes them once older than its grace period), and their bytes.
    public var leftoverTemporaryFiles = 0
    /// Bytes of ``leftoverTemporaryFiles``.
    public var leftoverTemporaryBytes: Int64 = 0
    /// Everything found wrong.
    public var problems: [Problem] = []

    /// Whether nothing was found wrong.
    public var isHealthy: Bool { problems.isEmpty }

    /// Chunks found corrupt, missing or badly indexed.
    public var damagedChunks: Set<SHA256Digest> { Set(problems.compactMap(\.chunk)) }
}

extension Store {
    /// Checks the store. Always: every pack the index references exists, is complete and has an
    /// intact table of contents; every index entry matches its pack's table of contents; every
    /// manifest decodes and every chunk it references is indexed. With `deep`, also reads, decodes
    /// and re-hashes every chunk (in parallel).
    ///
    /// Damage is reported in the result, not thrown.
    ///
    /// ```swift
    /// let report = try store.verify(deep: true)
    /// for problem in report.problems { print(problem) }
    /// ```
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be read.
    public func verify(deep: Bool, progress: ((TransferProgress) -> Void)? = nil) throws -> VerifyReport {
        var report = VerifyReport(deep: deep)
        // One snapshot of the index.
        var packs: [UInt64: PackRecord] = [:]
        var chunks: [(id: SHA256Digest, location: ChunkLocation)] = []
        var manifests: [(id: SHA256Digest, bytes: [UInt8])] = []
        try lmdb {
            try environment.read { txn in
                try txn.forEach(packsDB) { key, value in
                    if key.count == 8, let record = PackRecord(value) {
                        packs[UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))] = record
                    }
                    return true
                }
                try txn.forEach(chunksDB) { key, value in
                    guard let id = SHA256Digest(indexKey: key) else {
                        report.problems.append(
                            .init(
                                kind: .badIndexEntry,
                                message: "the chunk index has a key of \(key.count) bytes, not a chunk id"
                            )
                        )
                        return true
                    }
                    if let location = ChunkLocation(value, maxChunk: config.chunker.max) {
                        chunks.append((id, location))
                    } else {
                        report.problems.append(
                            .init(
                                kind: .badIndexEntry,
                                chunk: id,
                                message: "index entry of chunk \(id.hex) is malformed"
                            )
                        )
                    }
                    return true
                }
                try txn.forEach(manifestsDB) { key, value in
                    guard let id = SHA256Digest(indexKey: key) else {
                        report.problems.append(
                            .init(
                                kind: .damagedManifest,
                                message: "the manifest index has a key of \(key.count) bytes, not a manifest id"
                            )
                        )
                        return true
                    }
                    manifests.append((id, Array(value)))
                    return true
                }
            }
        }
        report.packs = packs.count
        report.chunks = chunks.count
        report.manifests = manifests.count

        // Packs: trailer and table of contents.
        var tocs: [UInt64: [UInt64: PackFormat.TOCEntry]] = [:]
        var damagedPacks = Set<UInt64>()
        for (id, record) in packs.sorted(by: { $0.key < $1.key }) {
            do {
                let toc = try readTOC(id, expectedSize: record.size)
                tocs[id] = Dictionary(toc.map { ($0.offset, $0) }, uniquingKeysWith: { a, _ in a })
            } catch {
                damagedPacks.insert(id)
                report.problems.append(.init(kind: .damagedPack, packID: id, message: "\(error)"))
            }
        }
        // Index entries against the tables of contents.
        var chunksByID: [SHA256Digest: ChunkLocation] = [:]
        chunksByID.reserveCapacity(chunks.count)
        for (id, location) in chunks {
            chunksByID[id] = location
            guard let toc = tocs[location.packID] else {
                if packs[location.packID] == nil {
                    report.problems.append(
                        .init(
                            kind: .badIndexEntry,
                            chunk: id,
                            packID: location.packID,
                            message:
                                "chunk \(id.hex) points at pack \(PackFormat.fileName(location.packID)), which is not in the index"
                        )
                    )
                } else {
                    report.problems.append(
                        .init(
                            kind: .damagedPack,
                            chunk: id,
                            packID: location.packID,
                            message: "chunk \(id.hex) is in damaged pack \(PackFormat.fileName(location.packID))"
                        )
                    )
                }
                continue
            }
            guard let entry = toc[location.offset], entry.id == id, entry.storedLength == location.storedLength,
                entry.rawLength == location.rawLength, entry.codecRaw == location.codecRaw
            else {
                report.problems.append(
                    .init(
                        kind: .badIndexEntry,
                        chunk: id,
                        packID: location.packID,
                        message:
                            "chunk \(id.hex): index entry does not match the table of contents of pack \(PackFormat.fileName(location.packID))"
                    )
                )
                continue
            }
        }
        // Manifests.
        for (id, bytes) in manifests {
            guard SHA256Digest.hash(bytes) == id else {
                report.problems.append(
                    .init(
                        kind: .damagedManifest,
                        manifest: id,
                        message: "manifest \(id.hex): its bytes do not hash to its id"
                    )
                )
                continue
            }
            let manifest: Manifest
            do {
                manifest = try bytes.withUnsafeBytes { try Manifest.decode($0) }
            } catch {
                report.problems.append(
                    .init(kind: .damagedManifest, manifest: id, message: "manifest \(id.hex): \(error)")
                )
                continue
            }
            for file in manifest.files {
                for chunk in file.chunks where chunksByID[chunk.id] == nil {
                    report.problems.append(
                        .init(
                            kind: .missingChunk,
                            chunk: chunk.id,
                            manifest: id,
                            message:
                                "file \(file.path) of manifest \(id.shortHex): chunk \(chunk.id.hex) is not in the index"
                        )
                    )
                }
            }
        }
        // Pack files nobody references.
        let retired: Set<UInt64> = try lmdb {
            try environment.read { txn in
                var ids = Set<UInt64>()
                try txn.forEach(retiredDB) { key, _ in
                    if key.count == 8 { ids.insert(UInt64(bigEndian: key.loadUnaligned(as: UInt64.self))) }
                    return true
                }
                return ids
            }
        }
        report.unreferencedPacks = packFilesOnDisk().filter { packs[$0] == nil && !retired.contains($0) }.count
        let leftovers = temporaryFiles()
        report.leftoverTemporaryFiles = leftovers.count
        report.leftoverTemporaryBytes = leftovers.reduce(0) { $0 + $1.size }

        if deep {
            // Packs whose table of contents is damaged are reported already; everything else is re-hashed.
            let toCheck = chunks.filter {
                packs[$0.location.packID] != nil && !damagedPacks.contains($0.location.packID)
            }
            let (problems, bytes) = deepCheck(toCheck, progress: progress)
            report.problems += problems
            report.verifiedBytes = bytes
        }
        return report
    }

    /// Reads and checks a pack's trailer and table of contents.
    func readTOC(_ id: UInt64, expectedSize: Int64?) throws -> [PackFormat.TOCEntry] {
        let path = packPath(id)
        let name = PackFormat.fileName(id)
        let fd: Int32
        do {
            fd = try FileIO.open(path, O_RDONLY)
        } catch {
            throw CairnStoreError(.corruption, "pack \(name) is missing")
        }
        defer { close(fd) }
        let size = try FileIO.fileSize(fd, path: path)
        if let expectedSize, size != expectedSize {
            throw CairnStoreError(.corruption, "pack \(name) is \(size) bytes, the index says \(expectedSize)")
        }
        guard size >= Int64(PackFormat.headerSize + PackFormat.trailerSize) else {
            throw CairnStoreError(.corruption, "pack \(name) is truncated")
        }
        var trailerBytes = [UInt8](repeating: 0, count: PackFormat.trailerSize)
        _ = try trailerBytes.withUnsafeMutableBytes {
            try FileIO.pread(fd, $0, at: size - Int64(PackFormat.trailerSize), path: path)
        }
        guard let trailer = trailerBytes.withUnsafeBytes({ PackFormat.decodeTrailer($0) }), trailer.packID == id else {
            throw CairnStoreError(.corruption, "pack \(name) has a damaged trailer")
        }
        let tocLength = Int(trailer.count) * PackFormat.tocEntrySize
        guard Int64(trailer.tocOffset) + Int64(tocLength) + Int64(PackFormat.trailerSize) == size else {
            throw CairnStoreError(.corruption, "pack \(name): its table of contents does not fit the file")
        }
        var tocBytes = [UInt8](repeating: 0, count: tocLength)
        _ = try tocBytes.withUnsafeMutableBytes { try FileIO.pread(fd, $0, at: Int64(trailer.tocOffset), path: path) }
        guard SHA256Digest.hash(tocBytes) == trailer.tocDigest else {
            throw CairnStoreError(.corruption, "pack \(name): its table of contents is damaged (checksum mismatch)")
        }
        return tocBytes.withUnsafeBytes { PackFormat.decodeTOC($0) }
    }

    /// Ids of the pack files present under `packs/`.
    func packFilesOnDisk() -> [UInt64] {
        var ids: [UInt64] = []
        guard let top = opendir(root + "/packs") else { return ids }
        defer { closedir(top) }
        while let entry = readdir(top) {
            let sub = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard sub.count == 2, let dir = opendir(root + "/packs/" + sub) else { continue }
            while let file = readdir(dir) {
                let name = withUnsafeBytes(of: file.pointee.d_name) {
                    String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
                }
                if name.hasSuffix(".pack"), let id = UInt64(name.dropLast(5), radix: 16) { ids.append(id) }
            }
            closedir(dir)
        }
        return ids
    }

    /// Reads every chunk in `chunks`, decodes and re-hashes it. Returns the problems and bytes checked.
    private func deepCheck(
        _ chunks: [(id: SHA256Digest, location: ChunkLocation)],
        progress: ((TransferProgress) -> Void)?
    ) -> ([VerifyReport.Problem], Int64) {
        let sorted = chunks.sorted {
            ($0.location.packID, $0.location.offset) < ($1.location.packID, $1.location.offset)
        }
        // Spans of up to 8 MiB of neighbouring records in one pack.
        var spans: [Range<Int>] = []
        var start = 0
        while start < sorted.count {
            var end = start + 1
            let first = sorted[start].location
            while end < sorted.count, sorted[end].location.packID == first.packID,
                Int64(sorted[end].location.offset) + Int64(sorted[end].location.recordLength) - Int64(first.offset)
                    <= Int64(8 << 20)
            {
                end += 1
            }
            spans.append(start..<end)
            start = end
        }
        let collected = ProblemList()
        let total = sorted.reduce(Int64(0)) { $0 + Int64($1.location.rawLength) }
        parallelFor(spans.count) { s in
            let span = spans[s]
            let first = sorted[span.lowerBound].location
            let last = sorted[span.upperBound - 1].location
            let begin = Int64(first.offset)
            let length = Int(Int64(last.offset) + Int64(last.recordLength) - begin)
            do {
                try workers.withContext { ctx in
                    ctx.readBuffer.reserve(length)
                    let got = try readPack(
                        first.packID,
                        into: UnsafeMutableRawBufferPointer(rebasing: ctx.readBuffer.memory[0..<length]),
                        at: begin
                    )
                    for (id, location) in sorted[span] {
                        let at = Int(Int64(location.offset) - begin)
                        do {
                            guard at + location.recordLength <= got else {
                                throw CairnStoreError(
                                    .corruption,
                                    "chunk \(id.hex) is cut off: pack \(PackFormat.fileName(location.packID)) is truncated"
                                )
                            }
                            let record = UnsafeRawBufferPointer(
                                rebasing: ctx.readBuffer.memory[at..<at + location.recordLength]
                            )
                            let target = UnsafeMutableRawBufferPointer(
                                rebasing: ctx.scratch.memory[0..<Int(location.rawLength)]
                            )
                            try decodeRecord(
                                record,
                                expected: ChunkRef(id: id, length: location.rawLength),
                                location: location,
                                into: target,
                                context: ctx
                            ) {
                                CairnStoreError(
                                    .corruption,
                                    "chunk \(id.hex) in pack \(PackFormat.fileName(location.packID)) \($0)"
                                )
                            }
                            collected.addBytes(Int64(location.rawLength))
                        } catch {
                            collected.add(
                                .init(kind: .corruptChunk, chunk: id, packID: location.packID, message: "\(error)")
                            )
                        }
                    }
                }
            } catch {
                for (id, location) in sorted[span] {
                    collected.add(
                        .init(
                            kind: .corruptChunk,
                            chunk: id,
                            packID: location.packID,
                            message: "chunk \(id.hex): \(error)"
                        )
                    )
                }
            }
        }
        progress?(TransferProgress(doneBytes: total, totalBytes: total, newBytes: 0))
        return collected.result()
    }
}

private final class ProblemList: Sendable {
    private let state = Mutex<([VerifyReport.Problem], Int64)>(([], 0))
    func add(_ p: VerifyReport.Problem) { state.withLock { $0.0.append(p) } }
    func addBytes(_ n: Int64) { state.withLock { $0.1 += n } }
    func result() -> ([VerifyReport.Problem], Int64) { state.withLock { $0 } }
}
