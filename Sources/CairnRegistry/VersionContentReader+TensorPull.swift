import CairnFormats
import CairnStore
import Foundation
import Glibc

/// What a tensor pull wrote.
public struct TensorPullResult: Codable, Sendable, Equatable {
    /// A file written under the output directory.
    public struct WrittenFile: Codable, Sendable, Equatable {
        /// Its path under the output directory (the path it has in the version).
        public var path: String
        /// Its size in bytes.
        public var size: Int64
        /// Tensors in it (0 for an index or another file).
        public var tensors: Int
    }

    /// Safetensors files with their matching tensors, then rewritten shard indexes, then other files.
    public var files: [WrittenFile]
    /// Tensors written.
    public var tensors: Int
    /// Bytes of the tensors written (their data, without headers).
    public var tensorBytes: Int64

    enum CodingKeys: String, CodingKey {
        case files, tensors
        case tensorBytes = "tensor_bytes"
    }
}

/// A safetensors file of a tensor pull: its header and the tensors to write.
private struct TensorFilePlan {
    var file: FileEntry
    var header: SafetensorsHeader
    var tensors: [SafetensorsHeader.Tensor]
}

extension VersionContentReader {
    /// Writes, for every safetensors file of `version` (in `selection`) that has tensors whose names
    /// match `patterns` (globs: `*` and `?` within the name, e.g. `model.layers.0.*`), a safetensors
    /// file of the same path holding exactly those tensors, with their original bytes, in their
    /// original order, under a new header that keeps `__metadata__`. Files without a match are not
    /// written.
    ///
    /// A shard index (`*.safetensors.index.json`) in the selection is rewritten to list only the
    /// tensors written (its `metadata` kept, `total_size` updated) when it names a written file.
    /// Other files are written only when an include pattern of `selection` matches them.
    ///
    /// Only the header bytes and the chunks that the selected tensors overlap are read; tensor bytes
    /// stream from the store to the output file (bounded memory). Every header is parsed before
    /// anything is written, and each file is renamed into place only when it is complete.
    ///
    /// - Throws: ``RegistryError``: `.notFound` when no tensor matches (naming the patterns),
    ///   `.invalidArgument` naming the file and the problem for a malformed safetensors file or
    ///   index, `.corruption` for damaged chunks, `.io`.
    @discardableResult
    public func pullTensors(
        _ version: VersionRecord,
        matching patterns: [String],
        to directory: String,
        selection: FileSelection? = nil,
        progress: ((_ doneBytes: Int64, _ totalBytes: Int64) -> Void)? = nil
    ) throws -> TensorPullResult {
        guard !patterns.isEmpty else { throw RegistryError(.invalidArgument, "no tensor pattern given") }
        let globs = try patterns.map(Glob.init)
        let manifest = try manifest(of: version)
        let selected = manifest.files.filter { selection?.contains($0.path) ?? true }

        // 1. Parse every header and pick the tensors, before writing anything.
        var plans: [TensorFilePlan] = []
        for file in selected where SafetensorsPaths.isSafetensors(file.path) {
            let header = try safetensorsHeader(of: file, in: version)
            let matching = header.tensors.filter { t in globs.contains { $0.matches(t.name) } }
            if !matching.isEmpty { plans.append(TensorFilePlan(file: file, header: header, tensors: matching)) }
        }
        guard !plans.isEmpty else {
            var what = "no tensor of \(version.reference) matches " + patterns.joined(separator: ", ")
            if let selection, !selection.selectsEverything { what += " in the selected files" }
            throw RegistryError(.notFound, what)
        }
        var indexes: [(file: FileEntry, bytes: [UInt8])] = []
        for file in selected where SafetensorsIndex.isIndex(file.path) {
            guard file.size <= 64 << 20 else {
                throw RegistryError(.invalidArgument, "\(file.path): index of \(file.size) bytes is too large")
            }
            let bytes = try readBytes(file, 0..<file.size, of: version)
            do {
                _ = try SafetensorsIndex.parse(bytes)
            } catch let error as SafetensorsError {
                throw RegistryError.malformed(file.path, error)
            }
            indexes.append((file, bytes))
        }
        let explicit = selection.map { !$0.include.isEmpty } ?? false
        let others =
            explicit
            ? selected.filter { !SafetensorsPaths.isSafetensors($0.path) && !SafetensorsIndex.isIndex($0.path) } : []

        // 2. Write the tensor files.
        let total = plans.reduce(Int64(0)) { $0 + $1.tensors.reduce(0) { $0 + $1.byteCount } }
        var done: Int64 = 0
        var written: [TensorPullResult.WrittenFile] = []
        for plan in plans {
            let size = try writeTensorFile(
                plan.file,
                of: version,
                header: plan.header,
                tensors: plan.tensors,
                under: directory
            ) {
                progress?(done + $0, total)
            }
            done += plan.tensors.reduce(0) { $0 + $1.byteCount }
            written.append(.init(path: plan.file.path, size: size, tensors: plan.tensors.count))
        }

        // 3. Rewrite the shard indexes that name a written file.
        for (file, bytes) in indexes {
            let index = try SafetensorsIndex.parse(bytes)
            let folder = SafetensorsPaths.directoryPart(file.path)
            var weightMap: [String: String] = [:]
            var indexBytes: Int64 = 0
            let shardNames = Set(index.weightMap.values)
            for plan in plans where SafetensorsPaths.directoryPart(plan.file.path) == folder {
                let name = SafetensorsPaths.namePart(plan.file.path)
                guard shardNames.contains(name) else { continue }
                for tensor in plan.tensors {
                    weightMap[tensor.name] = name
                    indexBytes += tensor.byteCount
                }
            }
            guard !weightMap.isEmpty else { continue }
            let rewritten: [UInt8]
            do {
                rewritten = try SafetensorsIndex.rewrite(bytes, weightMap: weightMap, totalSize: indexBytes)
            } catch let error as SafetensorsError {
                throw RegistryError.malformed(file.path, error)
            }
            try writeWhole(rewritten, path: file.path, under: directory)
            written.append(.init(path: file.path, size: Int64(rewritten.count), tensors: 0))
        }

        // 4. Other files the include patterns name.
        if !others.isEmpty {
            for file in others {
                try copyFile(file, of: version, under: directory)
                written.append(.init(path: file.path, size: file.size, tensors: 0))
            }
        }
        return TensorPullResult(files: written, tensors: plans.reduce(0) { $0 + $1.tensors.count }, tensorBytes: total)
    }

    /// Writes `tensors` of the stored `file` as a new safetensors file at `file.path` under
    /// `directory`; returns its size. `progress` gets the tensor bytes written so far.
    private func writeTensorFile(
        _ file: FileEntry,
        of version: VersionRecord,
        header: SafetensorsHeader,
        tensors: [SafetensorsHeader.Tensor],
        under directory: String,
        progress: (Int64) -> Void
    ) throws -> Int64 {
        let (prefix, layout): ([UInt8], SafetensorsHeader)
        do {
            (prefix, layout) = try SafetensorsEncoder.header(
                for: tensors.map(SafetensorsEncoder.Entry.init),
                metadata: header.metadata
            )
        } catch let error as SafetensorsError {
            throw RegistryError.malformed(file.path, error)
        }
        let placed = layout.tensorsByName
        let size = layout.dataStart + tensors.reduce(0) { $0 + $1.byteCount }
        let output = try OutputFile(path: file.path, under: directory)
        do {
            try output.truncate(to: size)
            try prefix.withUnsafeBytes { try output.write($0, at: 0) }
            var done: Int64 = 0
            for tensor in tensors {
                let destination = placed[tensor.name]!.fileRange.lowerBound
                try readRange(version, file: file, range: tensor.fileRange) { bytes, offset in
                    try output.write(bytes, at: destination + (offset - tensor.fileRange.lowerBound))
                    progress(done + offset - tensor.fileRange.lowerBound + Int64(bytes.count))
                }
                done += tensor.byteCount
            }
            try output.commit()
        } catch {
            output.discard()
            throw error
        }
        return size
    }

    /// Writes a whole stored file under `directory`, streaming.
    private func copyFile(_ file: FileEntry, of version: VersionRecord, under directory: String) throws {
        let output = try OutputFile(path: file.path, under: directory)
        do {
            try output.truncate(to: file.size)
            if file.size > 0 {
                try readRange(version, file: file, range: 0..<file.size) { bytes, offset in
                    try output.write(bytes, at: offset)
                }
            }
            try output.commit()
        } catch {
            output.discard()
            throw error
        }
    }

    /// Writes `bytes` as `path` under `directory` (via a temporary file renamed into place).
    private func writeWhole(_ bytes: [UInt8], path: String, under directory: String) throws {
        let output = try OutputFile(path: path, under: directory)
        do {
            try bytes.withUnsafeBytes { try output.write($0, at: 0) }
            try output.commit()
        } catch {
            output.discard()
            throw error
        }
    }
}

/// A file being written under an output directory: a temporary `.NAME.cairn-partial` next to its
/// final path, renamed into place by ``commit()``.
private final class OutputFile {
    let target: String
    let temp: String
    private var fd: Int32

    init(path: String, under directory: String) throws {
        try storeCall { try RelativePath.validate(path) }
        target = directory + "/" + path
        let parent =
            directory + (SafetensorsPaths.directoryPart(path).isEmpty ? "" : "/" + SafetensorsPaths.directoryPart(path))
        do {
            try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        } catch {
            throw RegistryError(.io, "cannot create directory \(parent): \(error.localizedDescription)")
        }
        temp = parent + "/." + SafetensorsPaths.namePart(path) + ".cairn-partial"
        fd = Glibc.open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.failure("create", temp) }
    }

    deinit { if fd >= 0 { close(fd) } }

    static func failure(_ what: String, _ path: String) -> RegistryError {
        RegistryError(.io, "\(what) \(path): \(String(cString: strerror(errno)))")
    }

    func truncate(to size: Int64) throws {
        guard ftruncate(fd, off_t(size)) == 0 else { throw Self.failure("truncate", temp) }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        try storeCall { try FileIO.pwrite(fd, bytes, at: offset, path: temp) }
    }

    func commit() throws {
        guard close(fd) == 0 else {
            fd = -1
            throw Self.failure("close", temp)
        }
        fd = -1
        guard rename(temp, target) == 0 else { throw Self.failure("rename to \(target)", temp) }
    }

    func discard() {
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(temp)
    }
}
