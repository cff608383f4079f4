import Dispatch
import Glibc

// The writing side of a restore: files written under temporary names and renamed into place once
// every chunk verified, the last window of each file written on a thread of its own while the
// next file is read.

extension Store {
    /// Writes `files` under `directory` (creating it and any subdirectories), byte-exact.
    ///
    /// Each file is written to a temporary name and renamed into place only after every chunk has
    /// been verified against its SHA-256: a corrupt chunk fails the read and leaves no wrong bytes.
    ///
    /// With `fetcher`, the store is a cache: chunks it lacks are fetched through `fetcher` as the
    /// files are written (verified like every chunk) and, with `keepsFetched`, staged into the store
    /// and indexed once all files are written (without it, the caller keeps the written files as
    /// the cache's copy of their chunks).
    ///
    /// A cache heals itself: when one of its chunks is found damaged, the pack holding it is
    /// dropped (``dropPack(holding:)``), or the fetcher's local copy it came from
    /// (``ChunkFetcher/dropLocalCopy(of:)``), and the restore starts again, fetching those chunks.
    ///
    /// ```swift
    /// try store.restore(try store.manifest(id).files, to: "/tmp/model")
    /// ```
    ///
    /// - Throws: ``CairnStoreError``: `.corruption` naming the file and chunk, `.notFound` for a
    ///   chunk neither stored nor provided by `fetcher`, `.io`, `.invalidArgument` for an unsafe
    ///   path; errors of `fetcher`.
    public func restore(
        _ files: [FileEntry],
        to directory: String,
        context: ReadContext = "",
        progress: ((TransferProgress) -> Void)? = nil,
        fetcher: (any ChunkFetcher)? = nil,
        keepsFetched: Bool = true
    ) throws {
        var dropped = 0
        while true {
            let fill = try fetcher.map {
                try MissingChunkFill(store: self, files: files, fetcher: $0, keepsFetched: keepsFetched)
            }
            do {
                try restoreFiles(files, to: directory, context: context, progress: progress, fill: fill)
                try fill?.stager.finish()
                try fill?.stager.upload.commitChunks()
                return
            } catch {
                try? fill?.stager.finish()
                fill?.stager.upload.abandon()
                guard fill != nil, let error = error as? CairnStoreError else { throw error }
                // A local copy of the fetcher that did not verify was dropped: its chunks are
                // fetched this time (each copy is dropped once, so this ends).
                if error.droppedSource { continue }
                // A few damaged packs are dropped and fetched again; more, and something else is wrong.
                guard dropped < 4, let damaged = error.damagedChunk, try dropPack(holding: damaged) > 0 else {
                    throw error
                }
                dropped += 1
            }
        }
    }

    /// Writes every file of `files` under `directory`, in order (see ``restore(_:to:context:progress:fetcher:keepsFetched:)``).
    private func restoreFiles(
        _ files: [FileEntry],
        to directory: String,
        context: ReadContext,
        progress: ((TransferProgress) -> Void)?,
        fill: MissingChunkFill?
    ) throws {
        let total = files.reduce(Int64(0)) { $0 + $1.size }
        var done: Int64 = 0
        try FileIO.makeDirectories(directory)
        let writer = LastWindowWriter()
        defer { writer.waitForWrites() }  // nothing of this restore is written after it returns or throws
        // The temporary file the writer may still hold: a file to be written under the same name
        // (the same path twice, or in other case on a case-folding file system) waits for it.
        var inFlight = ""
        for (index, file) in files.enumerated() {
            try writer.rethrow()
            let output = try PartialFile.create(for: file, under: directory) { temp in
                if temp.lowercased() == inFlight { writer.waitForWrites() }
            }
            // Whether the file is still this loop's to finish or clean up (not the writer's).
            var owned = true
            do {
                let base = done
                try read(
                    file,
                    range: 0..<file.size,
                    context: context,
                    alignment: output.blockSize,
                    fill: fill,
                    following: files[(index + 1)...],
                    handOver: { window, count, offset in
                        owned = false
                        inFlight = output.temp.lowercased()
                        // Reported as read and verified; the restore returns once it is written.
                        progress?(
                            TransferProgress(doneBytes: base + offset + Int64(count), totalBytes: total, newBytes: 0)
                        )
                        writer.write(window, count: count, at: offset, to: output)
                    },
                    sink: { bytes, offset in
                        try writer.rethrow()
                        try output.write(bytes, at: offset)
                        progress?(
                            TransferProgress(
                                doneBytes: base + offset + Int64(bytes.count),
                                totalBytes: total,
                                newBytes: 0
                            )
                        )
                    }
                )
                if owned {  // an empty file
                    writer.waitForWrites()
                    try writer.rethrow()
                    owned = false
                    try output.finish()
                }
            } catch {
                if owned { output.discard() }
                throw error
            }
            done += file.size
        }
        writer.waitForWrites()
        try writer.rethrow()
    }
}

/// A file being restored: written under a temporary name beside its target (`.NAME.cairn-partial`)
/// and renamed into place once complete. Written with direct I/O where the file system allows it:
/// the bytes go from the read windows to the disk without page-cache copies, whose fresh pages are
/// slow to fault in on a VM (a restore of a 338 MB model took 0.25–0.9 s buffered, depending on the
/// state of memory).
final class PartialFile: Sendable {
    let target: String
    let temp: String
    let size: Int64
    private let fd: Int32
    /// Whether the descriptor writes with direct I/O (whole blocks).
    private let direct: Bool

    private init(target: String, temp: String, size: Int64, fd: Int32, direct: Bool) {
        self.target = target
        self.temp = temp
        self.size = size
        self.fd = fd
        self.direct = direct
    }

    /// Creates the temporary file of `file` under `directory` (and its parent directories), sized
    /// to the file. `beforeCreating` gets the temporary path first (to wait for an earlier writer
    /// of the same name).
    ///
    /// - Throws: ``CairnStoreError`` with `.invalidArgument` for an unsafe path, `.io`.
    static func create(
        for file: FileEntry,
        under directory: String,
        beforeCreating: (String) -> Void
    ) throws -> PartialFile {
        try RelativePath.validate(file.path)
        let target = directory + "/" + file.path
        let parent = target.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        try FileIO.makeDirectories(parent.isEmpty ? "/" : parent)
        let name = file.path.split(separator: "/").last!
        let temp = "\(parent)/.\(name).cairn-partial"
        beforeCreating(temp)
        let (fd, direct) = try FileIO.createForDirectWrites(temp)
        let output = PartialFile(target: target, temp: temp, size: file.size, fd: fd, direct: direct)
        if ftruncate(fd, off_t(file.size)) != 0 {
            let code = errno
            output.discard()
            throw CairnStoreError.io("truncate", path: temp, errno: code)
        }
        return output
    }

    /// The alignment its writes need: a direct I/O block, else 1.
    var blockSize: Int { direct ? FileIO.directBlock : 1 }

    /// Writes `bytes` at `offset`. With direct I/O, the last piece of the file is written in whole
    /// blocks (the window has room for them) and the file cut back to its size by ``finish()``.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
        let block = FileIO.directBlock
        let length = direct ? (bytes.count + block - 1) / block * block : bytes.count
        try FileIO.pwrite(
            fd,
            UnsafeRawBufferPointer(start: bytes.baseAddress, count: length),
            at: offset,
            path: temp,
            direct: direct
        )
    }

    /// Closes the file and renames it into place (removes it if that fails).
    ///
    /// - Throws: ``CairnStoreError`` with `.io`.
    func finish() throws {
        let cut = !direct || size % Int64(FileIO.directBlock) == 0 || ftruncate(fd, off_t(size)) == 0
        let code = errno
        close(fd)
        do {
            guard cut else { throw CairnStoreError.io("truncate", path: temp, errno: code) }
            try FileIO.rename(temp, target)
        } catch {
            unlink(temp)
            throw error
        }
    }

    /// Closes and removes the file (after a failure).
    func discard() {
        close(fd)
        unlink(temp)
    }
}

/// Writes the last window of each restored file, then closes the file and renames it into place,
/// on a thread of its own while the next file is read (one such window at a time): a model of many
/// files does not wait for the disk between them (40 files of 8 MB: 0.46-0.50 -> 0.32-0.38 s).
final class LastWindowWriter: Sendable {
    private let queue = DispatchQueue(label: "cairn.restore.last-window")
    private let slot = DispatchSemaphore(value: 1)
    private let errors = FirstError()

    /// Writes `count` bytes of `window` at `offset` of `file` and puts the file in place, after
    /// the windows handed over before; gives the window back to ``BufferPool/shared``. After a
    /// failed write of an earlier file, the file is removed instead.
    func write(_ window: AlignedBuffer, count: Int, at offset: Int64, to file: PartialFile) {
        slot.wait()
        queue.async { [self] in
            defer {
                BufferPool.shared.give(window)
                slot.signal()
            }
            guard !errors.isSet else {
                file.discard()
                return
            }
            do {
                try file.write(UnsafeRawBufferPointer(rebasing: window.memory[0..<count]), at: offset)
            } catch {
                file.discard()
                errors.record(error)
                return
            }
            do { try file.finish() } catch { errors.record(error) }
        }
    }

    /// Waits until every window handed over is written.
    func waitForWrites() { queue.sync {} }

    /// Throws the first error of a write handed over.
    func rethrow() throws { try errors.rethrow() }
}
