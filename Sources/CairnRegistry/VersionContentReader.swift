import CairnFormats
import CairnStore

/// What the tensor operations (``VersionContentReader/tensors(of:selection:)``,
/// ``VersionContentReader/pullTensors(_:matching:to:selection:progress:)``,
/// ``VersionContentReader/diff(_:_:)``) need: a version's manifest and byte ranges of its files.
/// A local ``Registry`` reads them from its store (only the chunks a range overlaps); a client of a
/// server can serve them with HTTP range requests.
public protocol VersionContentReader {
    /// The files of a version.
    ///
    /// - Throws: ``RegistryError`` (or the transport's ``CodedError``) when the manifest cannot be read.
    func manifest(of version: VersionRecord) throws -> Manifest
    /// Streams `range` of `file` (a file of `version`'s manifest) to `sink` in order, each piece with
    /// its offset in the file. Bytes are verified before they reach `sink`.
    ///
    /// - Throws: ``RegistryError`` (or the transport's ``CodedError``) with `.corruption` for damaged
    ///   bytes, or what `sink` throws.
    func readRange(
        _ version: VersionRecord,
        file: FileEntry,
        range: Range<Int64>,
        sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws
}

/// One tensor of a stored safetensors file, from its header.
public struct TensorInfo: Codable, Sendable, Equatable {
    /// The file's path in the version.
    public var file: String
    /// The tensor's name.
    public var name: String
    /// The safetensors dtype: "BF16", "F32", …
    public var dtype: String
    /// Its dimensions.
    public var shape: [Int]
    /// The tensor's byte count.
    public var bytes: Int64
    /// Where the tensor's bytes start in the file (`cat --range` takes it).
    public var offset: Int64

    init(file: String, name: String, dtype: String, shape: [Int], bytes: Int64, offset: Int64) {
        self.file = file
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.bytes = bytes
        self.offset = offset
    }

    init(file: String, _ tensor: SafetensorsHeader.Tensor) {
        self.init(
            file: file,
            name: tensor.name,
            dtype: tensor.dtype.rawValue,
            shape: tensor.shape,
            bytes: tensor.byteCount,
            offset: tensor.fileRange.lowerBound
        )
    }
}

extension VersionContentReader {
    /// The tensors of every safetensors file of `version` (in `selection`, if given), file by file in
    /// path order and by offset within a file. Only the header bytes of each file are read.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` naming the file and the problem when a
    ///   `.safetensors` file is malformed.
    public func tensors(of version: VersionRecord, selection: FileSelection? = nil) throws -> [TensorInfo] {
        let manifest = try manifest(of: version)
        var out: [TensorInfo] = []
        for file in manifest.files
        where SafetensorsPaths.isSafetensors(file.path) && (selection?.contains(file.path) ?? true) {
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
        func malformed(_ error: SafetensorsError) -> RegistryError { .malformed(file.path, error) }
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
    ///
    /// - Throws: what ``readRange(_:file:range:sink:)`` throws; ``RegistryError`` with `.io` when it
    ///   hands over bytes outside `range`.
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
}

extension RegistryError {
    /// A malformed safetensors file or index: `.invalidArgument`, "PATH: problem".
    static func malformed(_ path: String, _ error: SafetensorsError) -> RegistryError {
        RegistryError(.invalidArgument, "\(path): \(error.message)")
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
