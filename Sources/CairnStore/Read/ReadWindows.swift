import Digest

// The window pipeline of a read: a file's range decoded window by window, each window's chunks
// decoded in parallel while the window before goes to the sink.

extension Store {
    /// Where a read failed, for error messages: the layer above names the model and version.
    public typealias ReadContext = String

    /// Reads `range` of `file` in order and hands the bytes to `sink` in windows of up to 16 MiB,
    /// with their offset in the file. Every chunk is verified before its bytes reach `sink`.
    ///
    /// Per window: the chunks it needs are grouped by pack, sorted by offset and coalesced into
    /// spans of adjacent records; spans are read with `pread` and decoded and verified in parallel,
    /// while the window before goes to `sink` on a thread of its own (`sink` is called from one
    /// thread at a time, not necessarily the caller's).
    ///
    /// ```swift
    /// try store.read(file, range: 0..<1024) { bytes, offset in header.append(contentsOf: bytes) }
    /// ```
    ///
    /// - Throws: ``CairnStoreError``: `.invalidArgument` for a range outside the file,
    ///   `.corruption` naming the chunk, `.notFound` if a chunk is not indexed, `.io`; errors
    ///   thrown by `sink`.
    public func read(
        _ file: FileEntry,
        range: Range<Int64>,
        context: ReadContext = "",
        sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws {
        try read(file, range: range, context: context, alignment: 1, sink: sink)
    }

    /// ``read(_:range:context:sink:)`` with blocks for direct I/O when `alignment` > 1
    /// (`range` must start at a multiple of it): each piece handed to `sink` starts at a multiple
    /// of `alignment`, in memory and in the file, and all but the last are whole multiples of it
    /// long; after the last piece, memory up to the next multiple of `alignment` is readable. A
    /// window's unfinished last block is handed again at the start of the next one.
    ///
    /// With `fill`, chunks the store lacks are fetched through it instead of failing the read.
    /// `following` are the files to be read whole after this one: near its end, their first
    /// windows are planned (``WindowLookahead``), so that the pipeline does not drain between
    /// files. With `handOver`, the last window does not go to `sink`: its buffer is handed over
    /// with the byte count and file offset `sink` would get, for the caller to write while it goes
    /// on (and give back to ``BufferPool/shared``).
    func read(
        _ file: FileEntry,
        range: Range<Int64>,
        context: ReadContext,
        alignment: Int,
        fill: MissingChunkFill? = nil,
        following: ArraySlice<FileEntry> = [],
        handOver: ((AlignedBuffer, Int, Int64) -> Void)? = nil,
        sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws {
        guard range.lowerBound >= 0, range.upperBound <= file.size else {
            throw CairnStoreError(
                .invalidArgument,
                "range \(range.lowerBound)-\(range.upperBound - 1) is outside \(file.path) (\(file.size) bytes)"
            )
        }
        precondition(alignment >= 1 && range.lowerBound % Int64(alignment) == 0)
        if range.isEmpty { return }
        let offsets = file.chunkOffsets()
        var lookahead = WindowLookahead(
            store: self,
            file: file,
            offsets: offsets,
            from: Self.chunk(holding: range.lowerBound, offsets: offsets),
            upTo: range.upperBound,
            context: context,
            fill: fill,
            following: following
        )
        // Two windows alternate: while the chunks of one are decoded, the other goes to `sink`.
        // With alignment, a window holds up to one block carried over from the previous window
        // before its own bytes, and room to round its end up to a whole block.
        let capacity = Swift.min(Int(range.count), Self.readWindow) + config.chunker.max + 2 * (alignment - 1)
        let buffers = [BufferPool.shared.take(capacity: capacity), BufferPool.shared.take(capacity: capacity)]
        var handedOver: AlignedBuffer?
        defer { for buffer in buffers where buffer !== handedOver { BufferPool.shared.give(buffer) } }
        // The window decoded last, whose bytes go to `sink` next.
        var decoded: DecodedWindow? = nil
        // Fetched bundles verified in the last round, staged into the store in the next one.
        var toStage: [MissingChunkFill.Verified] = []
        var round = 0
        while let window = try lookahead.next() {
            let start = Swift.max(offsets[window.chunks.lowerBound], range.lowerBound)
            let end = Swift.min(offsets[window.chunks.upperBound], range.upperBound)
            let buffer = buffers[round % 2]
            let head = Self.carryOver(into: buffer, windowStart: start, alignment: alignment, from: decoded)
            toStage = try decodeWindow(
                window,
                of: file,
                offsets: offsets,
                clip: start..<end,
                into: UnsafeMutableRawBufferPointer(rebasing: buffer.memory[head...]),
                context: context,
                fill: fill,
                while: decoded,
                goesTo: sink,
                staging: toStage
            )
            let count = head + Int(end - start)
            let isLast = end == range.upperBound
            decoded = DecodedWindow(
                buffer: buffer,
                count: isLast ? count : count / alignment * alignment,
                offset: start - Int64(head)
            )
            round += 1
        }
        // The last window's fetched chunks are staged (on the stager's thread) while it is written.
        fill?.stager.stage(toStage)
        guard let decoded else { return }
        if let handOver {
            handedOver = decoded.buffer
            handOver(decoded.buffer, decoded.count, decoded.offset)
        } else {
            try sink(decoded.bytes, decoded.offset)
        }
    }

    /// A decoded window: `count` bytes from the start of `buffer`, whose first byte is at `offset`
    /// in the file.
    private struct DecodedWindow {
        let buffer: AlignedBuffer
        let count: Int
        let offset: Int64

        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer.memory[0..<count]) }
    }

    /// Copies to the start of `buffer` the bytes of the block the window starting at `windowStart`
    /// begins in, which the previous window decoded but did not hand on (reads with alignment);
    /// returns how many: the window's own bytes follow them.
    private static func carryOver(
        into buffer: AlignedBuffer,
        windowStart: Int64,
        alignment: Int,
        from previous: DecodedWindow?
    ) -> Int {
        let head = Int(windowStart % Int64(alignment))
        if head > 0, let previous {
            let from = Int(windowStart - previous.offset) - head
            buffer.memory.baseAddress!.copyMemory(from: previous.buffer.memory.baseAddress! + from, byteCount: head)
        }
        return head
    }

    /// One round of a read: decodes `window`'s spans in parallel into `destination` (the window
    /// holding bytes `clip` of the file) and fills in what `fill` fetches for it, while `previous`
    /// goes to `sink` and `toStage` to the stager on a thread of their own (writes wait for the
    /// disk; decoding keeps every core busy). Returns the bundles fetched for this window, once
    /// verified, to be staged in the next round.
    ///
    /// - Throws: the first error of either side.
    private func decodeWindow(
        _ window: PlannedWindow,
        of file: FileEntry,
        offsets: [Int64],
        clip: Range<Int64>,
        into destination: UnsafeMutableRawBufferPointer,
        context: ReadContext,
        fill: MissingChunkFill?,
        while previous: DecodedWindow?,
        goesTo sink: (UnsafeRawBufferPointer, Int64) throws -> Void,
        staging toStage: [MissingChunkFill.Verified]
    ) throws -> [MissingChunkFill.Verified] {
        let errors = FirstError()
        let stager = fill?.stager
        var fetched: [MissingChunkFill.Verified] = []
        alongside(
            {
                guard !errors.isSet else { return }
                do {
                    if let previous, previous.count > 0 { try sink(previous.bytes, previous.offset) }
                    stager?.stage(toStage)
                } catch {
                    errors.record(error)
                }
            },
            {
                parallelFor(window.spans.count) { i in
                    if errors.isSet { return }
                    do {
                        try decode(
                            window.spans[i],
                            file: file,
                            offsets: offsets,
                            clip: clip,
                            into: destination,
                            context: context
                        )
                    } catch {
                        errors.record(error)
                    }
                }
                guard let fill, let fetch = window.fetch, !errors.isSet else { return }
                do {
                    fetched = try fill.fill(fetch, file: file, context: context) { chunk in
                        Self.wholeChunk(
                            at: offsets[chunk],
                            length: offsets[chunk + 1] - offsets[chunk],
                            clip: clip,
                            in: destination
                        )
                    } place: { chunk, bytes in
                        Self.place(bytes, at: offsets[chunk], clip: clip, into: destination)
                    }
                } catch {
                    errors.record(error)
                }
            }
        )
        try errors.rethrow()
        if let fetch = window.fetch { fill?.written(fetch, file: file, chunks: window.chunks) }
        return fetched
    }
}
