import Digest
import Synchronization

// Scanning a tree into a manifest without storing anything: chunked and hashed as a push would,
// with where each chunk can be read again.

/// A chunk of a local file to send: the file, where the chunk starts, its id and length.
package struct ChunkSource: Sendable, Equatable {
    package var path: String
    package var offset: Int64
    package var chunk: ChunkRef
    /// Hints for the receiver's codecs (see ``ChunkBundle``).
    package var elementSize: Int
    package var reference: SHA256Digest?

    package init(path: String, offset: Int64, chunk: ChunkRef, elementSize: Int = 0, reference: SHA256Digest? = nil) {
        self.path = path
        self.offset = offset
        self.chunk = chunk
        self.elementSize = elementSize
        self.reference = reference
    }
}

/// A tree chunked and hashed exactly as ``Store/stage(files:planner:progress:)`` would, with nothing
/// stored: its manifest, and where each chunk can be read again.
package struct ScannedTree: Sendable {
    package let manifest: Manifest
    /// Relative path → absolute path of each file.
    package let sources: [String: String]
    /// Codec hints of the plans' chunks: element size (float tensors) and delta reference.
    let hints: [SHA256Digest: (elementSize: Int, reference: SHA256Digest?)]

    /// The tree with the ids of chunks scanned without hashing filled in from `assigned` (by
    /// absolute path and offset, as in ``ChunkSource``), and their codec hints kept.
    ///
    /// - Throws: ``CairnStoreError`` `.invalidArgument` if a chunk has no id and none was assigned.
    package func assigning(_ assigned: [ChunkSource]) throws -> ScannedTree {
        var byPlace: [String: [Int64: ChunkSource]] = [:]
        for source in assigned { byPlace[source.path, default: [:]][source.offset] = source }
        var hints = self.hints
        var files: [FileEntry] = []
        for var file in manifest.files {
            let path = sources[file.path] ?? ""
            var offset: Int64 = 0
            for c in file.chunks.indices {
                if file.chunks[c].id == .zero {
                    guard let source = byPlace[path]?[offset], source.chunk.id != .zero else {
                        throw CairnStoreError(.invalidArgument, "\(file.path): no id for the chunk at \(offset)")
                    }
                    file.chunks[c].id = source.chunk.id
                    if source.elementSize != 0 || source.reference != nil, hints[source.chunk.id] == nil {
                        hints[source.chunk.id] = (source.elementSize, source.reference)
                    }
                }
                offset += Int64(file.chunks[c].length)
            }
            files.append(file)
        }
        return ScannedTree(manifest: Manifest(files: files), sources: sources, hints: hints)
    }

    /// Where each chunk of `ids` can be read (the first occurrence of each id).
    package func chunkSources(_ ids: Set<SHA256Digest>) -> [ChunkSource] {
        var out: [ChunkSource] = []
        var seen = Set<SHA256Digest>()
        for file in manifest.files {
            guard let path = sources[file.path] else { continue }
            var offset: Int64 = 0
            for chunk in file.chunks {
                if ids.contains(chunk.id), seen.insert(chunk.id).inserted {
                    let hint = hints[chunk.id]
                    out.append(
                        ChunkSource(
                            path: path,
                            offset: offset,
                            chunk: chunk,
                            elementSize: hint?.elementSize ?? 0,
                            reference: hint?.reference
                        )
                    )
                }
                offset += Int64(chunk.length)
            }
        }
        return out
    }
}

extension Store {
    /// Chunks and hashes the files exactly as ``stage(files:planner:progress:)`` does with these
    /// chunking parameters, but stores nothing: what a sender computes before asking a receiving
    /// store which chunks it lacks. Runs on every core with bounded memory (two batches of at least 8 MiB).
    ///
    /// - Throws: ``CairnStoreError``: `.invalidArgument`, `.io`, `.conflict` if a file changes while read.
    ///
    /// With `control`, chunk hashing can be turned off between rounds (the ids are then all
    /// zeros, for a receiver that assigns them; see ``ScannedTree/assigning(_:)``). Files are always
    /// hashed.
    package static func scan(
        directory: String,
        parameters: ChunkerParameters,
        planner: ChunkingPlanner? = nil,
        progress: ((TransferProgress) -> Void)? = nil,
        control: ScanControl? = nil,
        onRound: ((ScanRound) throws -> Void)? = nil
    ) throws -> ScannedTree {
        try parameters.validate()
        let files = try FileTree.scan(directory)
        var seenPaths = Set<String>()
        for f in files {
            try RelativePath.validate(f.relativePath)
            guard seenPaths.insert(f.relativePath).inserted else {
                throw CairnStoreError(.invalidArgument, "the path \(f.relativePath) appears twice")
            }
        }
        let plans = files.map { ChunkingPlan.make(for: $0, planner: planner, maxChunk: parameters.max) }
        let scanner = TreeScanner(files: files, plans: plans, parameters: parameters, progress: progress)
        scanner.onRound = onRound
        scanner.control = control
        let manifest = try scanner.run()
        return ScannedTree(
            manifest: manifest,
            sources: Dictionary(files.map { ($0.relativePath, $0.absolutePath) }, uniquingKeysWith: { a, _ in a }),
            hints: scanner.hints
        )
    }
}

/// Chunks and hashes files without storing them: the cutting of the ingest pipeline's read stage
/// (same plans, same FastCDC calls, same batch rule), with chunk and file hashing in parallel.
private final class TreeScanner {
    let files: [SourceFile]
    let reader: ChunkedReader
    let progress: ((TransferProgress) -> Void)?
    let pool: WorkerPool
    let fileHasher = SHA256Hasher()
    let errors = FirstError()

    var fileChunks: [[ChunkRef]]
    var fileDigests: [SHA256Digest]
    /// Codec hints of chunks that have any (first occurrence).
    var hints: [SHA256Digest: (elementSize: Int, reference: SHA256Digest?)] = [:]
    /// Called after each round with its chunks and their bytes.
    var onRound: ((ScanRound) throws -> Void)?
    var control: ScanControl?

    final class Batch: ChunkBatch {
        var ids: [SHA256Digest] = []
    }

    init(
        files: [SourceFile],
        plans: [ChunkingPlan],
        parameters: ChunkerParameters,
        progress: ((TransferProgress) -> Void)?
    ) {
        self.files = files
        reader = ChunkedReader(files: files, plans: plans, parameters: parameters)
        self.progress = progress
        pool = WorkerPool(level: 1, maxChunk: parameters.max)
        fileChunks = Array(repeating: [], count: files.count)
        fileDigests = Array(repeating: .zero, count: files.count)
    }

    func run() throws -> Manifest {
        let total = files.reduce(Int64(0)) { $0 + $1.size }
        var done: Int64 = 0
        let batches = [Batch(capacity: reader.batchCapacity), Batch(capacity: reader.batchCapacity)]
        var round = 0
        var hasCurrent = try reader.fill(batches[0])
        while hasCurrent {
            let current = batches[round % 2]
            let next = batches[(round + 1) % 2]
            current.ids = Array(repeating: .zero, count: current.chunkCount)
            let hashesChunks = control?.hashesChunks ?? true
            var hasNext = false
            parallelFor(2 + current.chunkCount) { i in
                if errors.isSet { return }
                do {
                    switch i {
                    case 0: hasNext = try reader.fill(next)
                    case 1:
                        fileHasher.update(UnsafeRawBufferPointer(rebasing: current.input.memory[0..<current.consumed]))
                        if current.isFileEnd { fileDigests[current.fileIndex] = fileHasher.finalize() }
                    default:
                        guard hashesChunks else { return }
                        let bytes = current.chunk(i - 2)
                        current.ids[i - 2] = pool.withContext { ctx in
                            ctx.hasher.update(bytes)
                            return ctx.hasher.finalize()
                        }
                    }
                } catch {
                    errors.record(error)
                }
            }
            try errors.rethrow()
            for c in 0..<current.chunkCount {
                if current.ids[c] != .zero, current.elementSizes[c] != 0 || current.references[c] != nil,
                    hints[current.ids[c]] == nil
                {
                    hints[current.ids[c]] = (current.elementSizes[c], current.references[c])
                }
                fileChunks[current.fileIndex].append(
                    ChunkRef(id: current.ids[c], length: UInt32(current.cuts[c + 1] - current.cuts[c]))
                )
            }
            done += Int64(current.consumed)
            if let onRound {
                let path = files[current.fileIndex].absolutePath
                let chunks = (0..<current.chunkCount).map { c in
                    ChunkSource(
                        path: path,
                        offset: current.fileOffset + Int64(current.cuts[c]),
                        chunk: ChunkRef(id: current.ids[c], length: UInt32(current.cuts[c + 1] - current.cuts[c])),
                        elementSize: current.elementSizes[c],
                        reference: current.references[c]
                    )
                }
                try onRound(
                    ScanRound(
                        chunks: chunks,
                        starts: Array(current.cuts.dropLast()),
                        bytes: UnsafeRawBufferPointer(rebasing: current.input.memory[0..<current.consumed])
                    )
                )
            }
            progress?(TransferProgress(doneBytes: done, totalBytes: total, newBytes: 0))
            hasCurrent = hasNext
            round += 1
        }
        return Manifest(
            files: files.indices.map { i in
                FileEntry(
                    path: files[i].relativePath,
                    size: files[i].size,
                    sha256: fileDigests[i],
                    chunks: fileChunks[i]
                )
            }
        )
    }
}

/// Turns chunk hashing of a running ``Store/scan(directory:parameters:planner:progress:control:onRound:)``
/// on or off; a change applies from the next round on.
package final class ScanControl: Sendable {
    private let hashing = Atomic<Bool>(true)

    package init() {}

    /// Whether chunks are hashed (their ids are all zeros otherwise).
    package var hashesChunks: Bool {
        get { hashing.load(ordering: .relaxed) }
        set { hashing.store(newValue, ordering: .relaxed) }
    }
}

/// One round of ``Store/scan(directory:parameters:planner:progress:control:onRound:)``: chunks just cut and
/// hashed, with their bytes (valid only during the callback).
package struct ScanRound {
    package let chunks: [ChunkSource]
    let starts: [Int]
    let bytes: UnsafeRawBufferPointer

    /// The bytes of chunk `i`. Do not keep the pointer past the callback.
    package func bytes(of i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[starts[i]..<starts[i] + Int(chunks[i].chunk.length)])
    }
}
