import CairnFormats
import CairnStore
import Digest

/// What changed between two versions: metadata, files, the tensors of safetensors files, and the
/// store bytes they share. Field names are snake_case (`diff --json`).
public struct VersionDiff: Codable, Sendable, Equatable {
    /// One of the two versions.
    public struct Side: Codable, Sendable, Equatable {
        public var reference: String
        public var model: String
        public var version: Int
        public var stage: Stage
        public var createdBy: String
        public var createdAt: String
        public var message: String
        public var manifest: String
        public var fileCount: Int
        public var logicalBytes: Int64

        enum CodingKeys: String, CodingKey {
            case reference, model, version, stage, message, manifest
            case createdBy = "created_by"
            case createdAt = "created_at"
            case fileCount = "file_count"
            case logicalBytes = "logical_bytes"
        }

        init(_ r: VersionRecord) {
            reference = r.reference
            model = r.model
            version = r.version
            stage = r.stage
            createdBy = r.createdBy
            createdAt = r.createdAt
            message = r.message
            manifest = r.manifest
            fileCount = r.fileCount
            logicalBytes = r.logicalBytes
        }
    }

    /// A metric of either version: its values and `to - from` when both have it.
    public struct MetricChange: Codable, Sendable, Equatable {
        public var name: String
        public var from: Double?
        public var to: Double?
        public var delta: Double?

        public init(name: String, from: Double?, to: Double?, delta: Double?) {
            self.name = name
            self.from = from
            self.to = to
            self.delta = delta
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(from, forKey: .from)
            try c.encode(to, forKey: .to)
            try c.encode(delta, forKey: .delta)
        }
    }

    /// A key whose value differs: nil `from` means added, nil `to` removed.
    public struct ValueChange: Codable, Sendable, Equatable {
        public var name: String
        public var from: String?
        public var to: String?

        public init(name: String, from: String?, to: String?) {
            self.name = name
            self.from = from
            self.to = to
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(from, forKey: .from)
            try c.encode(to, forKey: .to)
        }
    }

    public struct StageChange: Codable, Sendable, Equatable {
        public var from: Stage
        public var to: Stage
        public var changed: Bool

        public init(from: Stage, to: Stage, changed: Bool) {
            self.from = from
            self.to = to
            self.changed = changed
        }
    }

    public struct LineageChange: Codable, Sendable, Equatable {
        public var parentsAdded: [String]
        public var parentsRemoved: [String]
        public var datasetsAdded: [String]
        public var datasetsRemoved: [String]
        /// Set when the source run differs.
        public var source: ValueChange?

        enum CodingKeys: String, CodingKey {
            case source
            case parentsAdded = "parents_added"
            case parentsRemoved = "parents_removed"
            case datasetsAdded = "datasets_added"
            case datasetsRemoved = "datasets_removed"
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(parentsAdded, forKey: .parentsAdded)
            try c.encode(parentsRemoved, forKey: .parentsRemoved)
            try c.encode(datasetsAdded, forKey: .datasetsAdded)
            try c.encode(datasetsRemoved, forKey: .datasetsRemoved)
            try c.encode(source, forKey: .source)
        }

        public var isEmpty: Bool {
            parentsAdded.isEmpty && parentsRemoved.isEmpty && datasetsAdded.isEmpty && datasetsRemoved.isEmpty && source == nil
        }
    }

    public struct Metadata: Codable, Sendable, Equatable {
        /// Every metric of either version, by name.
        public var metrics: [MetricChange]
        /// Params that differ, by name.
        public var params: [ValueChange]
        /// Tags that differ, by name.
        public var tags: [ValueChange]
        public var stage: StageChange
        public var lineage: LineageChange
    }

    public struct FileSummary: Codable, Sendable, Equatable {
        public var path: String
        public var size: Int64
        public var sha256: String
    }

    public struct FileChange: Codable, Sendable, Equatable {
        public var path: String
        public var fromSize: Int64
        public var toSize: Int64
        public var fromSHA256: String
        public var toSHA256: String

        enum CodingKeys: String, CodingKey {
            case path
            case fromSize = "from_size"
            case toSize = "to_size"
            case fromSHA256 = "from_sha256"
            case toSHA256 = "to_sha256"
        }
    }

    public struct Files: Codable, Sendable, Equatable {
        public var added: [FileSummary]
        public var removed: [FileSummary]
        public var changed: [FileChange]
        /// Paths of files with the same content in both.
        public var unchanged: [String]
    }

    public struct TensorSummary: Codable, Sendable, Equatable {
        public var file: String
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var bytes: Int64
    }

    /// A tensor in both versions whose bytes differ.
    public struct TensorChange: Codable, Sendable, Equatable {
        public var name: String
        public var fromFile: String
        public var toFile: String
        public var fromDtype: String
        public var toDtype: String
        public var fromShape: [Int]
        public var toShape: [Int]
        public var fromBytes: Int64
        public var toBytes: Int64
        public var dtypeChanged: Bool
        public var shapeChanged: Bool

        enum CodingKeys: String, CodingKey {
            case name
            case fromFile = "from_file"
            case toFile = "to_file"
            case fromDtype = "from_dtype"
            case toDtype = "to_dtype"
            case fromShape = "from_shape"
            case toShape = "to_shape"
            case fromBytes = "from_bytes"
            case toBytes = "to_bytes"
            case dtypeChanged = "dtype_changed"
            case shapeChanged = "shape_changed"
        }
    }

    /// A tensor with the same bytes in both versions, in a different file.
    public struct TensorMove: Codable, Sendable, Equatable {
        public var name: String
        public var fromFile: String
        public var toFile: String

        enum CodingKeys: String, CodingKey {
            case name
            case fromFile = "from_file"
            case toFile = "to_file"
        }
    }

    /// Tensors of the safetensors files of both versions, matched by name: first within the same
    /// path, then (for shards re-cut differently) within the same directory.
    public struct Tensors: Codable, Sendable, Equatable {
        public var added: [TensorSummary]
        public var removed: [TensorSummary]
        public var changed: [TensorChange]
        public var moved: [TensorMove]
        /// Tensors with the same bytes in the same file of both versions.
        public var unchanged: Int
        /// Bytes of the tensors that are unchanged or moved.
        public var unchangedBytes: Int64
        /// Tensors whose change was decided by comparing their chunk ids (no data read).
        public var comparedByChunks: Int
        /// Tensors whose change was decided by reading and hashing their bytes.
        public var comparedByHash: Int

        enum CodingKeys: String, CodingKey {
            case added, removed, changed, moved, unchanged
            case unchangedBytes = "unchanged_bytes"
            case comparedByChunks = "compared_by_chunks"
            case comparedByHash = "compared_by_hash"
        }
    }

    /// Raw bytes of distinct chunks: in both versions, or in only one.
    public struct Storage: Codable, Sendable, Equatable {
        public var sharedBytes: Int64
        public var uniqueFromBytes: Int64
        public var uniqueToBytes: Int64
        public var sharedChunks: Int
        public var uniqueFromChunks: Int
        public var uniqueToChunks: Int

        enum CodingKeys: String, CodingKey {
            case sharedBytes = "shared_bytes"
            case uniqueFromBytes = "unique_from_bytes"
            case uniqueToBytes = "unique_to_bytes"
            case sharedChunks = "shared_chunks"
            case uniqueFromChunks = "unique_from_chunks"
            case uniqueToChunks = "unique_to_chunks"
        }
    }

    public var from: Side
    public var to: Side
    public var metadata: Metadata
    public var files: Files
    public var tensors: Tensors
    public var storage: Storage
}

extension VersionContentReader {
    /// Compares two versions (of one model or of two).
    ///
    /// Tensors are compared by name; a tensor is changed when its bytes differ. When both versions
    /// cut it into the same slices (safetensors files are cut at tensor boundaries), that is decided
    /// from the chunk ids in the manifests without reading data; otherwise both tensors are read and
    /// hashed. Only the headers of safetensors files are read otherwise.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` naming the version, file and problem when a
    ///   safetensors file of either version is malformed.
    public func diff(_ a: VersionRecord, _ b: VersionRecord) throws -> VersionDiff {
        let fromManifest = try manifest(of: a)
        let toManifest = try manifest(of: b)
        let metadata = Self.metadataDiff(a, b)
        let files = Self.fileDiff(fromManifest, toManifest)
        let tensors = try tensorDiff(a, fromManifest, b, toManifest)
        return VersionDiff(
            from: .init(a), to: .init(b), metadata: metadata, files: files, tensors: tensors,
            storage: Self.storageDiff(fromManifest, toManifest))
    }

    static func metadataDiff(_ a: VersionRecord, _ b: VersionRecord) -> VersionDiff.Metadata {
        let metricNames = Set(a.metrics.keys).union(b.metrics.keys).sorted()
        let metrics = metricNames.map { name in
            let from = a.metrics[name]
            let to = b.metrics[name]
            return VersionDiff.MetricChange(name: name, from: from, to: to, delta: from.flatMap { f in to.map { $0 - f } })
        }
        func changes(_ x: [String: String], _ y: [String: String]) -> [VersionDiff.ValueChange] {
            Set(x.keys).union(y.keys).sorted().compactMap { key in
                x[key] == y[key] ? nil : VersionDiff.ValueChange(name: key, from: x[key], to: y[key])
            }
        }
        func minus(_ x: [String], _ y: [String]) -> [String] {
            let other = Set(y)
            return x.filter { !other.contains($0) }
        }
        let lineage = VersionDiff.LineageChange(
            parentsAdded: minus(b.parents, a.parents), parentsRemoved: minus(a.parents, b.parents),
            datasetsAdded: minus(b.datasets, a.datasets), datasetsRemoved: minus(a.datasets, b.datasets),
            source: a.source == b.source ? nil : VersionDiff.ValueChange(name: "source", from: a.source, to: b.source))
        return VersionDiff.Metadata(
            metrics: metrics, params: changes(a.params, b.params), tags: changes(a.tags, b.tags),
            stage: .init(from: a.stage, to: b.stage, changed: a.stage != b.stage), lineage: lineage)
    }

    static func fileDiff(_ a: Manifest, _ b: Manifest) -> VersionDiff.Files {
        let old = Dictionary(a.files.map { ($0.path, $0) }, uniquingKeysWith: { x, _ in x })
        let new = Dictionary(b.files.map { ($0.path, $0) }, uniquingKeysWith: { x, _ in x })
        func summary(_ f: FileEntry) -> VersionDiff.FileSummary { .init(path: f.path, size: f.size, sha256: f.sha256.hex) }
        var files = VersionDiff.Files(added: [], removed: [], changed: [], unchanged: [])
        for f in b.files where old[f.path] == nil { files.added.append(summary(f)) }
        for f in a.files {
            guard let g = new[f.path] else {
                files.removed.append(summary(f))
                continue
            }
            if f.sha256 == g.sha256 && f.size == g.size {
                files.unchanged.append(f.path)
            } else {
                files.changed.append(
                    .init(path: f.path, fromSize: f.size, toSize: g.size, fromSHA256: f.sha256.hex, toSHA256: g.sha256.hex))
            }
        }
        return files
    }

    static func storageDiff(_ a: Manifest, _ b: Manifest) -> VersionDiff.Storage {
        func chunks(_ m: Manifest) -> [SHA256Digest: UInt32] {
            var out: [SHA256Digest: UInt32] = [:]
            for f in m.files { for c in f.chunks { out[c.id] = c.length } }
            return out
        }
        let x = chunks(a)
        let y = chunks(b)
        var s = VersionDiff.Storage(sharedBytes: 0, uniqueFromBytes: 0, uniqueToBytes: 0, sharedChunks: 0, uniqueFromChunks: 0, uniqueToChunks: 0)
        for (id, length) in x {
            if y[id] != nil {
                s.sharedBytes += Int64(length)
                s.sharedChunks += 1
            } else {
                s.uniqueFromBytes += Int64(length)
                s.uniqueFromChunks += 1
            }
        }
        for (id, length) in y where x[id] == nil {
            s.uniqueToBytes += Int64(length)
            s.uniqueToChunks += 1
        }
        return s
    }

    /// The tensors of every safetensors file of a version (identical files' headers read once).
    private func locatedTensors(
        _ version: VersionRecord, _ manifest: Manifest, headers: inout [SHA256Digest: SafetensorsHeader]
    ) throws -> [LocatedTensor] {
        var out: [LocatedTensor] = []
        for file in manifest.files where SafetensorsPaths.isSafetensors(file.path) {
            let header: SafetensorsHeader
            if let cached = headers[file.sha256] {
                header = cached
            } else {
                do {
                    header = try safetensorsHeader(of: file, in: version)
                } catch let error as RegistryError {
                    throw RegistryError(error.code, "\(version.reference): \(error.message)")
                }
                headers[file.sha256] = header
            }
            let offsets = file.chunkOffsets()
            out += header.tensors.map { LocatedTensor(file: file, offsets: offsets, tensor: $0) }
        }
        return out
    }

    private func tensorDiff(_ a: VersionRecord, _ x: Manifest, _ b: VersionRecord, _ y: Manifest) throws -> VersionDiff.Tensors {
        var headers: [SHA256Digest: SafetensorsHeader] = [:]
        let old = try locatedTensors(a, x, headers: &headers)
        let new = try locatedTensors(b, y, headers: &headers)

        // Match by (path, name), then the rest by (directory, name) where that is unique on both sides.
        var pairs: [(Int, Int)] = []
        var oldMatched = [Bool](repeating: false, count: old.count)
        var newMatched = [Bool](repeating: false, count: new.count)
        var byPath: [TensorKey: Int] = [:]
        for (j, t) in new.enumerated() { byPath[TensorKey(scope: t.file.path, name: t.tensor.name)] = j }
        for (i, t) in old.enumerated() {
            if let j = byPath[TensorKey(scope: t.file.path, name: t.tensor.name)] {
                pairs.append((i, j))
                oldMatched[i] = true
                newMatched[j] = true
            }
        }
        func unique(_ list: [LocatedTensor], _ matched: [Bool]) -> [TensorKey: Int] {
            var seen: [TensorKey: Int?] = [:]
            for (i, t) in list.enumerated() where !matched[i] {
                let key = TensorKey(scope: SafetensorsPaths.directoryPart(t.file.path), name: t.tensor.name)
                seen[key] = seen[key] == nil ? i : .some(nil)
            }
            return seen.compactMapValues { $0 }
        }
        let oldRest = unique(old, oldMatched)
        let newRest = unique(new, newMatched)
        for (key, i) in oldRest.sorted(by: { $0.value < $1.value }) {
            if let j = newRest[key] {
                pairs.append((i, j))
                oldMatched[i] = true
                newMatched[j] = true
            }
        }

        var result = VersionDiff.Tensors(
            added: [], removed: [], changed: [], moved: [], unchanged: 0, unchangedBytes: 0, comparedByChunks: 0, comparedByHash: 0)
        for (i, t) in old.enumerated() where !oldMatched[i] { result.removed.append(t.summary) }
        for (j, t) in new.enumerated() where !newMatched[j] { result.added.append(t.summary) }
        for (i, j) in pairs.sorted(by: { ($0.1, $0.0) < ($1.1, $1.0) }) {
            let p = old[i]
            let q = new[j]
            var same = p.tensor.dtype == q.tensor.dtype && p.tensor.shape == q.tensor.shape
            if same && p.tensor.byteCount > 0 {
                if let s = p.slices, let t = q.slices, s.map(\.length) == t.map(\.length) {
                    same = s.map(\.id) == t.map(\.id)
                    result.comparedByChunks += 1
                } else {
                    same = try hash(p, in: a) == hash(q, in: b)
                    result.comparedByHash += 1
                }
            }
            if same {
                result.unchangedBytes += q.tensor.byteCount
                if p.file.path == q.file.path {
                    result.unchanged += 1
                } else {
                    result.moved.append(.init(name: q.tensor.name, fromFile: p.file.path, toFile: q.file.path))
                }
            } else {
                result.changed.append(
                    .init(
                        name: q.tensor.name, fromFile: p.file.path, toFile: q.file.path,
                        fromDtype: p.tensor.dtype.rawValue, toDtype: q.tensor.dtype.rawValue,
                        fromShape: p.tensor.shape, toShape: q.tensor.shape,
                        fromBytes: p.tensor.byteCount, toBytes: q.tensor.byteCount,
                        dtypeChanged: p.tensor.dtype != q.tensor.dtype, shapeChanged: p.tensor.shape != q.tensor.shape))
            }
        }
        return result
    }

    /// SHA-256 of a tensor's bytes, streamed from the store.
    private func hash(_ t: LocatedTensor, in version: VersionRecord) throws -> SHA256Digest {
        let hasher = SHA256Hasher()
        try readRange(version, file: t.file, range: t.tensor.fileRange) { bytes, _ in hasher.update(bytes) }
        return hasher.finalize()
    }
}

/// A tensor of a stored file, with the file's chunk offsets for slice lookups.
private struct LocatedTensor {
    var file: FileEntry
    var offsets: [Int64]
    var tensor: SafetensorsHeader.Tensor

    var summary: VersionDiff.TensorSummary {
        .init(file: file.path, name: tensor.name, dtype: tensor.dtype.rawValue, shape: tensor.shape, bytes: tensor.byteCount)
    }

    /// The chunks that cover exactly the tensor's bytes, or nil when it does not start and end on
    /// chunk boundaries.
    var slices: ArraySlice<ChunkRef>? {
        let range = tensor.fileRange
        guard let first = Self.boundary(range.lowerBound, offsets), let end = Self.boundary(range.upperBound, offsets) else {
            return nil
        }
        return file.chunks[first..<end]
    }

    /// The index of the chunk boundary at `offset`, if there is one.
    static func boundary(_ offset: Int64, _ offsets: [Int64]) -> Int? {
        var lo = 0
        var hi = offsets.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if offsets[mid] < offset { lo = mid + 1 } else { hi = mid }
        }
        return lo < offsets.count && offsets[lo] == offset ? lo : nil
    }
}

/// A tensor name within a scope (a file's path, or its directory).
private struct TensorKey: Hashable {
    var scope: String
    var name: String
}
