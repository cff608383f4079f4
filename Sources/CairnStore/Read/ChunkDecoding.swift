import Digest

// Turning stored records back into chunk bytes: a span's records decoded into a read window, one
// record decoded and verified, a delta rebuilt from its reference.

extension Store {
    /// Reads `span` with one `pread` and decodes and verifies its records into the window holding
    /// bytes `clip` of `file` (`offsets`: the file's chunk offsets). A chunk the window holds whole
    /// is decoded straight into it, one it holds part of through scratch memory.
    ///
    /// - Throws: ``CairnStoreError`` with `.corruption` naming the chunk; `.io`.
    func decode(
        _ span: Span,
        file: FileEntry,
        offsets: [Int64],
        clip: Range<Int64>,
        into destination: UnsafeMutableRawBufferPointer,
        context: ReadContext
    ) throws {
        try workers.withContext { ctx in
            let length = Int(span.end - span.start)
            ctx.readBuffer.reserve(length)
            let got = try readPack(
                span.packID,
                into: UnsafeMutableRawBufferPointer(rebasing: ctx.readBuffer.memory[0..<length]),
                at: span.start
            )
            for member in span.members {
                let chunk = file.chunks[member.chunk]
                let at = Int(member.recordOffset - span.start)
                guard at + member.location.recordLength <= got else {
                    throw readError(
                        .corruption,
                        file: file,
                        chunk: chunk.id,
                        context: context,
                        "is cut off: its pack is truncated"
                    )
                }
                let record = UnsafeRawBufferPointer(
                    rebasing: ctx.readBuffer.memory[at..<at + member.location.recordLength]
                )
                let chunkStart = offsets[member.chunk]
                let chunkEnd = chunkStart + Int64(chunk.length)
                // Decode straight into the window when the whole chunk is wanted, else via scratch.
                let inWindow = Self.wholeChunk(at: chunkStart, length: Int64(chunk.length), clip: clip, in: destination)
                let target =
                    inWindow ?? UnsafeMutableRawBufferPointer(rebasing: ctx.scratch.memory[0..<Int(chunk.length)])
                try decodeRecord(record, expected: chunk, location: member.location, into: target, context: ctx) {
                    readError(.corruption, file: file, chunk: chunk.id, context: context, $0)
                }
                if inWindow == nil {
                    let from = Swift.max(chunkStart, clip.lowerBound)
                    let to = Swift.min(chunkEnd, clip.upperBound)
                    (destination.baseAddress! + Int(from - clip.lowerBound)).copyMemory(
                        from: ctx.scratch.memory.baseAddress! + Int(from - chunkStart),
                        byteCount: Int(to - from)
                    )
                }
            }
        }
    }

    /// Where the chunk at `start` in the file (`length` bytes) goes in a window holding `clip`, if
    /// the window holds all of it (it is then decoded straight there).
    static func wholeChunk(
        at start: Int64,
        length: Int64,
        clip: Range<Int64>,
        in destination: UnsafeMutableRawBufferPointer
    ) -> UnsafeMutableRawBufferPointer? {
        guard start >= clip.lowerBound, start + length <= clip.upperBound else { return nil }
        let from = Int(start - clip.lowerBound)
        return UnsafeMutableRawBufferPointer(rebasing: destination[from..<from + Int(length)])
    }

    /// Copies a chunk's bytes (starting at `offset` in the file) into a window holding `clip`.
    static func place(
        _ bytes: UnsafeRawBufferPointer,
        at offset: Int64,
        clip: Range<Int64>,
        into destination: UnsafeMutableRawBufferPointer
    ) {
        let from = Swift.max(offset, clip.lowerBound)
        let to = Swift.min(offset + Int64(bytes.count), clip.upperBound)
        let target = destination.baseAddress! + Int(from - clip.lowerBound)
        // Decoded in place already (a fetched chunk given its place in the window).
        guard from < to, UnsafeRawPointer(target) != bytes.baseAddress! + Int(from - offset) else { return }
        target.copyMemory(
            from: bytes.baseAddress! + Int(from - offset),
            byteCount: Int(to - from)
        )
    }

    /// Checks a record's header against the index, decodes its data into `target` (exactly the raw
    /// length) and verifies the SHA-256. `fail` builds the error for a problem description.
    func decodeRecord(
        _ record: UnsafeRawBufferPointer,
        expected: ChunkRef,
        location: ChunkLocation,
        into target: UnsafeMutableRawBufferPointer,
        context ctx: WorkerContext,
        verify: Bool = true,
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
                throw fail(
                    "is stored as a delta against chunk \(reference.hex), which cannot be read: \(error.message)"
                )
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
        _ data: UnsafeRawBufferPointer,
        reference: UnsafeRawBufferPointer,
        into target: UnsafeMutableRawBufferPointer,
        context ctx: WorkerContext
    ) throws {
        try ByteGrouping.decode(
            UnsafeRawBufferPointer(rebasing: data[32...]),
            rotate: false,
            into: target,
            planes: ctx.planes.memory,
            decompressor: ctx.decompressor
        )
        ByteGrouping.add(target, reference: reference, elementSize: Int(data[32]))
    }

    /// Reads, decodes and verifies a delta's reference chunk into `ctx.reference`. References are
    /// never deltas themselves, so this does not recurse further.
    ///
    /// - Parameter verify: re-hash the reference (ingest does, before encoding a delta against it;
    ///   reads need not, since the rebuilt chunk is verified).
    func loadReference(
        _ id: SHA256Digest,
        length: Int,
        context ctx: WorkerContext,
        verify: Bool = true
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
            UnsafeRawBufferPointer(rebasing: record[0..<got]),
            expected: ChunkRef(id: id, length: UInt32(length)),
            location: location,
            into: target,
            context: ctx,
            verify: verify
        ) { CairnStoreError(.corruption, "chunk \(id.hex) \($0)") }
        return UnsafeRawBufferPointer(target)
    }

    /// An error of a read, naming the file and chunk (and, for `.corruption`, recording the chunk
    /// as damaged so that a cache can drop its pack).
    func readError(
        _ code: ErrorCode,
        file: FileEntry,
        chunk: SHA256Digest,
        context: ReadContext,
        _ what: String
    ) -> CairnStoreError {
        let prefix = context.isEmpty ? "" : "\(context): "
        var error = CairnStoreError(code, "\(prefix)file \(file.path): chunk \(chunk.hex) \(what)")
        if code == .corruption { error.damagedChunk = chunk }
        return error
    }
}
