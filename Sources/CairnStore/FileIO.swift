import Glibc
import Synchronization

/// Thin, checked POSIX file operations. Every failure throws ``CairnStoreError`` with `.io` and the path.
package enum FileIO {
    /// Bytes free for an unprivileged writer on the file system holding `path`, or nil when it
    /// cannot be read.
    static func freeBytes(at path: String) -> Int64? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return Int64(info.f_bavail) * Int64(info.f_frsize)
    }

    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> Int32 {
        let fd = Glibc.open(path, flags | O_CLOEXEC, mode)
        if fd < 0 { throw CairnStoreError.io("open", path: path, errno: errno) }
        return fd
    }

    /// Reads exactly `buffer.count` bytes at `offset` unless the file ends first; returns the bytes read.
    static func pread(
        _ fd: Int32,
        _ buffer: UnsafeMutableRawBufferPointer,
        at offset: Int64,
        path: String
    ) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = Glibc.pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw CairnStoreError.io("read", path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
        }
        return done
    }

    /// Reads from `offset` into `segments`, filled in order (a scattered read: one `preadv` per
    /// up to 1,024 segments). Returns the bytes read: fewer than the segments hold only at the end
    /// of the file.
    static func preadv(
        _ fd: Int32,
        _ segments: [UnsafeMutableRawBufferPointer],
        at offset: Int64,
        path: String
    ) throws -> Int {
        var vectors = segments.map { iovec(iov_base: $0.baseAddress, iov_len: $0.count) }
        var done = 0
        var first = 0
        while first < vectors.count {
            let count = Swift.min(vectors.count - first, 1024)
            let n = vectors.withUnsafeMutableBufferPointer {
                Glibc.preadv(fd, $0.baseAddress! + first, Int32(count), off_t(offset) + off_t(done))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw CairnStoreError.io("read", path: path, errno: errno)
            }
            if n == 0 { break }
            done += n
            // Past the segments filled; a partly filled one continues where the read stopped.
            var left = n
            while left > 0 {
                if left >= vectors[first].iov_len {
                    left -= vectors[first].iov_len
                    first += 1
                } else {
                    vectors[first].iov_base += left
                    vectors[first].iov_len -= left
                    left = 0
                }
            }
            while first < vectors.count, vectors[first].iov_len == 0 { first += 1 }
        }
        return done
    }

    /// Largest piece handed to one `pwrite`. The page cache sizes its folios after the write: writes
    /// of 2 MiB and more get 2 MiB folios, and on a VM whose free memory is handed back to the host
    /// (virtio free page reporting) each fresh huge folio costs a slow host fault — a 338 MB file
    /// written in 16 MiB pieces took 0.9 s, in 1 MiB pieces 0.1 s (see README, Performance).
    package static let largestWrite = 1 << 20

    /// Writes all of `buffer` at `offset`, in pieces of at most ``largestWrite`` bytes.
    ///
    /// With `direct` (a descriptor opened with `O_DIRECT`, no page cache involved), the buffer goes
    /// in one call: the kernel submits all of it to the device at once, instead of the thread
    /// waking up for each piece — which, with every core busy decoding, made a restore's writes
    /// run at half the disk's speed.
    package static func pwrite(
        _ fd: Int32,
        _ buffer: UnsafeRawBufferPointer,
        at offset: Int64,
        path: String,
        direct: Bool = false
    ) throws {
        let piece = direct ? Int.max : largestWrite
        var done = 0
        while done < buffer.count {
            let n = Glibc.pwrite(
                fd,
                buffer.baseAddress! + done,
                min(buffer.count - done, piece),
                off_t(offset) + off_t(done)
            )
            if n < 0 {
                if errno == EINTR { continue }
                throw CairnStoreError.io("write", path: path, errno: errno)
            }
            done += n
        }
    }

    /// `O_DIRECT` (Glibc does not export it without `_GNU_SOURCE`); its value differs by architecture.
    #if arch(arm64) || arch(arm)
    static let directFlag: Int32 = 0o200000
    #else
    static let directFlag: Int32 = 0o40000
    #endif

    /// Block size for direct I/O: a multiple of every device's logical block size in use.
    static let directBlock = 4096

    /// Creates (or truncates) `path` for writing with direct I/O in whole 4 KiB blocks where the file
    /// system allows it: some refuse `O_DIRECT` when the file is opened, others only at the first
    /// write, so one block is written to find out. Returns the descriptor and whether it is direct;
    /// the file's size is left to the caller (the test block may have extended it). With
    /// `exclusive`, an existing file is an error instead of being truncated.
    static func createForDirectWrites(_ path: String, exclusive: Bool = false) throws -> (fd: Int32, direct: Bool) {
        let flags = O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC | (exclusive ? O_EXCL : O_TRUNC)
        let fd = Glibc.open(path, flags | directFlag, 0o644)
        if fd >= 0 {
            let block = AlignedBuffer(capacity: directBlock)
            block.memory.initializeMemory(as: UInt8.self, repeating: 0)
            let written = withExtendedLifetime(block) { Glibc.pwrite(fd, block.memory.baseAddress!, directBlock, 0) }
            if written == directBlock { return (fd, true) }
            let failure = errno
            close(fd)
            guard failure == EINVAL else { throw CairnStoreError.io("write", path: path, errno: failure) }
        } else if errno != EINVAL {
            throw CairnStoreError.io("open", path: path, errno: errno)
        }
        return (try open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW), false)
    }

    /// Writes all of `buffer` to a stream (stdout, a pipe).
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, path: String) throws {
        var done = 0
        while done < buffer.count {
            let n = Glibc.write(fd, buffer.baseAddress! + done, buffer.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw CairnStoreError.io("write", path: path, errno: errno)
            }
            done += n
        }
    }

    static func fsync(_ fd: Int32, path: String) throws {
        if Glibc.fsync(fd) != 0 { throw CairnStoreError.io("fsync", path: path, errno: errno) }
    }

    /// Makes a rename or a new file in `directory` durable.
    static func fsyncDirectory(_ directory: String) throws {
        let fd = try open(directory, O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try fsync(fd, path: directory)
    }

    static func rename(_ from: String, _ to: String) throws {
        if Glibc.rename(from, to) != 0 { throw CairnStoreError.io("rename", path: "\(from) -> \(to)", errno: errno) }
    }

    /// Creates `path` and its missing parents.
    static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw CairnStoreError.io("mkdir", path: current, errno: errno)
            }
        }
    }

    static func fileSize(_ fd: Int32, path: String) throws -> Int64 {
        var st = stat()
        if fstat(fd, &st) != 0 { throw CairnStoreError.io("stat", path: path, errno: errno) }
        return Int64(st.st_size)
    }

    static func exists(_ path: String) -> Bool {
        access(path, F_OK) == 0
    }

    // Flags of `sync_file_range` (Glibc does not export them without `_GNU_SOURCE`).
    private static let syncFileRangeWaitBefore: UInt32 = 1
    private static let syncFileRangeWrite: UInt32 = 2
    private static let syncFileRangeWaitAfter: UInt32 = 4

    /// Starts writeback of a file range without waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`),
    /// so the final fsync of a pack has little left to do.
    static func startWriteback(_ fd: Int32, offset: Int64, length: Int64) {
        _ = cairn_sync_file_range(fd, offset, length, syncFileRangeWrite)
    }

    /// Waits for the writeback of a file range to finish, then drops its pages from the page cache,
    /// which makes them free for the next writes: fresh pages are slow to fault in on a VM whose
    /// free memory goes back to the host, recycled ones are not. Dirty pages are never dropped.
    static func dropWritten(_ fd: Int32, offset: Int64, length: Int64) {
        _ = cairn_sync_file_range(
            fd,
            offset,
            length,
            syncFileRangeWaitBefore | syncFileRangeWrite | syncFileRangeWaitAfter
        )
        posix_fadvise(fd, off_t(offset), off_t(length), POSIX_FADV_DONTNEED)
    }
}

@_silgen_name("sync_file_range")
private func cairn_sync_file_range(_ fd: Int32, _ offset: Int64, _ nbytes: Int64, _ flags: UInt32) -> Int32
