import Digest

// The plan of a read: which chunks a window of a file holds, where the store keeps them (spans of
// adjacent records in a pack, each read with one `pread`), and which it lacks; and the windows
// planned ahead of the one being decoded.

extension Store {
    /// Bytes of a file decoded per round of a read.
    static let readWindow = 16 << 20
    /// Largest run of pack bytes read with one `pread` (small enough to spread work over cores).
    static let readSpan = 1 << 20
    /// Largest gap between two records read with one `pread` (or one scattered read): reading a
    /// few unwanted bytes costs less than a second system call.
    static let largestReadGap = 4096

    /// A run of adjacent records in one pack, read with one `pread`.
    struct Span {
        var packID: UInt64
        var start: Int64
        var end: Int64
        /// (chunk index in the file, record offset in the pack)
        var members: [(chunk: Int, recordOffset: Int64, location: ChunkLocation)]
    }

    /// A window of a read, planned: its chunks (indices into the file's chunks), the spans of
    /// those the store holds, and the fetch of those it lacks.
    struct PlannedWindow {
        var chunks: Range<Int>
        var spans: [Span]
        var fetch: MissingChunkFill.Window?
    }

    /// The index of the chunk that holds byte `offset` of a file whose chunks start at `offsets`
    /// (one more than there are chunks): the last one starting at or before it.
    static func chunk(holding offset: Int64, offsets: [Int64]) -> Int {
        var lo = 0
        var hi = offsets.count - 2
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if offsets[mid] <= offset { lo = mid } else { hi = mid - 1 }
        }
        return lo
    }

    /// The end of the window that starts at chunk `from` (chunk offsets `offsets`, one more than
    /// there are chunks): the chunks whose bytes fit in ``readWindow`` (at least one), up to the
    /// one that ends at or after `upTo`.
    static func windowEnd(_ offsets: [Int64], from: Int, upTo: Int64) -> Int {
        var last = from + 1
        while last < offsets.count - 1 && offsets[last] < upTo && offsets[last + 1] - offsets[from] <= Int64(readWindow)
        {
            last += 1
        }
        return last
    }

    /// Plans chunks `chunks` of `file` as a window: their spans (pack bytes requested from the
    /// disk at once, `POSIX_FADV_WILLNEED`) and, with `fill`, the fetch of those the store lacks.
    /// A window planned `ahead` belongs to a file read after the current one.
    ///
    /// - Throws: ``CairnStoreError`` with `.notFound` for a chunk not indexed (without `fill`);
    ///   errors of the fetch.
    func planWindow(
        _ file: FileEntry,
        chunks: Range<Int>,
        context: ReadContext,
        fill: MissingChunkFill?,
        ahead: Bool = false
    ) throws -> PlannedWindow {
        let (spans, missing) = try locate(file, chunks: chunks, context: context, allowMissing: fill != nil)
        for span in spans { prefetchPack(span.packID, range: span.start..<span.end) }
        let fetch = missing.isEmpty ? nil : try fill?.start(file, missing: missing, ahead: ahead)
        return PlannedWindow(chunks: chunks, spans: spans, fetch: fetch)
    }

    /// Locates chunks `chunks` of `file` and groups them into spans: by pack, in offset order,
    /// neighbours coalesced (gaps up to ``largestReadGap``, spans up to ``readSpan``).
    /// With `allowMissing`, chunks that are not indexed are returned (as indices into
    /// `file.chunks`) instead of failing.
    private func locate(
        _ file: FileEntry,
        chunks: Range<Int>,
        context: ReadContext,
        allowMissing: Bool
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
                            .notFound,
                            file: file,
                            chunk: file.chunks[i].id,
                            context: context,
                            "is not in the index (was it garbage-collected?)"
                        )
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
            if var span = spans.last, span.packID == loc.packID, start >= span.start,
                start - span.end <= Int64(Self.largestReadGap), end - span.start <= Int64(Self.readSpan)
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
}

/// The windows of a read planned ahead of the one being decoded, so that their pack bytes and
/// fetched chunks arrive while earlier windows are decoded. Near the end of the file, the first
/// windows of the files to be read after it are planned too, so that the pipeline does not drain
/// between files.
struct WindowLookahead {
    private let store: Store
    private let file: FileEntry
    private let offsets: [Int64]
    private let end: Int64
    private let context: Store.ReadContext
    private let fill: MissingChunkFill?
    private let following: ArraySlice<FileEntry>
    /// How many windows stay planned beyond the one being decoded: two when every chunk is stored
    /// (pack bytes are requested from the disk two windows ahead), three with a fill (a fetch takes
    /// a round trip, so fetches start three windows ahead).
    private let depth: Int
    private var planned: [Store.PlannedWindow] = []
    /// The first chunk of the file not planned yet.
    private var nextChunk: Int
    /// The next window of the following files to plan: its file (an index in `following`), that
    /// file's chunk offsets, its first chunk.
    private var nextInFollowing: (file: Int, offsets: [Int64], chunk: Int)? = nil
    /// Windows of the following files planned so far.
    private var plannedInFollowing = 0

    /// Plans `file` from chunk `first` up to byte `end`, then the files of `following` (read
    /// whole, in order, after it).
    init(
        store: Store,
        file: FileEntry,
        offsets: [Int64],
        from first: Int,
        upTo end: Int64,
        context: Store.ReadContext,
        fill: MissingChunkFill?,
        following: ArraySlice<FileEntry>
    ) {
        self.store = store
        self.file = file
        self.offsets = offsets
        self.end = end
        self.context = context
        self.fill = fill
        self.following = following
        depth = fill == nil ? 2 : 3
        nextChunk = first
    }

    /// The next window of the file to decode, with ``depth`` windows after it planned; nil when
    /// the range is done.
    mutating func next() throws -> Store.PlannedWindow? {
        try planAhead()
        guard !planned.isEmpty else { return nil }
        let window = planned.removeFirst()
        try planAhead()
        return window
    }

    /// Plans windows of the file until ``depth`` are planned; once the file is all planned,
    /// windows of the following files, until as many are planned ahead in all.
    private mutating func planAhead() throws {
        while planned.count < depth, nextChunk < file.chunks.count, offsets[nextChunk] < end {
            let last = Store.windowEnd(offsets, from: nextChunk, upTo: end)
            planned.append(try store.planWindow(file, chunks: nextChunk..<last, context: context, fill: fill))
            nextChunk = last
        }
        guard nextChunk == file.chunks.count || offsets[nextChunk] >= end else { return }
        while planned.count + plannedInFollowing < depth {
            guard let cursor = nextInFollowing, cursor.chunk < following[cursor.file].chunks.count else {
                let index = nextInFollowing.map { $0.file + 1 } ?? following.startIndex
                guard index < following.endIndex else { return }
                nextInFollowing = (index, following[index].chunkOffsets(), 0)
                continue
            }
            let nextFile = following[cursor.file]
            let last = Store.windowEnd(cursor.offsets, from: cursor.chunk, upTo: nextFile.size)
            _ = try store.planWindow(nextFile, chunks: cursor.chunk..<last, context: context, fill: fill, ahead: true)
            nextInFollowing!.chunk = last
            plannedInFollowing += 1
        }
    }
}
