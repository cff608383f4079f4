import Digest
import Glibc

/// Up to one batch of bytes of one file, cut into chunks. Ingest and scans add their own
/// per-chunk results in subclasses.
class ChunkBatch {
    let input: AlignedBuffer
    /// The file these bytes belong to (an index into the reader's files).
    var fileIndex = 0
    /// Where the batch starts in its file.
    var fileOffset: Int64 = 0
    /// Whether the batch ends its file.
    var isFileEnd = false
    /// Chunk i spans input[cuts[i] ..< cuts[i + 1]].
    var cuts: [Int] = []
    /// Per chunk: bytes per float element (0 when not float data) and the delta reference, if any.
    var elementSizes: [Int] = []
    var references: [SHA256Digest?] = []

    var chunkCount: Int { cuts.count - 1 }
    /// Bytes of the file the batch's chunks cover.
    var consumed: Int { cuts.last ?? 0 }

    init(capacity: Int) {
        input = AlignedBuffer(capacity: capacity)
    }

    func chunk(_ i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: input.memory[cuts[i]..<cuts[i + 1]])
    }
}

/// Reads files in order, one batch at a time, and cuts each batch into chunks following its file's
/// plan: content-defined within some segments, fixed slices in others. A chunk never crosses a
/// segment end; one that would run past the batch (while the file goes on) is left for the next
/// batch, which starts where the last chunk ended. A push and a scan use the same reader, so they
/// cut every file identically.
///
/// Used by one thread at a time (a pipeline's read stage).
final class ChunkedReader {
    let files: [SourceFile]
    let plans: [ChunkingPlan]
    let chunker: Chunker
    /// Bytes read per batch: at least four maximum-size chunks, so every batch cuts at least one.
    let batchCapacity: Int

    private var nextFile = 0
    private var nextOffset: Int64 = 0
    private var nextSegment = 0
    private var fd: Int32 = -1

    init(files: [SourceFile], plans: [ChunkingPlan], parameters: ChunkerParameters) {
        precondition(files.count == plans.count)
        self.files = files
        self.plans = plans
        chunker = Chunker(parameters)
        batchCapacity = max(8 << 20, 4 * parameters.max)
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Fills `batch` with the next bytes and cuts them. An empty file gives one batch without
    /// chunks. Returns false when every file has been read.
    ///
    /// - Throws: ``CairnStoreError``: `.io`, or `.conflict` when a file changes size while read.
    func fill(_ batch: ChunkBatch) throws -> Bool {
        guard nextFile < files.count else { return false }
        let file = files[nextFile]
        if fd < 0 {
            fd = try FileIO.open(file.absolutePath, O_RDONLY | O_NOFOLLOW)
            posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL)
        }
        let want = Int(min(Int64(batchCapacity), file.size - nextOffset))
        let got = try FileIO.pread(
            fd,
            UnsafeMutableRawBufferPointer(rebasing: batch.input.memory[0..<want]),
            at: nextOffset,
            path: file.absolutePath
        )
        guard got == want else {
            throw CairnStoreError(.conflict, "\(file.relativePath) shrank while it was being read; push again")
        }
        let isEnd = nextOffset + Int64(want) == file.size
        // A file that grew while it was read would be stored truncated: refuse it.
        if isEnd, try FileIO.fileSize(fd, path: file.absolutePath) != file.size {
            throw CairnStoreError(.conflict, "\(file.relativePath) changed size while it was being read; push again")
        }
        batch.cuts.removeAll(keepingCapacity: true)
        batch.cuts.append(0)
        batch.elementSizes.removeAll(keepingCapacity: true)
        batch.references.removeAll(keepingCapacity: true)
        var position = 0
        let segments = plans[nextFile].segments
        var segment = nextSegment
        cutting: while position < want {
            let at = nextOffset + Int64(position)
            while segments[segment].range.upperBound <= at { segment += 1 }
            let current = segments[segment]
            let segmentEnd = Int(min(current.range.upperBound - nextOffset, Int64(want)))
            let length: Int
            var reference: SHA256Digest? = nil
            switch current.method {
            case .fixed(let slice):
                let into = at - current.range.lowerBound
                if let references = current.references {
                    let index = Int(into / Int64(slice))
                    if index < references.count { reference = references[index] }
                }
                let sliceEnd = min(
                    current.range.lowerBound + (into / Int64(slice) + 1) * Int64(slice),
                    current.range.upperBound
                )
                length = Int(sliceEnd - at)
                guard position + length <= want else { break cutting }
            case .contentDefined:
                let rest = UnsafeRawBufferPointer(rebasing: batch.input.memory[position..<segmentEnd])
                let segmentEndsHere = current.range.upperBound <= nextOffset + Int64(want)
                guard let n = chunker.nextChunkLength(rest, isEnd: segmentEndsHere) else { break cutting }
                length = n
            }
            position += length
            batch.cuts.append(position)
            batch.elementSizes.append(current.elementSize)
            batch.references.append(reference)
        }
        nextSegment = segment
        batch.fileIndex = nextFile
        batch.fileOffset = nextOffset
        batch.isFileEnd = isEnd
        if isEnd {
            close(fd)
            fd = -1
            nextFile += 1
            nextOffset = 0
            nextSegment = 0
        } else {
            nextOffset += Int64(position)
        }
        return true
    }
}
