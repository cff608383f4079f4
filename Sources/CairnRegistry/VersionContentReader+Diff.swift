import CairnFormats
import CairnStore
import Digest

extension VersionContentReader {
    /// Compares two versions (of one model or of two).
    ///
    /// Tensors are compared by name; a tensor is changed when its bytes differ. When both versions
    /// cut it into the same slices (safetensors files are cut at tensor boundaries), that is decided
    /// from the chunk ids in the manifests without reading data; otherwise both tensors are read and
    /// hashed. Only the headers of safetensors files are read otherwise.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` naming the version, file and problem when a
    ///   safetensors file of either version is malformed; what ``manifest(of:)`` and
    ///   ``readRange(_:file:range:sink:)`` throw.
    public func diff(_ a: VersionRecord, _ b: VersionRecord) throws -> VersionDiff {
        let fromManifest = try manifest(of: a)
        let toManifest = try manifest(of: b)
        let metadata = Self.metadataDiff(a, b)
        let files = Self.fileDiff(fromManifest, toManifest)
        let tensors = try tensorDiff(a, fromManifest, b, toManifest)
        return VersionDiff(
            from: .init(a),
            to: .init(b),
            metadata: metadata,
            files: files,
            tensors: tensors,
            storage: Self.storageDiff(fromManifest, toManifest)
        )
    }

    static func metadataDiff(_ a: VersionRecord, _ b: VersionRecord) -> VersionDiff.Metadata {
        let metricNames = Set(a.metrics.keys).union(b.metrics.keys).sorted()
        let metrics = metricNames.map { name in
            let from = a.metrics[name]
            let to = b.metrics[name]
            return VersionDiff.MetricChange(
                name: name,
                from: from,
                to: to,
                delta: from.flatMap { f in to.map { $0 - f } }
            )
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
            parentsAdded: minus(b.parents, a.parents),
            parentsRemoved: minus(a.parents, b.parents),
            datasetsAdded: minus(b.datasets, a.datasets),
            datasetsRemoved: minus(a.datasets, b.datasets),
            source: a.source == b.source ? nil : VersionDiff.ValueChange(name: "source", from: a.source, to: b.source)
        )
        return VersionDiff.Metadata(
            metrics: metrics,
            params: changes(a.params, b.params),
            tags: changes(a.tags, b.tags),
            stage: .init(from: a.stage, to: b.stage, changed: a.stage != b.stage),
            lineage: lineage
        )
    }

    static func fileDiff(_ a: Manifest, _ b: Manifest) -> VersionDiff.Files {
        let old = Dictionary(a.files.map { ($0.path, $0) }, uniquingKeysWith: { x, _ in x })
        let new = Dictionary(b.files.map { ($0.path, $0) }, uniquingKeysWith: { x, _ in x })
        func summary(_ f: FileEntry) -> VersionDiff.FileSummary {
            .init(path: f.path, size: f.size, sha256: f.sha256.hex)
        }
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
                    .init(
                        path: f.path,
                        fromSize: f.size,
                        toSize: g.size,
                        fromSHA256: f.sha256.hex,
                        toSHA256: g.sha256.hex
                    )
                )
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
        var s = VersionDiff.Storage(
            sharedBytes: 0,
            uniqueFromBytes: 0,
            uniqueToBytes: 0,
            sharedChunks: 0,
            uniqueFromChunks: 0,
            uniqueToChunks: 0
        )
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
        _ version: VersionRecord,
        _ manifest: Manifest,
        headers: inout [SHA256Digest: SafetensorsHeader]
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

    private func tensorDiff(
        _ a: VersionRecord,
        _ x: Manifest,
        _ b: VersionRecord,
        _ y: Manifest
    ) throws -> VersionDiff.Tensors {
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
            added: [],
            removed: [],
            changed: [],
            moved: [],
            unchanged: 0,
            unchangedBytes: 0,
            comparedByChunks: 0,
            comparedByHash: 0
        )
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
                        name: q.tensor.name,
                        fromFile: p.file.path,
                        toFile: q.file.path,
                        fromDtype: p.tensor.dtype.rawValue,
                        toDtype: q.tensor.dtype.rawValue,
                        fromShape: p.tensor.shape,
                        toShape: q.tensor.shape,
                        fromBytes: p.tensor.byteCount,
                        toBytes: q.tensor.byteCount,
                        dtypeChanged: p.tensor.dtype != q.tensor.dtype,
                        shapeChanged: p.tensor.shape != q.tensor.shape
                    )
                )
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
        .init(
            file: file.path,
            name: tensor.name,
            dtype: tensor.dtype.rawValue,
            shape: tensor.shape,
            bytes: tensor.byteCount
        )
    }

    /// The chunks that cover exactly the tensor's bytes, or nil when it does not start and end on
    /// chunk boundaries.
    var slices: ArraySlice<ChunkRef>? {
        let range = tensor.fileRange
        guard let first = StructuredChunking.boundary(at: range.lowerBound, in: offsets),
            let end = StructuredChunking.boundary(at: range.upperBound, in: offsets)
        else {
            return nil
        }
        return file.chunks[first..<end]
    }
}

/// A tensor name within a scope (a file's path, or its directory).
private struct TensorKey: Hashable {
    var scope: String
    var name: String
}
