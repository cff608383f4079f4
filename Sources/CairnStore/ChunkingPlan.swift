import Digest
import Glibc

/// How to cut one file into chunks: consecutive segments covering the whole file, each cut by
/// content-defined chunking or into fixed-size slices.
///
/// The store knows nothing of file formats; a layer above that does (safetensors: the header, then
/// each tensor's bytes in fixed slices) supplies plans through a ``ChunkingPlanner``. Slices line up
/// across versions and shard layouts, so unchanged tensors dedup exactly wherever they sit.
public struct ChunkingPlan: Sendable, Equatable {
    /// How a segment is cut into chunks.
    public enum Method: Sendable, Equatable {
        /// FastCDC with the store's parameters, restarted at the segment's start.
        case contentDefined
        /// Slices of this many bytes from the segment's start (the last one may be shorter).
        case fixed(Int)
    }

    /// A range of the file and how it is cut.
    public struct Segment: Sendable, Equatable {
        /// The bytes of the file the segment covers.
        public var range: Range<Int64>
        /// How the segment is cut into chunks.
        public var method: Method
        /// For floating-point data: bytes per element (2 for bf16/fp16, 4 for fp32), stored as
        /// byte planes; 0 for anything else.
        public var elementSize: Int
        /// For fixed slices: per slice, the chunk of a parent version to store it as a delta
        /// against (the same slice of the same tensor), if any.
        public var references: [SHA256Digest]?

        /// A segment of `range` cut by `method`, with the codec hints of its data.
        public init(range: Range<Int64>, method: Method, elementSize: Int = 0, references: [SHA256Digest]? = nil) {
            self.range = range
            self.method = method
            self.elementSize = elementSize
            self.references = references
        }
    }

    /// The segments, in file order; a plan whose segments do not cover the file exactly is
    /// ignored (the file is then cut by content).
    public var segments: [Segment]

    /// A plan of `segments` (empty ones are left out).
    public init(segments: [Segment]) {
        self.segments = segments.filter { !$0.range.isEmpty }
    }

    /// Whether the segments cover `0..<size` in order without gaps, and slices fit in a chunk.
    func isValid(size: Int64, maxChunk: Int) -> Bool {
        var at: Int64 = 0
        for s in segments {
            guard s.range.lowerBound == at else { return false }
            if case .fixed(let n) = s.method, n <= 0 || n > maxChunk { return false }
            if s.elementSize != 0 && s.elementSize != 2 && s.elementSize != 4 { return false }
            if s.references != nil, case .contentDefined = s.method { return false }
            at = s.range.upperBound
        }
        return at == size
    }
}

/// Returns a plan for a file, or nil to use content-defined chunking for all of it. `read` returns
/// the bytes of a range of the file (for reading a header).
///
/// - Throws: anything: a planner that throws gives no plan (the file is cut by content), and
///   `read` throws ``CairnStoreError`` with `.invalidArgument` for a range outside the file or
///   over 128 MiB, `.io` when the file cannot be read.
public typealias ChunkingPlanner =
    @Sendable (_ file: SourceFile, _ read: (Range<Int64>) throws -> [UInt8]) throws -> ChunkingPlan?

extension ChunkingPlan {
    /// The plan of a file: the planner's if it gives a valid one, else one content-defined segment.
    static func make(for file: SourceFile, planner: ChunkingPlanner?, maxChunk: Int) -> ChunkingPlan {
        let whole = ChunkingPlan(segments: [.init(range: 0..<file.size, method: .contentDefined)])
        guard let planner, file.size > 0 else { return whole }
        let fd = Glibc.open(file.absolutePath, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard fd >= 0 else { return whole }
        defer { close(fd) }
        let read = { (range: Range<Int64>) throws -> [UInt8] in
            guard range.lowerBound >= 0, range.upperBound <= file.size, range.count <= 128 << 20 else {
                throw CairnStoreError(.invalidArgument, "read outside the file")
            }
            var bytes = [UInt8](repeating: 0, count: Int(range.count))
            let n = try bytes.withUnsafeMutableBytes {
                try FileIO.pread(fd, $0, at: range.lowerBound, path: file.absolutePath)
            }
            return Array(bytes[0..<n])
        }
        guard let plan = try? planner(file, read), plan.isValid(size: file.size, maxChunk: maxChunk) else {
            return whole
        }
        return plan
    }
}

extension Store {
    /// The plan for each file (see ``ChunkingPlan/make(for:planner:maxChunk:)``).
    func plans(for files: [SourceFile], planner: ChunkingPlanner?) -> [ChunkingPlan] {
        files.map { ChunkingPlan.make(for: $0, planner: planner, maxChunk: config.chunker.max) }
    }
}
