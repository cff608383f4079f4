import CairnStore
import Digest
import Dispatch
import Foundation
import Glibc
import Synchronization

/// Whole files that pulls wrote, kept in the chunk cache as hard links instead of a second copy of
/// their bytes in the cache's packs: `files/<sha256 of the file>` under the cache directory, and in
/// the cache's index (table `cached_file_chunks`) where each of their chunks lies:
/// chunk id → file SHA-256 [32] · offset u64 · length u32 (little-endian).
///
/// A pulled file and its link are one inode. A pull replaces files by renaming new ones into place,
/// so it never changes a linked file; a user who edits a pulled file in place changes the cache's
/// copy too. Chunks read from these files are therefore verified like fetched ones, and a file whose
/// chunk does not verify is dropped from the cache (its chunks are fetched again).
struct CachedFiles: Sendable {
    let cache: Store
    let table: MetadataTable
    /// `<cache>/files`.
    let directory: String

    init(cache: Store) throws {
        self.cache = cache
        table = try cache.table("cached_file_chunks")
        directory = cache.root + "/files"
    }

    /// Where a chunk lies in a cached file.
    struct Place: Equatable {
        var file: SHA256Digest
        var offset: Int64
        var length: Int
    }

    func path(of file: SHA256Digest) -> String { directory + "/" + file.hex }

    /// Whether files written under `directory` can be linked into the cache: both on one file system.
    func canLink(filesUnder directory: String) -> Bool {
        var target = stat()
        var cached = stat()
        guard stat(directory, &target) == 0, stat(cache.root, &cached) == 0 else { return false }
        return target.st_dev == cached.st_dev
    }

    /// The places of those of `chunks` that lie in cached files present and long enough.
    func locate(_ chunks: [ChunkRef]) throws -> [SHA256Digest: Place] {
        var places: [SHA256Digest: Place] = [:]
        var sizes: [SHA256Digest: Int64] = [:]  // of the files met, -1 when absent
        try cache.readMetadata { txn in
            for chunk in chunks {
                guard let value = try txn.get(table, chunk.id.bytes), let place = Self.decode(value),
                    place.length == Int(chunk.length)
                else { continue }
                let size =
                    sizes[place.file]
                    ?? {
                        var info = stat()
                        let size = stat(path(of: place.file), &info) == 0 ? Int64(info.st_size) : -1
                        sizes[place.file] = size
                        return size
                    }()
                if place.offset + Int64(place.length) <= size { places[chunk.id] = place }
            }
        }
        return places
    }

    /// Reads `chunk` (`target.count` bytes) from the cached file holding it; false if none does.
    /// The bytes are not verified here.
    func read(_ chunk: SHA256Digest, into target: UnsafeMutableRawBufferPointer) -> Bool {
        guard let place = (try? locate([ChunkRef(id: chunk, length: UInt32(target.count))]))?[chunk] else {
            return false
        }
        let fd = open(path(of: place.file), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return Self.readFully(fd, into: target, at: place.offset) == target.count
    }

    /// Reads `target.count` bytes at `offset` of `fd` (-1: nothing); returns how many it got
    /// before the end of the file or an error.
    static func readFully(_ fd: Int32, into target: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        var done = 0
        while fd >= 0, done < target.count {
            let n = pread(fd, target.baseAddress! + done, target.count - done, off_t(offset) + off_t(done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            done += n
        }
        return done
    }

    /// Links each of `files`, just written under `directory` and verified, into the cache (copies it
    /// where a link fails) and indexes its chunks.
    func add(_ files: [FileEntry], writtenUnder root: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var added: [FileEntry] = []
        for file in files where !file.chunks.isEmpty {
            let source = root + "/" + file.path
            let target = path(of: file.sha256)
            let temporary = "\(target).\(UUID().uuidString).partial"
            if link(source, temporary) != 0 {
                // Another file system mounted at a path of this one (a bind mount): a copy.
                let reason = String(cString: strerror(errno))
                do {
                    try FileManager.default.copyItem(atPath: source, toPath: temporary)
                } catch {
                    unlink(temporary)
                    throw CairnStoreError(
                        .io,
                        "\(source) was pulled but cannot be kept in the chunk cache: link: \(reason); copy: \(error)"
                    )
                }
            }
            var info = stat()
            guard stat(temporary, &info) == 0, Int64(info.st_size) == file.size else {
                unlink(temporary)  // replaced since it was written (another pull into the same directory)
                continue
            }
            // A file already there may have been edited in place: the one just verified replaces it.
            guard rename(temporary, target) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(temporary)
                throw CairnStoreError(.io, "cannot keep \(source) in the chunk cache: rename to \(target): \(reason)")
            }
            added.append(file)
        }
        guard !added.isEmpty else { return }
        try cache.writeMetadata { txn in
            for file in added {
                var offset: Int64 = 0
                for chunk in file.chunks {
                    try txn.put(
                        table,
                        chunk.id.bytes,
                        Self.encode(Place(file: file.sha256, offset: offset, length: Int(chunk.length)))
                    )
                    offset += Int64(chunk.length)
                }
            }
        }
    }

    /// Drops the cached file holding `chunk` (which did not verify) from the cache; returns whether
    /// the cache had the chunk in a file (the file may be gone already: another pull dropped it).
    /// Its other chunks' index entries stay, unused until a pull adds the file again.
    func drop(holding chunk: SHA256Digest) throws -> Bool {
        let place = try cache.writeMetadata { txn -> Place? in
            guard let value = try txn.get(table, chunk.bytes), let place = Self.decode(value) else { return nil }
            try txn.delete(table, chunk.bytes)
            return place
        }
        guard let place else { return false }
        unlink(path(of: place.file))
        return true
    }

    static func encode(_ place: Place) -> [UInt8] {
        var out = place.file.bytes
        withUnsafeBytes(of: UInt64(place.offset).littleEndian) { out += $0 }
        withUnsafeBytes(of: UInt32(place.length).littleEndian) { out += $0 }
        return out
    }

    static func decode(_ value: [UInt8]) -> Place? {
        guard value.count == 44 else { return nil }
        return value.withUnsafeBytes { raw in
            Place(
                file: SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: raw[0..<32])),
                offset: Int64(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 32, as: UInt64.self))),
                length: Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 40, as: UInt32.self)))
            )
        }
    }
}

/// A restore's source of the chunks its cache store lacks: the cache's linked files first, read and
/// sent on as bundles of raw chunks (verified by the restore like any bundle), then the server —
/// asked for deltas as stored while ``asksForDeltas`` (the cache holds a parent's files, which the
/// deltas are rebuilt from) and for whole chunks once one could not be rebuilt.
final class CacheThenServer: ChunkFetcher {
    let files: CachedFiles
    let server: ServerChunks
    let asksForDeltas: Atomic<Bool>

    init(files: CachedFiles, server: ServerChunks, asksForDeltas: Bool = false) {
        self.files = files
        self.server = server
        self.asksForDeltas = Atomic(asksForDeltas)
    }
    /// Raw bytes per bundle read from cached files.
    static let bundleBytes = 16 << 20

    func startFetch(_ chunks: [ChunkRef]) throws -> [any PendingBundle] {
        let places = try files.locate(chunks)
        var local: [(ChunkRef, CachedFiles.Place)] = []
        var remote: [ChunkRef] = []
        for chunk in chunks {
            if let place = places[chunk.id] { local.append((chunk, place)) } else { remote.append(chunk) }
        }
        var bundles: [any PendingBundle] = []
        var start = 0
        while start < local.count {
            var end = start
            var bytes = 0
            while end < local.count && (end == start || bytes + local[end].1.length <= Self.bundleBytes) {
                bytes += local[end].1.length
                end += 1
            }
            bundles.append(CachedFileBundle(files: files, chunks: Array(local[start..<end])))
            start = end
        }
        if !remote.isEmpty { bundles += try server.startFetch(remote, deltas: asksForDeltas.load(ordering: .relaxed)) }
        return bundles
    }

    func dropLocalCopy(of chunk: SHA256Digest) throws -> Bool { try files.drop(holding: chunk) }

    func readLocalCopy(of chunk: SHA256Digest, into target: UnsafeMutableRawBufferPointer) -> Bool {
        files.read(chunk, into: target)
    }

    func stopFetchingDeltas() -> Bool { asksForDeltas.exchange(false, ordering: .relaxed) }
}

/// Chunks read from cached files into a bundle (raw codec) on a thread of their own, in a reused
/// buffer (``BufferPool/replies``: fresh memory for each 16 MiB bundle made page faults and the first
/// touch of its pages half of a pull's CPU time).
final class CachedFileBundle: PendingBundle {
    /// Filled by the reading thread before `ready` is signalled; read only after waiting for it.
    private let buffer: AlignedBuffer
    /// Signalled once the buffer is filled; each wait signals it again, so that later waits pass.
    private let ready = DispatchSemaphore(value: 0)

    var isKeptLocally: Bool { true }

    init(files: CachedFiles, chunks: [(ChunkRef, CachedFiles.Place)]) {
        let size = ChunkBundle.size(storedLengths: chunks.map { $0.1.length })
        buffer = BufferPool.replies.take(capacity: size)
        buffer.count = size
        DispatchQueue.global().async { [self] in
            Self.read(files: files, chunks: chunks, into: buffer.memory)
            ready.signal()
        }
    }

    deinit {
        BufferPool.replies.give(buffer)  // the reading closure holds `self` until it is done
    }

    private static func read(
        files: CachedFiles,
        chunks: [(ChunkRef, CachedFiles.Place)],
        into out: UnsafeMutableRawBufferPointer
    ) {
        var descriptors: [SHA256Digest: Int32] = [:]
        defer { for fd in descriptors.values where fd >= 0 { close(fd) } }
        ChunkBundle.writeHeader(count: chunks.count, to: out.baseAddress!)
        var at = ChunkBundle.headerSize
        for (chunk, place) in chunks {
            at += ChunkBundle.writeEntryHeader(
                id: chunk.id,
                codec: .raw,
                rawLength: place.length,
                storedLength: place.length,
                to: out.baseAddress! + at
            )
            let fd =
                descriptors[place.file]
                ?? {
                    let fd = open(files.path(of: place.file), O_RDONLY | O_CLOEXEC)
                    descriptors[place.file] = fd
                    return fd
                }()
            let target = UnsafeMutableRawBufferPointer(start: out.baseAddress! + at, count: place.length)
            let got = CachedFiles.readFully(fd, into: target, at: place.offset)
            if got < place.length {
                // Gone, shortened or unreadable since it was located: zeros, which do not verify,
                // so the file is dropped and its chunks fetched instead.
                (target.baseAddress! + got).initializeMemory(as: UInt8.self, repeating: 0, count: place.length - got)
            }
            at += place.length
        }
    }

    /// Waits until the chunks are read (blocking), then calls `body` with the bundle's bytes.
    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        ready.wait()
        ready.signal()
        return try body(buffer.bytes)
    }
}
