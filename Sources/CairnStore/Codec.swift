/// How a chunk's bytes are stored in a pack. The id is recorded with every chunk, so new codecs
/// (byte-grouped floats, deltas against a parent) can be added without breaking old stores.
public enum Codec: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// The raw bytes, unchanged (used when compression does not make them smaller).
    case raw = 0
    /// One zstd frame of the raw bytes.
    case zstd = 1

    public var description: String {
        switch self {
        case .raw: "raw"
        case .zstd: "zstd"
        }
    }
}
