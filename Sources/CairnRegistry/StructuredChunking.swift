import CairnFormats
import CairnStore
import Digest

/// Chunking plans for files whose structure Cairn understands.
///
/// A safetensors file is cut as: its header (content-defined), then each tensor's bytes in fixed
/// slices of the store's slice size, counted from the tensor's start (bytes between tensors, if any,
/// are content-defined). Slice i of a tensor is the same chunk wherever the tensor sits, so frozen
/// layers and re-sharded copies dedup exactly. Float tensors (BF16, F16, F32) are marked for byte
/// planes, and a tensor that the parent version has with the same name, dtype and shape gets the
/// parent's slices as delta references. A file that does not parse as safetensors is cut by
/// content alone, like any other file.
enum StructuredChunking {
    /// A parent version's tensor: its type and the ids of its slices, in order.
    struct ParentTensor: Sendable {
        var dtype: SafetensorsDType
        var shape: [Int]
        var slices: [SHA256Digest]
    }

    /// The planner of a push whose slices are `sliceSize` bytes, with delta references to the
    /// tensors of `parent`.
    static func planner(sliceSize: Int, parent: [String: ParentTensor] = [:]) -> ChunkingPlanner {
        { file, read in
            guard SafetensorsPaths.isSafetensors(file.relativePath), file.size >= 8 else { return nil }
            let header = try SafetensorsHeader.read(fileSize: file.size, read)
            var segments: [ChunkingPlan.Segment] = [.init(range: 0..<header.dataStart, method: .contentDefined)]
            var at = header.dataStart
            for tensor in header.tensors where !tensor.fileRange.isEmpty {
                if tensor.fileRange.lowerBound > at {
                    segments.append(.init(range: at..<tensor.fileRange.lowerBound, method: .contentDefined))
                }
                var references: [SHA256Digest]? = nil
                if let p = parent[tensor.name], p.dtype == tensor.dtype, p.shape == tensor.shape {
                    references = p.slices
                }
                segments.append(
                    .init(
                        range: tensor.fileRange,
                        method: .fixed(sliceSize),
                        elementSize: planeWidth(tensor.dtype),
                        references: references
                    )
                )
                at = tensor.fileRange.upperBound
            }
            if at < file.size { segments.append(.init(range: at..<file.size, method: .contentDefined)) }
            return ChunkingPlan(segments: segments)
        }
    }

    /// Bytes per element for byte planes: 2 for 16-bit floats, 4 for 32-bit floats, else 0.
    static func planeWidth(_ dtype: SafetensorsDType) -> Int {
        switch dtype {
        case .bf16, .f16: 2
        case .f32: 4
        default: 0
        }
    }

    /// The tensors of every safetensors file of `manifest` whose bytes were cut into slices of
    /// `sliceSize` (only those can serve as delta references), by tensor name. Reads only headers.
    static func parentTensors(of manifest: Manifest, store: Store, sliceSize: Int) -> [String: ParentTensor] {
        parentTensors(of: manifest, sliceSize: sliceSize) { file, range in
            var bytes: [UInt8] = []
            try store.read(file, range: range) { part, _ in bytes.append(contentsOf: part) }
            return bytes
        }
    }

    /// The same, reading the parent's header bytes with `read` (for a parent in another store).
    static func parentTensors(
        of manifest: Manifest,
        sliceSize: Int,
        read: (FileEntry, Range<Int64>) throws -> [UInt8]
    ) -> [String: ParentTensor] {
        var tensors: [String: ParentTensor] = [:]
        for file in manifest.files where SafetensorsPaths.isSafetensors(file.path) && file.size >= 8 {
            guard let header = try? SafetensorsHeader.read(fileSize: file.size, { try read(file, $0) }) else {
                continue
            }
            let offsets = file.chunkOffsets()
            for tensor in header.tensors where !tensor.fileRange.isEmpty {
                guard let slices = slices(of: tensor.fileRange, in: file, offsets: offsets, sliceSize: sliceSize) else {
                    continue
                }
                tensors[tensor.name] = ParentTensor(dtype: tensor.dtype, shape: tensor.shape, slices: slices)
            }
        }
        return tensors
    }

    /// The chunk ids covering `range` when they are exactly its slices, else nil.
    private static func slices(
        of range: Range<Int64>,
        in file: FileEntry,
        offsets: [Int64],
        sliceSize: Int
    ) -> [SHA256Digest]? {
        guard let first = boundary(at: range.lowerBound, in: offsets) else { return nil }
        var ids: [SHA256Digest] = []
        var i = first
        var at = range.lowerBound
        while at < range.upperBound {
            guard i < file.chunks.count else { return nil }
            let expected = min(Int64(sliceSize), range.upperBound - at)
            guard Int64(file.chunks[i].length) == expected else { return nil }
            ids.append(file.chunks[i].id)
            at += expected
            i += 1
        }
        return ids
    }

    /// The index of the chunk boundary at `offset` among a file's chunk `offsets`
    /// (``FileEntry/chunkOffsets()``: each chunk's start, then the file's size), if one lies there.
    static func boundary(at offset: Int64, in offsets: [Int64]) -> Int? {
        var lo = 0
        var hi = offsets.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if offsets[mid] < offset { lo = mid + 1 } else { hi = mid }
        }
        return lo < offsets.count && offsets[lo] == offset ? lo : nil
    }
}
