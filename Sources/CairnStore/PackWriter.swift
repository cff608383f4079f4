import Digest
import Glibc

/// Appends chunk records to pack files under `tmp/`, seals each pack when it reaches the target size
/// (table of contents, trailer, fsync) and moves it into `packs/`. Nothing in the index points at a
/// pack until the push that wrote it commits, so a crash leaves at most unreferenced packs
/// (reclaimed by GC) and temporary files.
///
/// Used by one thread at a time (the ingest pipeline's write stage).
final class PackWriter {
    struct SealedPack {
        var id: UInt64
        var size: Int64
        var chunkCount: Int
    }

    private let root: String
    private let targetSize: Int
    private var fd: Int32 = -1
    private var packID: UInt64 = 0
    private var tempPath = ""
    private var size: Int64 = 0
    private var writebackStart: Int64 = 0
    /// With `bypassesPageCache` and buffered writes: bytes of the open pack already dropped from
    /// the page cache.
    private var droppedUpTo: Int64 = 0
    /// Whether the open pack is written with direct I/O (whole blocks from `staging`).
    private var direct = false
    private var toc: [PackFormat.TOCEntry] = []
    private let staging: AlignedBuffer
    private var stagingCount = 0
    private var stagingOffset: Int64 = 0

    /// Packs sealed and moved into `packs/` so far.
    private(set) var sealed: [SealedPack] = []
    /// Every chunk written, with its location.
    private(set) var written: [(id: SHA256Digest, location: ChunkLocation)] = []
    /// Bytes written into packs, headers and tables included.
    private(set) var bytesWritten: Int64 = 0

    /// Whether packs bypass the page cache (packs of a cache, not read again soon): written with
    /// direct I/O where the file system allows it, else their pages are dropped once on disk so
    /// that writing many of them reuses the same pages. Copying into fresh page-cache pages and
    /// writing them back cost filling a cache with 225 MB 0.05 s of CPU time.
    private let bypassesPageCache: Bool

    init(root: String, targetSize: Int, bypassesPageCache: Bool = false) {
        self.root = root
        self.targetSize = targetSize
        self.bypassesPageCache = bypassesPageCache
        self.staging = AlignedBuffer(capacity: 4 << 20)
    }

    deinit { abandon() }

    /// Appends one chunk record. `data` is the stored form (compressed or raw).
    func append(
        id: SHA256Digest,
        codec: Codec,
        rawLength: Int,
        data: UnsafeRawBufferPointer,
        reference: SHA256Digest? = nil
    ) throws {
        let recordLength = PackFormat.recordHeaderSize + data.count
        if fd >= 0,
            size + Int64(recordLength) + Int64(PackFormat.tocEntrySize * (toc.count + 1) + PackFormat.trailerSize)
                > Int64(targetSize)
        {
            try seal()
        }
        if fd < 0 { try startPack() }
        let offset = size
        var header = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        withUnsafeMutableBytes(of: &header) { h in
            PackFormat.writeRecordHeader(
                to: h.baseAddress!,
                id: id,
                codec: codec,
                rawLength: rawLength,
                storedLength: data.count
            )
        }
        try withUnsafeBytes(of: &header) { try put($0) }
        try put(data)
        let location = ChunkLocation(
            packID: packID,
            offset: UInt64(offset),
            storedLength: UInt32(data.count),
            rawLength: UInt32(rawLength),
            codecRaw: codec.rawValue,
            reference: reference
        )
        toc.append(
            PackFormat.TOCEntry(
                id: id,
                offset: UInt64(offset),
                rawLength: UInt32(rawLength),
                storedLength: UInt32(data.count),
                codecRaw: codec.rawValue
            )
        )
        written.append((id, location))
    }

    /// Seals the open pack, if any. Call once all chunks are appended.
    func finish() throws {
        if fd >= 0 { try seal() }
    }

    /// Closes and deletes the open temporary pack (after a failure).
    func abandon() {
        if fd >= 0 {
            close(fd)
            unlink(tempPath)
            fd = -1
        }
    }

    private func startPack() throws {
        var id: UInt64 = 0
        while id == 0 { id = UInt64.random(in: 1...UInt64.max) }
        packID = id
        tempPath = "\(root)/tmp/\(PackFormat.fileName(id)).tmp"
        if bypassesPageCache {
            (fd, direct) = try FileIO.createForDirectWrites(tempPath, exclusive: true)
        } else {
            fd = try FileIO.open(tempPath, O_WRONLY | O_CREAT | O_EXCL)
            direct = false
        }
        size = 0
        writebackStart = 0
        droppedUpTo = 0
        stagingOffset = 0
        stagingCount = 0
        toc.removeAll(keepingCapacity: true)
        var header = [UInt8](repeating: 0, count: PackFormat.headerSize)
        header.withUnsafeMutableBytes { PackFormat.writeHeader(to: $0.baseAddress!) }
        try header.withUnsafeBytes { try put($0) }
    }

    /// Buffers bytes for the open pack, flushing the staging buffer when it fills.
    private func put(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while rest.count > 0 {
            if stagingCount == staging.capacity { try flush() }
            let n = min(rest.count, staging.capacity - stagingCount)
            (staging.memory.baseAddress! + stagingCount).copyMemory(from: rest.baseAddress!, byteCount: n)
            stagingCount += n
            size += Int64(n)
            rest = UnsafeRawBufferPointer(rebasing: rest[n...])
        }
    }

    /// Writes the staged bytes. With direct I/O only whole blocks are written, the rest moved to
    /// the buffer's start, unless `last`: then the last block is padded (the file is cut back to
    /// its size when sealed).
    private func flush(last: Bool = false) throws {
        guard stagingCount > 0 else { return }
        if direct {
            let block = FileIO.directBlock
            let count = last ? (stagingCount + block - 1) / block * block : stagingCount / block * block
            if count > stagingCount {
                (staging.memory.baseAddress! + stagingCount).initializeMemory(
                    as: UInt8.self,
                    repeating: 0,
                    count: count - stagingCount
                )
            }
            if count > 0 {
                try FileIO.pwrite(
                    fd,
                    UnsafeRawBufferPointer(rebasing: staging.memory[0..<count]),
                    at: stagingOffset,
                    path: tempPath,
                    direct: true
                )
            }
            let rest = max(stagingCount - count, 0)
            if rest > 0 {
                staging.memory.baseAddress!.copyMemory(from: staging.memory.baseAddress! + count, byteCount: rest)
            }
            stagingOffset += Int64(count)
            bytesWritten += Int64(stagingCount - rest)
            stagingCount = rest
            return
        }
        try FileIO.pwrite(
            fd,
            UnsafeRawBufferPointer(rebasing: staging.memory[0..<stagingCount]),
            at: stagingOffset,
            path: tempPath
        )
        stagingOffset += Int64(stagingCount)
        bytesWritten += Int64(stagingCount)
        stagingCount = 0
        // Start writeback early in 16 MiB steps, so the fsync at seal time finds little left to write.
        if stagingOffset - writebackStart >= 16 << 20 {
            // The range handed to writeback last time is written by now, or nearly.
            if bypassesPageCache, writebackStart > droppedUpTo {
                FileIO.dropWritten(fd, offset: droppedUpTo, length: writebackStart - droppedUpTo)
                droppedUpTo = writebackStart
            }
            FileIO.startWriteback(fd, offset: writebackStart, length: stagingOffset - writebackStart)
            writebackStart = stagingOffset
        }
    }

    private func seal() throws {
        let tocBytes = PackFormat.encodeTOC(toc)
        let tocOffset = size
        try tocBytes.withUnsafeBytes { try put($0) }
        let trailer = PackFormat.encodeTrailer(
            PackFormat.Trailer(
                tocOffset: UInt64(tocOffset),
                count: UInt64(toc.count),
                tocDigest: SHA256Digest.hash(tocBytes),
                packID: packID
            )
        )
        try trailer.withUnsafeBytes { try put($0) }
        try flush(last: true)
        if direct, ftruncate(fd, off_t(size)) != 0 {
            throw CairnStoreError.io("truncate", path: tempPath, errno: errno)
        }
        try FileIO.fsync(fd, path: tempPath)
        if bypassesPageCache, !direct { posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) }
        close(fd)
        fd = -1
        let relative = PackFormat.relativePath(packID)
        let directory = "\(root)/\(relative.split(separator: "/").dropLast().joined(separator: "/"))"
        if !FileIO.exists(directory) {
            try FileIO.makeDirectories(directory)
            try FileIO.fsyncDirectory(root + "/packs")  // make the new subdirectory itself durable
        }
        try FileIO.rename(tempPath, "\(root)/\(relative)")
        try FileIO.fsyncDirectory(directory)
        sealed.append(SealedPack(id: packID, size: size, chunkCount: toc.count))
    }
}
