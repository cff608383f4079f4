import Digest
import Glibc
import Zstd

// Building a bundle from chunks of local files (a tree scanned with ``Store/scan``).

extension Store {
    /// Reads the chunks `sources` from local files in parallel and frames them as one bundle
    /// (``ChunkBundle``) with their codec hints. With `compress`, chunks travel as zstd where that is
    /// smaller (slow links); without, raw, read straight into the bundle, and the receiving store
    /// encodes them with its own codecs as a local push would (byte planes, deltas). With `verify`,
    /// each chunk is checked against its id first (a file changed since it was scanned fails with
    /// `.conflict`); without, the receiver's check catches it.
    package static func bundle(
        _ sources: [ChunkSource],
        compressionLevel: Int,
        maxChunk: Int,
        compress: Bool = true,
        verify: Bool = true
    ) throws -> [UInt8] {
        let pool = WorkerPool(level: Int32(compressionLevel), maxChunk: maxChunk)
        // Where each chunk's data goes: raw, straight into the bundle; compressed, into scratch first.
        var offsets: [Int] = []
        offsets.reserveCapacity(sources.count)
        var room = 0
        for s in sources {
            offsets.append(room)
            room +=
                compress
                ? Swift.max(zstdCompressBound(Int(s.chunk.length)), Int(s.chunk.length))
                : ChunkBundle.entryHeaderSize(hasReference: s.reference != nil) + Int(s.chunk.length)
        }
        var out = [UInt8](repeating: 0, count: compress ? 0 : ChunkBundle.headerSize + room)
        let scratch = AlignedBuffer(capacity: compress ? room : 1)
        // Each iteration writes its own entry.
        var forms = [StoredForm](repeating: StoredForm(codec: .raw, length: 0), count: sources.count)
        let errors = FirstError()
        try out.withUnsafeMutableBytes { whole in
            let outBase = whole.baseAddress
            forms.withUnsafeMutableBufferPointer { forms in
                parallelFor(sources.count) { i in
                    if errors.isSet { return }
                    let s = sources[i]
                    let length = Int(s.chunk.length)
                    do {
                        try pool.withContext { ctx in
                            let target: UnsafeMutableRawBufferPointer
                            if compress {
                                target = UnsafeMutableRawBufferPointer(rebasing: ctx.scratch.memory[0..<length])
                            } else {
                                let at =
                                    ChunkBundle.headerSize + offsets[i]
                                    + ChunkBundle.entryHeaderSize(hasReference: s.reference != nil)
                                target = UnsafeMutableRawBufferPointer(start: outBase! + at, count: length)
                            }
                            let fd = try FileIO.open(s.path, O_RDONLY | O_NOFOLLOW)
                            defer { close(fd) }
                            let got = try FileIO.pread(fd, target, at: s.offset, path: s.path)
                            guard got == length else {
                                throw CairnStoreError(
                                    .conflict,
                                    "\(s.path) changed while it was being pushed; push again"
                                )
                            }
                            if verify {
                                ctx.hasher.update(UnsafeRawBufferPointer(target))
                                guard ctx.hasher.finalize() == s.chunk.id else {
                                    throw CairnStoreError(
                                        .conflict,
                                        "\(s.path) changed while it was being pushed; push again"
                                    )
                                }
                            }
                            guard compress else {
                                forms[i] = StoredForm(codec: .raw, length: length)
                                return
                            }
                            let slot = UnsafeMutableRawBufferPointer(
                                rebasing: scratch.memory[
                                    offsets[i]..<offsets[i] + Swift.max(zstdCompressBound(length), length)
                                ]
                            )
                            let n = try ctx.compressor.compress(UnsafeRawBufferPointer(target), into: slot)
                            if n < length {
                                forms[i] = StoredForm(codec: .zstd, length: n)
                            } else {
                                if length > 0 {
                                    slot.baseAddress!.copyMemory(from: target.baseAddress!, byteCount: length)
                                }
                                forms[i] = StoredForm(codec: .raw, length: length)
                            }
                        }
                    } catch {
                        errors.record(error)
                    }
                }
            }
            try errors.rethrow()
        }
        if !compress {
            out.withUnsafeMutableBytes { raw in
                let p = raw.baseAddress!
                ChunkBundle.writeHeader(count: sources.count, to: p)
                for (i, s) in sources.enumerated() {
                    ChunkBundle.writeEntryHeader(
                        id: s.chunk.id,
                        codec: .raw,
                        rawLength: Int(s.chunk.length),
                        storedLength: Int(s.chunk.length),
                        elementSize: s.elementSize,
                        reference: s.reference,
                        to: p + ChunkBundle.headerSize + offsets[i]
                    )
                }
            }
            return out
        }
        let total =
            ChunkBundle.headerSize
            + sources.indices.reduce(0) {
                $0 + ChunkBundle.entryHeaderSize(hasReference: sources[$1].reference != nil) + forms[$1].length
            }
        out = [UInt8](repeating: 0, count: total)
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            ChunkBundle.writeHeader(count: sources.count, to: p)
            var at = ChunkBundle.headerSize
            for (i, s) in sources.enumerated() {
                let form = forms[i]
                at += ChunkBundle.writeEntryHeader(
                    id: s.chunk.id,
                    codec: form.codec,
                    rawLength: Int(s.chunk.length),
                    storedLength: form.length,
                    elementSize: s.elementSize,
                    reference: s.reference,
                    to: p + at
                )
                if form.length > 0 {
                    (p + at).copyMemory(from: scratch.memory.baseAddress! + offsets[i], byteCount: form.length)
                }
                at += form.length
            }
        }
        return out
    }
}
