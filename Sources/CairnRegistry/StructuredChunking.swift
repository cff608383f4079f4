import CairnFormats
import CairnStore

/// Chunking plans for files whose structure Cairn understands.
///
/// A safetensors file is cut as: its header (content-defined), then each tensor's bytes in fixed
/// slices of the store's slice size, counted from the tensor's start (bytes between tensors, if any,
/// are content-defined). Slice i of a tensor is the same chunk wherever the tensor sits, so frozen
/// layers and re-sharded copies dedup exactly. A file that does not parse as safetensors is cut by
/// content alone, like any other file.
enum StructuredChunking {
    static func planner(sliceSize: Int) -> ChunkingPlanner {
        { file, read in
            guard file.relativePath.hasSuffix(".safetensors"), file.size >= 8 else { return nil }
            let n = try SafetensorsHeader.headerLength(try read(0..<8), fileSize: file.size)
            let header = try SafetensorsHeader.parse(headerBytes: try read(8..<8 + Int64(n)), fileSize: file.size)
            var segments: [ChunkingPlan.Segment] = [.init(range: 0..<header.dataStart, method: .contentDefined)]
            var at = header.dataStart
            for tensor in header.tensors where !tensor.fileRange.isEmpty {
                if tensor.fileRange.lowerBound > at {
                    segments.append(.init(range: at..<tensor.fileRange.lowerBound, method: .contentDefined))
                }
                segments.append(.init(range: tensor.fileRange, method: .fixed(sliceSize)))
                at = tensor.fileRange.upperBound
            }
            if at < file.size { segments.append(.init(range: at..<file.size, method: .contentDefined)) }
            return ChunkingPlan(segments: segments)
        }
    }
}
