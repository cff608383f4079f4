import Digest
import Glibc

// Exporting stored chunks as a bundle: into a buffer, or as pieces that name pack ranges for a
// sender that copies them to a socket itself.

extension Store {
    /// Chunks located for a bundle (``ChunkBundle``) by ``planExport(_:maxBytes:sendingDeltas:)``, sorted by
    /// where they are stored; ``export(_:into:)`` writes the bundle.
    package struct ChunkExport: Sendable {
        fileprivate let located: [(id: SHA256Digest, location: ChunkLocation)]
        /// The most bytes the bundle can take: a buffer of this size holds it.
        package let bound: Int
        /// Whether chunks stored as deltas travel as stored (for a receiver that holds their
        /// references) instead of decoded.
        package let sendsDeltas: Bool

        /// Whether a chunk travels as stored: raw, zstd and byte planes do, and deltas when the
        /// plan sends them; other deltas are decoded.
        fileprivate func sentAsStored(_ l: ChunkLocation) -> Bool {
            l.codecRaw == Codec.raw.rawValue || l.codecRaw == Codec.zstd.rawValue
                || l.codecRaw == Codec.byteGrouped.rawValue
                || (sendsDeltas && l.codecRaw == Codec.delta.rawValue)
        }
    }

    /// Locates the stored chunks `ids` (each once) for a bundle of at most `maxBytes`. With
    /// `sendingDeltas`, chunks stored as deltas go as stored: codec delta, their stored bytes being
    /// the reference's id and the byte planes of the difference (the receiver must hold the
    /// reference to decode them).
    ///
    /// - Throws: ``CairnStoreError``: `.notFound` naming the first chunk not stored,
    ///   `.invalidArgument` when the bundle could exceed `maxBytes`.
    package func planExport(_ ids: [SHA256Digest], maxBytes: Int, sendingDeltas: Bool = false) throws -> ChunkExport {
        var unique: [SHA256Digest] = []
        var seen = Set<SHA256Digest>()
        for id in ids where seen.insert(id).inserted { unique.append(id) }
        var located: [(id: SHA256Digest, location: ChunkLocation)] = []
        located.reserveCapacity(unique.count)
        try lmdb {
            try environment.read { txn in
                for id in unique {
                    guard let location = try location(of: id, in: txn) else {
                        throw CairnStoreError(.notFound, "chunk \(id.hex) is not stored")
                    }
                    located.append((id, location))
                }
            }
        }
        // At most: stored bytes as they are, decoded chunks no larger than raw (zstd or raw).
        let sendsAsStored = ChunkExport(located: [], bound: 0, sendsDeltas: sendingDeltas).sentAsStored
        let bound = ChunkBundle.size(
            storedLengths: located.map {
                sendsAsStored($0.location) ? Int($0.location.storedLength) : Int($0.location.rawLength)
            }
        )
        guard bound <= maxBytes else {
            throw CairnStoreError(
                .invalidArgument,
                "the chunks asked for take up to \(bound) bytes, more than the limit of \(maxBytes) per batch"
            )
        }
        located.sort { ($0.location.packID, $0.location.offset) < ($1.location.packID, $1.location.offset) }
        return ChunkExport(located: located, bound: bound, sendsDeltas: sendingDeltas)
    }

    /// Writes the bundle of `plan`'s chunks into `out` (at least `plan.bound` bytes); returns its
    /// size. Chunks stored raw, as zstd or as byte planes are sent as stored, without decoding them
    /// (the receiver verifies every chunk): their bytes are read from the packs straight into
    /// place. Chunks stored as deltas against a parent chunk are decoded, verified and sent as byte
    /// planes (or raw), after the others, so a bundle never depends on chunks the receiver may
    /// lack — unless the plan sends deltas as stored (``planExport(_:maxBytes:sendingDeltas:)``).
    /// Each record's header is checked against the index.
    ///
    /// - Throws: ``CairnStoreError``: `.corruption` for a damaged or truncated record.
    package func export(_ plan: ChunkExport, into out: UnsafeMutableRawBufferPointer) throws -> Int {
        precondition(out.count >= plan.bound, "an export buffer holds at least the plan's bound")
        let located = plan.located
        // Where each entry sent as stored begins (its header; the stored bytes follow); -1 for
        // entries decoded here, which follow the others.
        var positions = [Int](repeating: -1, count: located.count)
        var at = ChunkBundle.headerSize
        for (i, item) in located.enumerated() where plan.sentAsStored(item.location) {
            positions[i] = at
            at += ChunkBundle.entryHeaderSize + Int(item.location.storedLength)
        }
        // Spans of adjacent records in one pack, read with one scattered read each.
        var spans: [Range<Int>] = []
        var start = 0
        for i in 1...max(located.count, 1) where i <= located.count {
            if i < located.count {
                let a = located[i - 1].location
                let b = located[i].location
                let spanStart = Int64(located[start].location.offset)
                if a.packID == b.packID,
                    Int64(b.offset) - (Int64(a.offset) + Int64(a.recordLength)) <= Self.largestReadGap,
                    Int64(b.offset) + Int64(b.recordLength) - spanStart <= Int64(Self.readSpan)
                {
                    continue
                }
            }
            spans.append(start..<i)
            start = i
        }
        // Decoded entries: codec and bytes.
        let decoded = UnsafeMutableBufferPointer<(codec: Codec, bytes: [UInt8])>.allocate(
            capacity: max(located.count, 1)
        )
        decoded.initialize(repeating: (.raw, []))
        defer {
            decoded.deinitialize()
            decoded.deallocate()
        }
        // One span after the other: reading them is mostly copying from the page cache, and a
        // store exporting for a reader answers several exports at once (a restore keeps three
        // fetches on their way), so spreading one over the cores only made it compete with the
        // others (and, on one machine, with the receiver decoding them: fetching a base model into
        // an empty cache took 0.41 -> 0.39 s when read in order).
        for span in spans {
            try exportSpan(located, range: span, positions: positions, out: out, decoded: decoded)
        }
        let p = out.baseAddress!
        ChunkBundle.writeHeader(count: located.count, to: p)
        for (i, item) in located.enumerated() where positions[i] < 0 {
            let entry = decoded[i]
            at += ChunkBundle.writeEntryHeader(
                id: item.id,
                codec: entry.codec,
                rawLength: Int(item.location.rawLength),
                storedLength: entry.bytes.count,
                to: p + at
            )
            entry.bytes.withUnsafeBytes {
                if $0.count > 0 { (p + at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            at += entry.bytes.count
        }
        return at
    }

    /// A plan's bundle as pieces to send in order, for a sender that copies file ranges to a
    /// socket itself (`sendfile`): the stored bytes of chunks sent as stored stay in their packs
    /// and are named by range; the rest — the bundle's header, the entries' headers, chunks decoded
    /// from deltas (as ``export(_:into:)`` decodes them) — is in ``bytes``. The bundle is the one
    /// ``export(_:into:)`` writes, byte for byte.
    package struct ExportPieces: Sendable {
        package enum Piece: Sendable, Equatable {
            /// A range of ``ExportPieces/bytes``.
            case bytes(Range<Int>)
            /// `length` bytes at `offset` of the pack open at ``ExportPieces/descriptors``[`file`].
            case pack(file: Int, offset: Int64, length: Int)
        }
        package let bytes: [UInt8]
        package let pieces: [Piece]
        /// Descriptors open on the packs the pieces name, owned by the caller, who closes them.
        package let descriptors: [Int32]
        /// Bytes of the whole bundle.
        package var size: Int {
            pieces.reduce(0) {
                switch $1 {
                case .bytes(let range): $0 + range.count
                case .pack(_, _, let length): $0 + length
                }
            }
        }
    }

    /// The pieces of `plan`'s bundle (``ExportPieces``). The packs' records are not read here:
    /// their bytes reach the receiver unchecked here (the receiver verifies every chunk anyway);
    /// a pack shorter than its records is refused here.
    ///
    /// - Throws: ``CairnStoreError``: `.corruption` for a missing or truncated pack or a damaged
    ///   delta record.
    package func exportPieces(_ plan: ChunkExport) throws -> ExportPieces {
        let stored = plan.located.filter { plan.sentAsStored($0.location) }
        let others = plan.located.filter { !plan.sentAsStored($0.location) }
        // The bundle's header and the stored chunks' entry headers, then the chunks decoded here:
        // exported as a bundle of their own right after the entry headers, whose 16-byte header
        // the last entry headers then overwrite.
        let headerBytes = ChunkBundle.headerSize + stored.count * ChunkBundle.entryHeaderSize
        var bytes: [UInt8]
        if others.isEmpty {
            bytes = [UInt8](repeating: 0, count: headerBytes)
        } else {
            let sub = ChunkExport(
                located: others,
                bound: ChunkBundle.size(storedLengths: others.map { Int($0.location.rawLength) }),
                sendsDeltas: false
            )
            let at = headerBytes - ChunkBundle.headerSize
            bytes = try [UInt8](unsafeUninitializedCapacity: at + sub.bound) { buffer, count in
                count = 0
                let written = try export(
                    sub,
                    into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[at...]))
                )
                count = at + written
            }
        }
        var descriptors: [Int32] = []
        var files: [UInt64: Int] = [:]
        var packEnds: [UInt64: Int64] = [:]
        do {
            var packStarts: [UInt64: Int64] = [:]
            for (_, location) in stored {
                let end = Int64(location.offset) + Int64(location.recordLength)
                packEnds[location.packID] = max(packEnds[location.packID] ?? 0, end)
                packStarts[location.packID] = min(packStarts[location.packID] ?? .max, Int64(location.offset))
                guard files[location.packID] == nil else { continue }
                // A descriptor of its own (not a duplicate of the shared one, which is set for
                // random reads): the kernel reads ahead for the sender where the bytes are not cached.
                let path = packPath(location.packID)
                let fd: Int32
                do {
                    fd = try FileIO.open(path, O_RDONLY)
                } catch {
                    throw CairnStoreError(
                        .corruption,
                        "pack \(PackFormat.fileName(location.packID)) is missing or unreadable: \(error)"
                    )
                }
                descriptors.append(fd)
                files[location.packID] = descriptors.count - 1
            }
            for (id, end) in packEnds {
                let fd = descriptors[files[id]!]
                var info = stat()
                guard fstat(fd, &info) == 0 else {
                    throw CairnStoreError.io("stat", path: packPath(id), errno: errno)
                }
                guard Int64(info.st_size) >= end else {
                    throw CairnStoreError(
                        .corruption,
                        "pack \(PackFormat.fileName(id)) is truncated: its records end at \(end), the file at \(info.st_size)"
                    )
                }
                let start = packStarts[id]!
                posix_fadvise(fd, off_t(start), off_t(end - start), POSIX_FADV_WILLNEED)
            }
        } catch {
            for fd in descriptors { close(fd) }
            throw error
        }
        var pieces: [ExportPieces.Piece] = []
        pieces.reserveCapacity(2 * stored.count + 2)
        bytes.withUnsafeMutableBytes { out in
            let p = out.baseAddress!
            ChunkBundle.writeHeader(count: plan.located.count, to: p)
            var at = ChunkBundle.headerSize
            var from = 0
            for (id, location) in stored {
                at += ChunkBundle.writeEntryHeader(
                    id: id,
                    codec: Codec(rawValue: location.codecRaw)!,
                    rawLength: Int(location.rawLength),
                    storedLength: Int(location.storedLength),
                    to: p + at
                )
                pieces.append(.bytes(from..<at))
                from = at
                pieces.append(
                    .pack(
                        file: files[location.packID]!,
                        offset: Int64(location.offset) + Int64(PackFormat.recordHeaderSize),
                        length: Int(location.storedLength)
                    )
                )
            }
            at = out.count  // the decoded chunks, if any, follow
            if at > from { pieces.append(.bytes(from..<at)) }
        }
        countRead(stored.reduce(0) { $0 + Int($1.location.storedLength) })
        return ExportPieces(bytes: bytes, pieces: pieces, descriptors: descriptors)
    }

    /// The stored chunks `ids` as a bundle (``ChunkBundle``), each once, for another store's
    /// ``storeChunks(bundle:compressRaw:onVerified:)`` or ``ChunkUpload``: chunks go as stored
    /// (raw, zstd, byte planes), deltas decoded.
    ///
    /// ```swift
    /// let bundle = try source.exportChunks(ids, maxBytes: 64 << 20)
    /// try bundle.withUnsafeBytes { try target.storeChunks(bundle: $0) }
    /// ```
    ///
    /// - Throws: ``CairnStoreError``: `.notFound` naming the first chunk not stored,
    ///   `.invalidArgument` when the bundle could exceed `maxBytes`, `.corruption` for a damaged
    ///   record, `.io`.
    public func exportChunks(_ ids: [SHA256Digest], maxBytes: Int) throws -> [UInt8] {
        let plan = try planExport(ids, maxBytes: maxBytes)
        return try [UInt8](unsafeUninitializedCapacity: plan.bound) { buffer, count in
            count = 0
            count = try export(plan, into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Reads the records `range` of `located` (adjacent in one pack) with one scattered read: the
    /// stored bytes of chunks sent as stored go to their place in `out`, their headers aside;
    /// records to decode go aside whole and are decoded into `decoded`.
    private func exportSpan(
        _ located: [(id: SHA256Digest, location: ChunkLocation)],
        range: Range<Int>,
        positions: [Int],
        out: UnsafeMutableRawBufferPointer,
        decoded: UnsafeMutableBufferPointer<(codec: Codec, bytes: [UInt8])>
    ) throws {
        let first = located[range.lowerBound].location
        let spanStart = Int64(first.offset)
        let headerSize = PackFormat.recordHeaderSize
        // Aside: one gap, the headers, the records to decode.
        let decodedBytes = range.reduce(0) { positions[$1] < 0 ? $0 + located[$1].location.recordLength : $0 }
        let headersAt = Self.largestReadGap
        let recordsAt = headersAt + range.count * headerSize
        let asideBuffer = AlignedBuffer(capacity: recordsAt + decodedBytes)
        defer { withExtendedLifetime(asideBuffer) {} }
        let aside = asideBuffer.memory
        // Where each record's header was read to.
        var headerAt: [Int] = []
        headerAt.reserveCapacity(range.count)
        var segments: [UnsafeMutableRawBufferPointer] = []
        segments.reserveCapacity(range.count * 2 + 1)
        var next = spanStart
        var asideRecord = recordsAt
        for (k, i) in range.enumerated() {
            let loc = located[i].location
            let gap = Int(Int64(loc.offset) - next)
            if gap > 0 { segments.append(UnsafeMutableRawBufferPointer(rebasing: aside[0..<gap])) }
            if positions[i] >= 0 {
                let header = headersAt + k * headerSize
                let data = positions[i] + ChunkBundle.entryHeaderSize
                segments.append(UnsafeMutableRawBufferPointer(rebasing: aside[header..<header + headerSize]))
                segments.append(UnsafeMutableRawBufferPointer(rebasing: out[data..<data + Int(loc.storedLength)]))
                headerAt.append(header)
            } else {
                segments.append(
                    UnsafeMutableRawBufferPointer(rebasing: aside[asideRecord..<asideRecord + loc.recordLength])
                )
                headerAt.append(asideRecord)
                asideRecord += loc.recordLength
            }
            next = Int64(loc.offset) + Int64(loc.recordLength)
        }
        let got = try readPack(first.packID, into: segments, at: spanStart)
        try workers.withContext { ctx in
            for (k, i) in range.enumerated() {
                let (id, loc) = located[i]
                func damaged(_ what: String) -> CairnStoreError {
                    CairnStoreError(.corruption, "chunk \(id.hex) \(what) in pack \(PackFormat.fileName(loc.packID))")
                }
                guard Int64(loc.offset) + Int64(loc.recordLength) - spanStart <= Int64(got) else {
                    throw damaged("is cut off: its pack is truncated")
                }
                let header = UnsafeRawBufferPointer(rebasing: aside[headerAt[k]..<headerAt[k] + headerSize])
                guard let read = PackFormat.readRecordHeader(header), read.id == id,
                    read.rawLength == Int(loc.rawLength),
                    read.storedLength == Int(loc.storedLength), read.codecRaw == loc.codecRaw
                else { throw damaged("does not match its record") }
                if positions[i] >= 0 {
                    ChunkBundle.writeEntryHeader(
                        id: id,
                        codec: Codec(rawValue: loc.codecRaw)!,
                        rawLength: Int(loc.rawLength),
                        storedLength: Int(loc.storedLength),
                        to: out.baseAddress! + positions[i]
                    )
                    continue
                }
                let record = UnsafeRawBufferPointer(rebasing: aside[headerAt[k]..<headerAt[k] + loc.recordLength])
                let rawLength = Int(loc.rawLength)
                let target = UnsafeMutableRawBufferPointer(rebasing: ctx.scratch.memory[0..<rawLength])
                try decodeRecord(
                    record,
                    expected: ChunkRef(id: id, length: loc.rawLength),
                    location: loc,
                    into: target,
                    context: ctx
                ) {
                    CairnStoreError(.corruption, "chunk \(id.hex) \($0)")
                }
                // A delta (the only codec left) needs its reference: it travels as byte planes of
                // the decoded bytes, with the element size its encoding records.
                let elementSize = Int(record[PackFormat.recordHeaderSize + 32])
                guard elementSize == 2 || elementSize == 4 else {
                    decoded[i] = (.raw, Array(UnsafeRawBufferPointer(target)))
                    continue
                }
                let encoded = UnsafeMutableRawBufferPointer(
                    rebasing: ctx.deltaOutput.memory[0..<ByteGrouping.bound(rawLength, elementSize: elementSize)]
                )
                let n = try ByteGrouping.encode(
                    UnsafeRawBufferPointer(target),
                    elementSize: elementSize,
                    into: encoded,
                    planes: ctx.planes.memory,
                    compressor: ctx.planeCompressor
                )
                decoded[i] =
                    n < rawLength
                    ? (.byteGrouped, Array(UnsafeRawBufferPointer(rebasing: encoded[0..<n])))
                    : (.raw, Array(UnsafeRawBufferPointer(target)))
            }
        }
    }
}
