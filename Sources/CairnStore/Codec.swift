/// How a chunk's bytes are stored in a pack. The id is recorded with every chunk, so new codecs
/// can be added without breaking old stores. Whatever the codec, a chunk's id is the SHA-256 of its
/// raw bytes, and every read re-hashes the decoded bytes.
public enum Codec: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// The raw bytes, unchanged (used when compression does not make them smaller).
    case raw = 0
    /// One zstd frame of the raw bytes.
    case zstd = 1
    /// Floating-point elements split into byte planes (exponent, sign+mantissa, …), each plane
    /// zstd-compressed or raw (see ``ByteGrouping``).
    case byteGrouped = 2
    /// A difference against a reference chunk (the same slice of the parent version's tensor):
    /// the reference's 32-byte id, then the byte planes (as in ``byteGrouped``, without the
    /// rotation) of the element-wise difference: each float mapped to an integer in the float's
    /// order, the chunk's minus the reference's (wrapping), zigzag-encoded, so that small changes
    /// give bytes that are mostly zero (``ByteGrouping/subtract(_:reference:elementSize:)``).
    /// The reference is never itself a delta (chains have depth 1).
    case delta = 3

    /// Chunks stored with one codec, and what they take before and after.
    public struct Usage: Sendable, Equatable, Codable {
        /// The codec's name (``Codec/description``, or `codec-N` for one this version does not know).
        public var codec: String
        /// Chunks stored with it.
        public var chunks: Int
        /// Their raw bytes.
        public var rawBytes: Int64
        /// Their stored bytes (without record headers).
        public var storedBytes: Int64

        enum CodingKeys: String, CodingKey {
            case codec, chunks
            case rawBytes = "raw_bytes"
            case storedBytes = "stored_bytes"
        }
    }

    /// Sums chunk sizes per codec, in codec order.
    static func usage(_ locations: some Sequence<ChunkLocation>) -> [Usage] {
        var table: [UInt8: Usage] = [:]
        for l in locations {
            let name = Codec(rawValue: l.codecRaw)?.description ?? "codec-\(l.codecRaw)"
            table[l.codecRaw, default: Usage(codec: name, chunks: 0, rawBytes: 0, storedBytes: 0)].chunks += 1
            table[l.codecRaw]!.rawBytes += Int64(l.rawLength)
            table[l.codecRaw]!.storedBytes += Int64(l.storedLength)
        }
        return table.sorted { $0.key < $1.key }.map(\.value)
    }

    /// The codec's name: `raw`, `zstd`, `byte-grouped` or `delta`.
    public var description: String {
        switch self {
        case .raw: "raw"
        case .zstd: "zstd"
        case .byteGrouped: "byte-grouped"
        case .delta: "delta"
        }
    }
}
