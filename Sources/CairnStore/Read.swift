import Digest
import Dispatch
import Glibc

extension Store {
    /// Where a read failed, for error messages: the layer above names the model and version.
    public typealias ReadContext = String

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
    /// dropped (``dropPack(holding:)``), or the fetcher's local source it came from
    /// (``ChunkFetcher/dropSource(of:)``), and the restore starts again, fetching those chunks.
    ///
    /// - Throws: ``CairnStoreError``: `.corruption` naming the file and chunk, `.io`, `.invalidArgument`;
    ///   errors of `fetcher`.
    public func restore(
        _ files: [FileEntry], to directory: String, context: ReadContext = "",
        progress: ((TransferProgress) -> Void)? = nil, fetcher: (any ChunkFetcher)? = nil, keepsFetched: Bool = true
    ) throws {
        var dropped = 0
        while true {
            let fill = try fetcher.map {
                try RemoteFill(store: self, files: files, fetcher: $0, keepsFetched: keepsFetched)
            }
            do {
                try restoreFiles(files, to: directory, context: context, progress: progress, fill: fill)
                try fill?.finishStaging()
                try fill?.staging.commitChunks()
                return
            } catch {
                try? fill?.finishStaging()
                fill?.staging.abandon()
                guard fill != nil, let error = error as? CairnStoreError else { throw error }
                // A local source of the fetcher that did not verify was dropped: its chunks are
                // fetched this time (each source is dropped once, so this ends).
                if error.droppedSource { continue }
                // A few damaged packs are dropped and fetched again; more, and something else is wrong.
                guard dropped < 4, let damaged = error.damagedChunk, try dropPack(holding: damaged) > 0 else { throw error }
                dropped += 1
            }
        }
    }

    private func restoreFiles(
        _ files: [FileEntry], to directory: String, context: ReadContext,
        progress: ((TransferProgress) -> Void)?, fill: RemoteFill?
    ) throws {
        let total = files.reduce(Int64(0)) { $0 + $1.size }
        var done: Int64 = 0
        try FileIO.makeDirectories(directory)
        // The last window of each file is written, and the file closed and renamed into place, on
        // a writer thread while the next file is read (one such window at a time): a model of many
        // files does not wait for the disk between them (40 files of 8 MB: 0.46-0.50 -> 0.32-0.38 s).
        let writer = DispatchQueue(label: "cairn.restore.last-window")
        let writerSlot = DispatchSemaphore(value: 1)
        let writeErrors = FirstError()
        defer { writer.sync {} }  // nothing of this restore is written after it returns or throws
        // The temporary file the writer may still hold: a file to be written under the same name
        // (the same path twice, or in other case on a case-folding file system) waits for it.
        var inFlight = ""
        for (index, file) in files.enumerated() {
            try writeErrors.rethrow()
            try RelativePath.validate(file.path)
            let target = directory + "/" + file.path
            let parent = target.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
            try FileIO.makeDirectories(parent.isEmpty ? "/" : parent)
            let name = file.path.split(separator: "/").last!
            let temp = "\(parent)/.\(name).cairn-partial"
            if temp.lowercased() == inFlight { writer.sync {} }
            // Direct I/O where the file system allows it: the bytes go from the read windows to the
            // disk without page-cache copies, whose fresh pages are slow to fault in on a VM (a
            // pull of a 338 MB model took 0.25–0.9 s buffered, depending on the state of memory).
            let (fd, direct) = try FileIO.createForDirectWrites(temp)
            let block = Self.directIOBlock
            // The last piece of a file is written in whole blocks (the window has room for them)
            // and the file cut back to its size; then it is renamed into place.
            @Sendable func write(_ bytes: UnsafeRawBufferPointer, at offset: Int64) throws {
                let length = direct ? (bytes.count + block - 1) / block * block : bytes.count
                try FileIO.pwrite(fd, UnsafeRawBufferPointer(start: bytes.baseAddress, count: length), at: offset, path: temp, direct: direct)
            }
            // Closes the file and renames it into place (removes it if that fails).
            @Sendable func finish() throws {
                let cut = !direct || file.size % Int64(block) == 0 || ftruncate(fd, off_t(file.size)) == 0
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
            // Whether the file is still this loop's to finish or clean up (not the writer's).
            var owned = true
            do {
                if ftruncate(fd, off_t(file.size)) != 0 {
                    throw CairnStoreError.io("truncate", path: temp, errno: errno)
                }
                let base = done
                try read(
                    file, range: 0..<file.size, context: context, alignment: direct ? block : 1, fill: fill,
                    following: files[(index + 1)...],
                    handOver: { window, count, offset in
                        owned = false
                        inFlight = temp.lowercased()
                        // Reported as read and verified; the restore returns once it is written.
                        progress?(TransferProgress(doneBytes: base + offset + Int64(count), totalBytes: total, newBytes: 0))
                        writerSlot.wait()
                        writer.async {
                            defer {
                                BufferPool.give(window)
                                writerSlot.signal()
                            }
                            // After a failed write of an earlier file, no later file is put in place.
                            guard !writeErrors.isSet else {
                                close(fd)
                                unlink(temp)
                                return
                            }
                            do {
                                try write(UnsafeRawBufferPointer(rebasing: window.memory[0..<count]), at: offset)
                            } catch {
                                close(fd)
                                unlink(temp)
                                writeErrors.record(error)
                                return
                            }
                            do { try finish() } catch { writeErrors.record(error) }
                        }
                    }
                ) { bytes, offset in
                    try writeErrors.rethrow()
                    try write(bytes, at: offset)
                    progress?(TransferProgress(doneBytes: base + offset + Int64(bytes.count), totalBytes: total, newBytes: 0))
                }
                if owned {  // an empty file
                    writer.sync {}
                    try writeErrors.rethrow()
                    owned = false
                    try finish()
                }
            } catch {
                if owned {
                    close(fd)
                    unlink(temp)
                }
                throw error
            }
            done += file.size
        }
        writer.sync {}
        try writeErrors.rethrow()
    }

    /// Reads `range` of `file` in order and hands the bytes to `sink` in windows of up to 16 MiB,
    /// with their offset in the file. Every chunk is verified before its bytes reach `sink`.
    ///
    /// Per window: the chunks it needs are grouped by pack, sorted by offset and coalesced into
    /// spans of adjacent records; spans are read with `pread` and decoded and verified in parallel.
    ///
    /// - Throws: ``CairnStoreError``: `.invalidArgument` for a range outside the file,
    ///   `.corruption` naming the chunk, `.notFound` if a chunk is not indexed.
    public func read(
        _ file: FileEntry, range: Range<Int64>, context: ReadContext = "",
        sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws {
        try read(file, range: range, context: context, alignment: 1, sink: sink)
    }

    /// Block size for direct I/O: a multiple of every device's logical block size in use.
    static let directIOBlock = 4096

    /// ``read(_:range:context:sink:)`` with blocks for direct I/O when `alignment` > 1
    /// (`range` must start at a multiple of it): each piece handed to `sink` starts at a multiple
    /// of `alignment`, in memory and in the file, and all but the last are whole multiples of it
    /// long; after the last piece, memory up to the next multiple of `alignment` is readable. A
    /// window's unfinished last block is handed again at the start of the next one.
    ///
    /// With `fill`, chunks the store lacks are fetched through it instead of failing the read.
    /// `following` are the files to be read whole after this one: near its end, their first
    /// windows are prepared (pack bytes requested from the disk, missing chunks from `fill`), so
    /// that the pipeline does not drain between files. With `handOver`, the last window does not go
    /// to `sink`: its buffer is handed over with the byte count and file offset `sink` would get,
    /// for the caller to write while it goes on (and give back to ``BufferPool``).
    func read(
        _ file: FileEntry, range: Range<Int64>, context: ReadContext, alignment: Int, fill: RemoteFill? = nil,
        following: ArraySlice<FileEntry> = [], handOver: ((AlignedBuffer, Int, Int64) -> Void)? = nil,
        sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws {
        guard range.lowerBound >= 0, range.upperBound <= file.size else {
            throw CairnStoreError(
                .invalidArgument, "range \(range.lowerBound)-\(range.upperBound - 1) is outside \(file.path) (\(file.size) bytes)")
        }
        precondition(alignment >= 1 && range.lowerBound % Int64(alignment) == 0)
        if range.isEmpty { return }
        let offsets = file.chunkOffsets()
        // First chunk: the last one starting at or before range.lowerBound.
        var lo = 0
        var hi = file.chunks.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= range.lowerBound { lo = mid } else { hi = mid - 1 }
        }
        // Two windows alternate: while the chunks of one are decoded, the other goes to `sink` on
        // a thread of its own (writes wait for the disk; decoding keeps every core busy).
        // With alignment, a window holds up to one block carried over from the previous window
        // before its own bytes, and room to round its end up to a whole block.
        let windowCapacity = Swift.min(Int(range.count), Self.readWindow) + config.chunker.max + 2 * (alignment - 1)
        let windows = [BufferPool.take(capacity: windowCapacity), BufferPool.take(capacity: windowCapacity)]
        var handedOver: AlignedBuffer?
        defer { for window in windows where window !== handedOver { BufferPool.give(window) } }
        // The window whose bytes go to `sink` next: `count` bytes from the start of `buffer`, whose
        // first byte is at `offset` in the file.
        var pending: (buffer: AlignedBuffer, count: Int, offset: Int64)? = nil
        // Fetched bundles verified in the last round, staged into the store in this one.
        var verified: [(bundle: any PendingBundle, verified: VerifiedBundle)] = []
        var round = 0
        var first = lo
        let errors = FirstError()
        // A window's spans in the store's packs, and what `fill` fetches for it.
        func prepare(_ file: FileEntry, _ chunks: Range<Int>, ahead: Bool = false) throws -> (spans: [Span], fetch: RemoteFill.Window?) {
            let (spans, missing) = try plan(file, chunks: chunks, context: context, allowMissing: fill != nil)
            for span in spans { prefetchPack(span.packID, range: span.start..<span.end) }
            return (spans, missing.isEmpty ? nil : try fill?.start(file, missing: missing, ahead: ahead))
        }
        // Windows planned ahead: their pack bytes are requested from the disk and their missing
        // chunks from `fill` (two windows ahead: a fetch takes a round trip), so that they arrive
        // while earlier windows are decoded.
        let depth = fill == nil ? 2 : 3
        var ahead: [(chunks: Range<Int>, spans: [Span], fetch: RemoteFill.Window?)] = []
        var planned = first
        // The next window of the following files to prepare: (index in `following`, its offsets,
        // first chunk); how many were prepared.
        var next: (file: Int, offsets: [Int64], chunk: Int)? = nil
        var preparedNext = 0
        func planAhead() throws {
            while ahead.count < depth, planned < file.chunks.count, offsets[planned] < range.upperBound {
                let end = Self.windowEnd(offsets, from: planned, upTo: range.upperBound)
                let (spans, fetch) = try prepare(file, planned..<end)
                ahead.append((planned..<end, spans, fetch))
                planned = end
            }
            guard planned == file.chunks.count || offsets[planned] >= range.upperBound else { return }
            while ahead.count + preparedNext < depth {
                if next == nil || next!.chunk == following[next!.file].chunks.count {
                    let index = next.map { $0.file + 1 } ?? following.startIndex
                    guard index < following.endIndex else { return }
                    next = (index, following[index].chunkOffsets(), 0)
                    continue
                }
                let cursor = next!
                let nextFile = following[cursor.file]
                let end = Self.windowEnd(cursor.offsets, from: cursor.chunk, upTo: nextFile.size)
                _ = try prepare(nextFile, cursor.chunk..<end, ahead: true)
                next!.chunk = end
                preparedNext += 1
            }
        }
        try planAhead()
        while let current = ahead.first {
            ahead.removeFirst()
            try planAhead()
            let last = current.chunks.upperBound
            let windowStart = Swift.max(offsets[first], range.lowerBound)
            let windowEnd = Swift.min(offsets[last], range.upperBound)
            let window = windows[round % 2]
            let writing = pending
            let staging = verified
            // Bytes of the block this window starts in, carried over from the previous window.
            let head = Int(windowStart % Int64(alignment))
            if head > 0, let previous = writing {
                let from = Int(windowStart - previous.offset) - head
                window.memory.baseAddress!.copyMemory(from: previous.buffer.memory.baseAddress! + from, byteCount: head)
            }
            let destination = UnsafeMutableRawBufferPointer(rebasing: window.memory[head...])
            let spans = current.spans
            let clip = windowStart..<windowEnd
            var filled: [(bundle: any PendingBundle, verified: VerifiedBundle)] = []
            alongside(
                {
                    guard !errors.isSet else { return }
                    do {
                        if let writing, writing.count > 0 {
                            try sink(UnsafeRawBufferPointer(rebasing: writing.buffer.memory[0..<writing.count]), writing.offset)
                        }
                        fill?.stage(staging)
                    } catch {
                        errors.record(error)
                    }
                },
                {
                    parallelFor(spans.count) { i in
                        if errors.isSet { return }
                        do {
                            try decode(spans[i], file: file, offsets: offsets, clip: clip, into: destination, context: context)
                        } catch {
                            errors.record(error)
                        }
                    }
                    guard let fill, let fetch = current.fetch, !errors.isSet else { return }
                    do {
                        filled = try fill.fill(fetch, file: file, context: context) { chunk in
                            Self.wholeChunk(at: offsets[chunk], length: offsets[chunk + 1] - offsets[chunk], clip: clip, in: destination)
                        } place: { chunk, bytes in
                            Self.place(bytes, at: offsets[chunk], clip: clip, into: destination)
                        }
                    } catch {
                        errors.record(error)
                    }
                })
            try errors.rethrow()
            if let fetch = current.fetch { fill?.written(fetch, file: file, chunks: first..<last) }
            verified = filled
            let count = head + Int(windowEnd - windowStart)
            let isLast = windowEnd == range.upperBound
            pending = (window, isLast ? count : count / alignment * alignment, windowStart - Int64(head))
            first = last
            round += 1
        }
        // The last window's fetched chunks are staged (on the stager's thread) while it is written.
        fill?.stage(verified)
        guard let pending else { return }
        if let handOver {
            handedOver = pending.buffer
            handOver(pending.buffer, pending.count, pending.offset)
        } else {
            try sink(UnsafeRawBufferPointer(rebasing: pending.buffer.memory[0..<pending.count]), pending.offset)
        }
    }

    /// The end of the window that starts at chunk `from` (chunk offsets `offsets`, one more than
    /// there are chunks): the chunks whose bytes fit in ``readWindow`` (at least one), up to the
    /// one that ends at or after `upTo`.
    private static func windowEnd(_ offsets: [Int64], from: Int, upTo: Int64) -> Int {
        var last = from + 1
        while last < offsets.count - 1 && offsets[last] < upTo && offsets[last + 1] - offsets[from] <= Int64(readWindow) {
            last += 1
        }
        return last
    }

    /// Where the chunk at `start` in the file (`length` bytes) goes in a window holding `clip`, if
    /// the window holds all of it (it is then decoded straight there).
    private static func wholeChunk(
        at start: Int64, length: Int64, clip: Range<Int64>, in destination: UnsafeMutableRawBufferPointer
    ) -> UnsafeMutableRawBufferPointer? {
        guard start >= clip.lowerBound, start + length <= clip.upperBound else { return nil }
        let from = Int(start - clip.lowerBound)
        return UnsafeMutableRawBufferPointer(rebasing: destination[from..<from + Int(length)])
    }

    /// Copies a chunk's bytes (starting at `offset` in the file) into a window holding `clip`.
    private static func place(
        _ bytes: UnsafeRawBufferPointer, at offset: Int64, clip: Range<Int64>, into destination: UnsafeMutableRawBufferPointer
    ) {
        let from = Swift.max(offset, clip.lowerBound)
        let to = Swift.min(offset + Int64(bytes.count), clip.upperBound)
        let target = destination.baseAddress! + Int(from - clip.lowerBound)
        // Decoded in place already (RemoteFill).
        guard from < to, UnsafeRawPointer(target) != bytes.baseAddress! + Int(from - offset) else { return }
        target.copyMemory(
            from: bytes.baseAddress! + Int(from - offset), byteCount: Int(to - from))
    }

    /// Bytes of a file decoded per round of a read.
    static let readWindow = 16 << 20
    /// Largest run of pack bytes read with one `pread` (small enough to spread work over cores).
    static let readSpan = 1 << 20

    /// A run of adjacent records in one pack, read with one `pread`.
    private struct Span {
        var packID: UInt64
        var start: Int64
        var end: Int64
        /// (chunk index in the file, record offset in the pack)
        var members: [(chunk: Int, recordOffset: Int64, location: ChunkLocation)]
    }

    /// Locates chunks `chunks` of `file` and groups them into spans: by pack, in offset order,
    /// neighbours coalesced (gaps up to 4 KiB, spans up to ``readSpan``).
    /// With `allowMissing`, chunks that are not indexed are returned (as indices into
    /// `file.chunks`) instead of failing.
    private func plan(
        _ file: FileEntry, chunks: Range<Int>, context: ReadContext, allowMissing: Bool = false
    ) throws -> (spans: [Span], missing: [Int]) {
        var located: [(chunk: Int, location: ChunkLocation)] = []
        var missing: [Int] = []
        located.reserveCapacity(chunks.count)
        try lmdb {
            try environment.read { txn in
                for i in chunks {
                    guard let location = try location(of: file.chunks[i].id, in: txn) else {
                        if allowMissing {
                            missing.append(i)
                            continue
                        }
                        throw readError(
                            .notFound, file: file, chunk: file.chunks[i].id, context: context,
                            "is not in the index (was it garbage-collected?)")
                    }
                    located.append((i, location))
                }
            }
        }
        located.sort { ($0.location.packID, $0.location.offset) < ($1.location.packID, $1.location.offset) }
        var spans: [Span] = []
        for (i, loc) in located {
            let start = Int64(loc.offset)
            let end = start + Int64(loc.recordLength)
            if var span = spans.last, span.packID == loc.packID, start >= span.start, start - span.end <= 4096,
                end - span.start <= Int64(Self.readSpan)
            {
                span.end = Swift.max(span.end, end)
                span.members.append((i, start, loc))
                spans[spans.count - 1] = span
            } else {
                spans.append(Span(packID: loc.packID, start: start, end: end, members: [(i, start, loc)]))
            }
        }
        return (spans, missing)
    }

    private func decode(
        _ span: Span, file: FileEntry, offsets: [Int64], clip: Range<Int64>,
        into destination: UnsafeMutableRawBufferPointer, context: ReadContext
    ) throws {
        try workers.withContext { ctx in
            let length = Int(span.end - span.start)
            ctx.readBuffer.reserve(length)
            let got = try readPack(
                span.packID, into: UnsafeMutableRawBufferPointer(rebasing: ctx.readBuffer.memory[0..<length]), at: span.start)
            for member in span.members {
                let chunk = file.chunks[member.chunk]
                let at = Int(member.recordOffset - span.start)
                guard at + member.location.recordLength <= got else {
                    throw readError(.corruption, file: file, chunk: chunk.id, context: context, "is cut off: its pack is truncated")
                }
                let record = UnsafeRawBufferPointer(
                    rebasing: ctx.readBuffer.memory[at..<at + member.location.recordLength])
                let chunkStart = offsets[member.chunk]
                let chunkEnd = chunkStart + Int64(chunk.length)
                // Decode straight into the window when the whole chunk is wanted, else via scratch.
                let inWindow = Self.wholeChunk(at: chunkStart, length: Int64(chunk.length), clip: clip, in: destination)
                let target = inWindow ?? UnsafeMutableRawBufferPointer(rebasing: ctx.scratch.memory[0..<Int(chunk.length)])
                try decodeRecord(record, expected: chunk, location: member.location, into: target, context: ctx) {
                    readError(.corruption, file: file, chunk: chunk.id, context: context, $0)
                }
                if inWindow == nil {
                    let from = Swift.max(chunkStart, clip.lowerBound)
                    let to = Swift.min(chunkEnd, clip.upperBound)
                    (destination.baseAddress! + Int(from - clip.lowerBound)).copyMemory(
                        from: ctx.scratch.memory.baseAddress! + Int(from - chunkStart), byteCount: Int(to - from))
                }
            }
        }
    }

    /// Checks a record's header against the index, decodes its data into `target` (exactly the raw
    /// length) and verifies the SHA-256. `fail` builds the error for a problem description.
    func decodeRecord(
        _ record: UnsafeRawBufferPointer, expected: ChunkRef, location: ChunkLocation,
        into target: UnsafeMutableRawBufferPointer, context ctx: WorkerContext, verify: Bool = true,
        fail: (String) -> CairnStoreError
    ) throws {
        guard let header = PackFormat.readRecordHeader(record) else {
            throw fail("has a malformed record header in pack \(PackFormat.fileName(location.packID))")
        }
        guard header.id == expected.id, header.rawLength == Int(expected.length),
            header.storedLength == Int(location.storedLength), header.codecRaw == location.codecRaw
        else {
            throw fail("does not match its record in pack \(PackFormat.fileName(location.packID))")
        }
        let data = UnsafeRawBufferPointer(rebasing: record[PackFormat.recordHeaderSize...])
        switch Codec(rawValue: header.codecRaw) {
        case .raw:
            guard data.count == target.count else { throw fail("has the wrong stored length") }
            target.baseAddress!.copyMemory(from: data.baseAddress!, byteCount: data.count)
        case .zstd:
            let n: Int
            do {
                n = try ctx.decompressor.decompress(data, into: target)
            } catch {
                throw fail("cannot be decompressed (\(error)); the pack is corrupt")
            }
            guard n == target.count else { throw fail("decompresses to \(n) bytes, expected \(target.count)") }
        case .byteGrouped:
            do {
                try ByteGrouping.decode(data, into: target, planes: ctx.planes.memory, decompressor: ctx.decompressor)
            } catch {
                throw fail("cannot be decoded (\(error)); the pack is corrupt")
            }
        case .delta:
            guard data.count >= 32, let reference = location.reference,
                SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: data[0..<32])) == reference
            else {
                throw fail("is a delta whose reference does not match its index entry")
            }
            let base: UnsafeRawBufferPointer
            do {
                // Not re-hashed here: the delta chunk rebuilt from it is verified against its own id
                // below, which a damaged reference cannot pass.
                base = try loadReference(reference, length: target.count, context: ctx, verify: false)
            } catch let error as CairnStoreError {
                throw fail("is stored as a delta against chunk \(reference.hex), which cannot be read: \(error.message)")
            }
            do {
                try Self.rebuildDelta(data, reference: base, into: target, context: ctx)
            } catch {
                throw fail("cannot be decoded (\(error)); the pack is corrupt")
            }
        case nil:
            throw fail("uses unknown codec \(header.codecRaw) (written by a newer cairn?)")
        }
        guard verify else { return }
        ctx.hasher.update(UnsafeRawBufferPointer(target))
        let digest = ctx.hasher.finalize()
        guard digest == expected.id else {
            throw fail("is corrupt: its SHA-256 is \(digest.shortHex)…, expected \(expected.id.shortHex)…")
        }
    }

    /// Rebuilds a chunk stored as a delta — `data`: its reference's id [32], then the byte planes of
    /// the difference — from the reference's raw bytes, into `target`. Not verified here.
    static func rebuildDelta(
        _ data: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer, into target: UnsafeMutableRawBufferPointer,
        context ctx: WorkerContext
    ) throws {
        try ByteGrouping.decode(
            UnsafeRawBufferPointer(rebasing: data[32...]), rotate: false, into: target, planes: ctx.planes.memory,
            decompressor: ctx.decompressor)
        ByteGrouping.add(target, reference: reference, elementSize: Int(data[32]))
    }

    /// Reads, decodes and verifies a delta's reference chunk into `ctx.reference`. References are
    /// never deltas themselves, so this does not recurse further.
    ///
    /// - Parameter verify: re-hash the reference (ingest does, before encoding a delta against it;
    ///   reads need not, since the rebuilt chunk is verified).
    func loadReference(
        _ id: SHA256Digest, length: Int, context ctx: WorkerContext, verify: Bool = true
    ) throws -> UnsafeRawBufferPointer {
        guard let location = try lmdb({ try environment.read { try self.location(of: id, in: $0) } }) else {
            throw CairnStoreError(.notFound, "chunk \(id.hex) is not in the index")
        }
        guard location.reference == nil, Int(location.rawLength) == length else {
            throw CairnStoreError(.corruption, "chunk \(id.hex) cannot serve as a delta reference")
        }
        ctx.referenceRecord.reserve(location.recordLength)
        let record = UnsafeMutableRawBufferPointer(rebasing: ctx.referenceRecord.memory[0..<location.recordLength])
        let got = try readPack(location.packID, into: record, at: Int64(location.offset))
        let target = UnsafeMutableRawBufferPointer(rebasing: ctx.reference.memory[0..<length])
        try decodeRecord(
            UnsafeRawBufferPointer(rebasing: record[0..<got]), expected: ChunkRef(id: id, length: UInt32(length)),
            location: location, into: target, context: ctx, verify: verify
        ) { CairnStoreError(.corruption, "chunk \(id.hex) \($0)") }
        return UnsafeRawBufferPointer(target)
    }

    private func readError(
        _ code: ErrorCode, file: FileEntry, chunk: SHA256Digest, context: ReadContext, _ what: String
    ) -> CairnStoreError {
        let prefix = context.isEmpty ? "" : "\(context): "
        var error = CairnStoreError(code, "\(prefix)file \(file.path): chunk \(chunk.hex) \(what)")
        if code == .corruption { error.damagedChunk = chunk }
        return error
    }
}
