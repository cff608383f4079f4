import Digest

/// One chunk of a file: its id (SHA-256 of its raw bytes) and raw length.
public struct ChunkRef: Sendable, Hashable {
    /// The SHA-256 of the chunk's raw bytes.
    public var id: SHA256Digest
    /// Its raw length in bytes.
    public var length: UInt32

    /// A chunk of `length` bytes whose SHA-256 is `id`.
    public init(id: SHA256Digest, length: UInt32) {
        self.id = id
        self.length = length
    }
}

/// A file of a manifest: relative path, size, whole-file SHA-256 and the chunks that make it up.
public struct FileEntry: Sendable, Equatable {
    /// Path relative to the tree's root, `/`-separated (see ``RelativePath``).
    public var path: String
    /// Size in bytes: the sum of the chunks' lengths.
    public var size: Int64
    /// The SHA-256 of the whole file (what `sha256sum` prints).
    public var sha256: SHA256Digest
    /// The chunks that make up the file, in order.
    public var chunks: [ChunkRef]

    /// A file entry (not validated here; ``Manifest/decode(_:)`` validates what it reads).
    public init(path: String, size: Int64, sha256: SHA256Digest, chunks: [ChunkRef]) {
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.chunks = chunks
    }

    /// The offset in the file where each chunk starts, plus the file size at the end
    /// (`chunks.count + 1` values), for binary search of byte ranges.
    public func chunkOffsets() -> [Int64] {
        var offsets = [Int64](repeating: 0, count: chunks.count + 1)
        var at: Int64 = 0
        for (i, c) in chunks.enumerated() {
            offsets[i] = at
            at += Int64(c.length)
        }
        offsets[chunks.count] = at
        return offsets
    }
}

/// The files of one stored tree, sorted by path. Content-addressed: its id is the SHA-256 of its
/// encoding, so identical trees share one manifest.
///
/// Encoding (little-endian), see docs/storage-format.md:
/// ```
/// "CAIRNMF1" · file count u32
/// per file: path length u16 · path (UTF-8) · size u64 · sha256 [32] · chunk count u32
///           · per chunk: chunk id [32] · raw length u32
/// ```
public struct Manifest: Sendable, Equatable {
    /// The files, sorted by path (byte order).
    public var files: [FileEntry]

    static let magic: [UInt8] = Array("CAIRNMF1".utf8)

    /// Creates a manifest; files are sorted by path (byte order).
    public init(files: [FileEntry]) {
        self.files = files.sorted { $0.path.utf8.lexicographicallyPrecedes($1.path.utf8) }
    }

    /// Sum of file sizes.
    public var logicalBytes: Int64 { files.reduce(0) { $0 + $1.size } }

    /// The ids of the chunks the files reference, in file order, each once, but those in `excluded`.
    func chunkIDs(excluding excluded: Set<SHA256Digest> = []) -> [SHA256Digest] {
        var seen = excluded
        var ids: [SHA256Digest] = []
        for file in files {
            for chunk in file.chunks where seen.insert(chunk.id).inserted { ids.append(chunk.id) }
        }
        return ids
    }

    /// The file at `path`, if any.
    public func file(_ path: String) -> FileEntry? {
        files.first { $0.path == path }
    }

    /// The binary encoding whose SHA-256 is the manifest id.
    public func encoded() -> [UInt8] {
        var size = 12
        for f in files { size += 2 + f.path.utf8.count + 8 + 32 + 4 + f.chunks.count * 36 }
        var out = [UInt8](repeating: 0, count: size)
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            Self.magic.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: 8) }
            p.storeBytes(of: UInt32(files.count).littleEndian, toByteOffset: 8, as: UInt32.self)
            var at = 12
            for f in files {
                let path = Array(f.path.utf8)
                p.storeBytes(of: UInt16(path.count).littleEndian, toByteOffset: at, as: UInt16.self)
                at += 2
                path.withUnsafeBytes { (p + at).copyMemory(from: $0.baseAddress!, byteCount: path.count) }
                at += path.count
                p.storeBytes(of: UInt64(f.size).littleEndian, toByteOffset: at, as: UInt64.self)
                at += 8
                f.sha256.store(to: p + at)
                at += 32
                p.storeBytes(of: UInt32(f.chunks.count).littleEndian, toByteOffset: at, as: UInt32.self)
                at += 4
                for c in f.chunks {
                    c.id.store(to: p + at)
                    p.storeBytes(of: c.length.littleEndian, toByteOffset: at + 32, as: UInt32.self)
                    at += 36
                }
            }
        }
        return out
    }

    /// The manifest id: SHA-256 of ``encoded()``.
    public var id: SHA256Digest { SHA256Digest.hash(encoded()) }

    /// Decodes a stored manifest after checking that its bytes hash to `id`, the id it is stored
    /// (and referenced) under. Every read of a stored manifest goes through this.
    ///
    /// A manifest is small (36 bytes per chunk: about 190 KB for a model of 338 MB in 64 KiB
    /// chunks) and read once per pull or show: hashing it costs well under a millisecond.
    ///
    /// - Throws: ``CairnStoreError`` with `.corruption` naming the manifest when its bytes do not
    ///   hash to `id`, or naming the problem when they do not decode.
    static func decode(_ bytes: UnsafeRawBufferPointer, checkedAgainst id: SHA256Digest) throws -> Manifest {
        guard SHA256Digest.hash(bytes) == id else {
            throw CairnStoreError(.corruption, "manifest \(id.hex) does not match its id: the index is damaged")
        }
        return try decode(bytes)
    }

    /// Decodes and validates an encoded manifest (paths must be safe relative paths, chunk lengths
    /// must add up to each file's size).
    ///
    /// - Throws: ``CairnStoreError`` with `.corruption` naming the problem.
    public static func decode(_ b: UnsafeRawBufferPointer) throws -> Manifest {
        func bad(_ what: String) -> CairnStoreError { CairnStoreError(.corruption, "malformed manifest: \(what)") }
        guard b.count >= 12, Array(b[0..<8]) == magic else { throw bad("bad magic") }
        let count = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        var at = 12
        var files: [FileEntry] = []
        files.reserveCapacity(min(count, 1 << 16))
        for _ in 0..<count {
            guard at + 2 <= b.count else { throw bad("truncated") }
            let pathLength = Int(UInt16(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt16.self)))
            at += 2
            guard at + pathLength + 44 <= b.count else { throw bad("truncated") }
            guard let path = String(validating: b[at..<at + pathLength], as: UTF8.self) else {
                throw bad("path is not UTF-8")
            }
            try RelativePath.validate(path)
            at += pathLength
            let size = Int64(UInt64(littleEndian: b.loadUnaligned(fromByteOffset: at, as: UInt64.self)))
            let sha = SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[at + 8..<at + 40]))
            let chunkCount = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at + 40, as: UInt32.self)))
            at += 44
            guard chunkCount <= (b.count - at) / 36 else { throw bad("truncated chunk list of \(path)") }
            var chunks: [ChunkRef] = []
            chunks.reserveCapacity(chunkCount)
            var total: Int64 = 0
            for _ in 0..<chunkCount {
                let id = SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[at..<at + 32]))
                let length = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at + 32, as: UInt32.self))
                chunks.append(ChunkRef(id: id, length: length))
                total += Int64(length)
                at += 36
            }
            guard total == size else { throw bad("chunks of \(path) add up to \(total) bytes, not \(size)") }
            files.append(FileEntry(path: path, size: size, sha256: sha, chunks: chunks))
        }
        guard at == b.count else { throw bad("trailing bytes") }
        // The encoding is canonical (paths sorted bytewise, each once), so equal trees have one id.
        for (a, b) in zip(files, files.dropFirst()) where !a.path.utf8.lexicographicallyPrecedes(b.path.utf8) {
            throw bad(a.path == b.path ? "path \(a.path) appears twice" : "paths are not sorted")
        }
        // The paths form a tree: no file is also a directory of another (`a` and `a/b`), which no
        // file system could hold and no pull could write.
        let paths = Set(files.map(\.path))
        for file in files {
            var prefix = Substring(file.path)
            while let slash = prefix.lastIndex(of: "/") {
                prefix = prefix[..<slash]
                if paths.contains(String(prefix)) {
                    throw bad("\(prefix) is both a file and the directory of \(file.path)")
                }
            }
        }
        return Manifest(files: files)
    }
}

/// Rules for the relative paths of stored files.
public enum RelativePath {
    /// Throws ``CairnStoreError`` with `.invalidArgument` unless `path` is a non-empty relative path of
    /// non-empty components, none of them `.` or `..`, without NUL, of at most 4096 bytes.
    public static func validate(_ path: String) throws {
        func refuse(_ why: String) -> CairnStoreError {
            CairnStoreError(.invalidArgument, "unsafe path \"\(path)\": \(why)")
        }
        if path.isEmpty { throw refuse("empty") }
        if path.utf8.count > 4096 { throw refuse("longer than 4096 bytes") }
        if path.hasPrefix("/") { throw refuse("absolute paths are not allowed") }
        if path.utf8.contains(0) { throw refuse("contains a NUL byte") }
        for part in path.split(separator: "/", omittingEmptySubsequences: false) {
            if part.isEmpty { throw refuse("empty path component") }
            if part == "." || part == ".." { throw refuse("'\(part)' would escape or alias the tree") }
            if part.utf8.count > 255 { throw refuse("a component is longer than 255 bytes") }
        }
    }
}
