import CairnFormats
import CairnStore
import Foundation
import Glibc

/// One tensor of a stored safetensors file, from its header.
public struct TensorInfo: Codable, Sendable, Equatable {
    /// The file's path in the version.
    public var file: String
    public var name: String
    /// The safetensors dtype: "BF16", "F32", …
    public var dtype: String
    public var shape: [Int]
    /// The tensor's byte count.
    public var bytes: Int64
    /// Where the tensor's bytes start in the file (`cat --range` takes it).
    public var offset: Int64

    public init(file: String, name: String, dtype: String, shape: [Int], bytes: Int64, offset: Int64) {
        self.file = file
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.offset = offset
    }

    init(file: String, _ tensor: SafetensorsHeader.Tensor) {
        self.init(
            file: file, name: tensor.name, dtype: tensor.dtype.rawValue, shape: tensor.shape, bytes: tensor.byteCount,
            offset: tensor.fileRange.lowerBound)
    }
}

/// What a tensor pull wrote.
public struct TensorPullResult: Codable, Sendable, Equatable {
    /// A file written under the output directory.
    public struct WrittenFile: Codable, Sendable, Equatable {
        public var path: String
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

/// What the tensor operations (``VersionContentReader/tensors(of:selection:)``,
/// ``VersionContentReader/pullTensors(_:matching:to:selection:progress:)``,
/// ``VersionContentReader/diff(_:_:)``) need: a version's manifest and byte ranges of its files.
/// A local ``Registry`` reads them from its store (only the chunks a range overlaps); a client of a
/// server can serve them with HTTP range requests.
public protocol VersionContentReader {
    /// The files of a version.
    func manifest(of version: VersionRecord) throws -> Manifest
    /// Streams `range` of `file` (a file of `version`'s manifest) to `sink` in order, each piece with
    /// its offset in the file. Bytes are verified before they reach `sink`.
    func readRange(
        _ version: VersionRecord, file: FileEntry, range: Range<Int64>, sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws
}

extension Registry: VersionContentReader {
    /// Reads from the store, touching only the chunks that overlap `range`.
    public func readRange(
        _ version: VersionRecord, file: FileEntry, range: Range<Int64>, sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws {
        try storeCall { try store.read(file, range: range, context: "model \(version.model) version \(version.version)", sink: sink) }
    }
}

/// Path rules for safetensors files and their shard indexes.
enum SafetensorsPaths {
    /// Whether `path` is a safetensors file (by its name).
    static func isSafetensors(_ path: String) -> Bool { path.hasSuffix(".safetensors") }

    /// `a/b` of `a/b/c.safetensors` ("" at the top).
    static func directoryPart(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    /// `c.safetensors` of `a/b/c.safetensors`.
    static func namePart(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return path }
        return String(path[path.index(after: slash)...])
    }
}

/// A safetensors file of a tensor pull: its header and the tensors to write.
private struct TensorFilePlan {
    var file: FileEntry
    var header: SafetensorsHeader
    var tensors: [SafetensorsHeader.Tensor]
}

extension VersionContentReader {
    // MARK: Listing

    /// The tensors of every safetensors file of `version` (in `selection`, if given), file by file in
    /// path order and by offset within a file. Only the header bytes of each file are read.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` naming the file and the problem when a
    ///   `.safetensors` file is malformed.
    public func tensors(of version: VersionRecord, selection: FileSelection? = nil) throws -> [TensorInfo] {
        let manifest = try manifest(of: version)
        var out: [TensorInfo] = []
        for file in manifest.files where SafetensorsPaths.isSafetensors(file.path) && (selection?.contains(file.path) ?? true) {
            let header = try safetensorsHeader(of: file, in: version)
            out += header.tensors.map { TensorInfo(file: file.path, $0) }
        }
        return out
    }

    /// The parsed header of a stored safetensors file, reading only its header bytes: the file's first
    /// chunk (which holds the 8-byte length and, for files chunked at tensor boundaries, all or the
    /// start of the JSON header), then whatever of the header lies past it.
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument`: "PATH: problem" for a malformed file.
    func safetensorsHeader(of file: FileEntry, in version: VersionRecord) throws -> SafetensorsHeader {
        func malformed(_ error: SafetensorsError) -> RegistryError {
            RegistryError(.invalidArgument, "\(file.path): \(error.message)")
        }
        guard file.size >= 8 else {
            let bytes = try readBytes(file, 0..<file.size, of: version)
            do {
                _ = try SafetensorsHeader.headerLength(bytes, fileSize: file.size)
            } catch let error as SafetensorsError {
                throw malformed(error)
            }
            throw malformed(SafetensorsError("truncated: shorter than the 8-byte header length"))
        }
        let firstChunkEnd = file.chunks.isEmpty ? file.size : Int64(file.chunks[0].length)
        var bytes = try readBytes(file, 0..<max(8, min(firstChunkEnd, file.size)), of: version)
        do {
            let n = try SafetensorsHeader.headerLength(bytes.prefix(8), fileSize: file.size)
            let end = 8 + Int64(n)
            if Int64(bytes.count) < end {
                bytes += try readBytes(file, Int64(bytes.count)..<end, of: version)
            }
            return try SafetensorsHeader.parse(headerBytes: bytes[8..<Int(end)], fileSize: file.size)
        } catch let error as SafetensorsError {
            throw malformed(error)
        }
    }

    /// `range` of `file` as an array (for headers and indexes: small).
    func readBytes(_ file: FileEntry, _ range: Range<Int64>, of version: VersionRecord) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(range.count))
        try out.withUnsafeMutableBytes { target in
            try readRange(version, file: file, range: range) { bytes, offset in
                let at = Int(offset - range.lowerBound)
                guard at >= 0, at + bytes.count <= target.count else {
                    throw RegistryError(.io, "\(file.path): a read returned bytes outside \(range)")
                }
                UnsafeMutableRawBufferPointer(rebasing: target[at..<at + bytes.count]).copyMemory(from: bytes)
            }
        }
        return out
    }

    // MARK: Pulling tensors

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
        _ version: VersionRecord, matching patterns: [String], to directory: String, selection: FileSelection? = nil,
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
                throw RegistryError(.invalidArgument, "\(file.path): \(error.message)")
            }
            indexes.append((file, bytes))
        }
        let explicit = selection.map { !$0.include.isEmpty } ?? false
        let others = explicit ? selected.filter { !SafetensorsPaths.isSafetensors($0.path) && !SafetensorsIndex.isIndex($0.path) } : []

        // 2. Write the tensor files.
        let total = plans.reduce(Int64(0)) { $0 + $1.tensors.reduce(0) { $0 + $1.byteCount } }
        var done: Int64 = 0
        var written: [TensorPullResult.WrittenFile] = []
        for plan in plans {
            let size = try writeTensorFile(plan.file, of: version, header: plan.header, tensors: plan.tensors, under: directory) {
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
                throw RegistryError(.invalidArgument, "\(file.path): \(error.message)")
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
        _ file: FileEntry, of version: VersionRecord, header: SafetensorsHeader, tensors: [SafetensorsHeader.Tensor],
        under directory: String, progress: (Int64) -> Void
    ) throws -> Int64 {
        let (prefix, layout): ([UInt8], SafetensorsHeader)
        do {
            (prefix, layout) = try SafetensorsEncoder.header(for: tensors.map(SafetensorsEncoder.Entry.init), metadata: header.metadata)
        } catch let error as SafetensorsError {
            throw RegistryError(.invalidArgument, "\(file.path): \(error.message)")
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
                try readRange(version, file: file, range: 0..<file.size) { bytes, offset in try output.write(bytes, at: offset) }
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
        let parent = directory + (SafetensorsPaths.directoryPart(path).isEmpty ? "" : "/" + SafetensorsPaths.directoryPart(path))
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
