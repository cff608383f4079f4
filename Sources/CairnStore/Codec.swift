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
    /// XOR against a reference chunk (the same slice of the parent version's tensor), then byte
    /// planes as in ``byteGrouped``. The reference is never itself a delta (chains have depth 1).
    case delta = 3

    /// Chunks stored with one codec, and what they take before and after.
    public struct Usage: Sendable, Equatable, Codable {
        public var codec: String
        public var chunks: Int
        public var rawBytes: Int64
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

    public var description: String {
        switch self {
        case .raw: "raw"
        case .zstd: "zstd"
        case .byteGrouped: "byte-grouped"
        case .delta: "delta"
        }
    }
}
