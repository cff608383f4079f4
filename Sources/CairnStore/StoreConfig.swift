import Foundation

/// A store's fixed parameters, written once by `init` to `config.json` and read on every open.
///
/// Chunking parameters cannot change after `init`: different boundaries would break dedup
/// against everything already stored.
public struct StoreConfig: Codable, Sendable, Equatable {
    /// Always "cairn-store".
    public var format: String = "cairn-store"
    /// On-disk format version; this code reads and writes version 1.
    public var version: Int = 1
    /// How files are cut into chunks.
    public var chunker: ChunkerParameters
    /// How chunks are compressed.
    public var compression: Compression
    /// Target size of a pack file in bytes; a pack is sealed when the next record would pass it.
    public var packSize: Int

    /// The compressor of a store: its name and level.
    public struct Compression: Codable, Sendable, Equatable {
        /// "zstd".
        public var codec: String
        /// The zstd level, 1…19 (3 by default).
        public var level: Int
    }

    enum CodingKeys: String, CodingKey {
        case format, version, chunker, compression
        case packSize = "pack_size"
    }

    /// A configuration for ``Store/create(at:config:)`` (validated there).
    ///
    /// ```swift
    /// let config = StoreConfig(chunker: .default, compressionLevel: 3, packSize: 64 << 20)
    /// ```
    public init(
        chunker: ChunkerParameters = .default,
        compressionLevel: Int = 3,
        packSize: Int = 64 << 20
    ) {
        self.chunker = chunker
        self.compression = Compression(codec: "zstd", level: compressionLevel)
        self.packSize = packSize
    }

    /// Checks the values are usable.
    ///
    /// - Throws: ``CairnStoreError`` with `.corruption` for a file that is not a store config,
    ///   `.invalidArgument` for an unsupported version or values out of range.
    public func validate() throws {
        guard format == "cairn-store" else {
            throw CairnStoreError(.corruption, "config.json: format is \"\(format)\", expected \"cairn-store\"")
        }
        guard version == 1 else {
            throw CairnStoreError(
                .invalidArgument,
                "config.json: store format version \(version) is not supported (this cairn reads version 1)"
            )
        }
        try chunker.validate()
        guard compression.codec == "zstd", (1...19).contains(compression.level) else {
            throw CairnStoreError(.invalidArgument, "config.json: compression must be zstd with a level in 1…19")
        }
        guard packSize >= 1 << 20, packSize <= 1 << 30 else {
            throw CairnStoreError(.invalidArgument, "config.json: pack_size must be between 1 MiB and 1 GiB")
        }
    }
}

/// FastCDC parameters: minimum, average (a power of two) and maximum chunk size in bytes.
public struct ChunkerParameters: Codable, Sendable, Equatable {
    /// The chunking algorithm and gear table, so a reader knows how boundaries were found.
    public var algorithm: String = ChunkerParameters.algorithmName
    /// Smallest chunk in bytes (but the last of a segment).
    public var min: Int
    /// Size chunks are normalized around, a power of two.
    public var avg: Int
    /// Largest chunk in bytes.
    public var max: Int
    /// Size of the fixed slices structured files (safetensors tensors) are cut into: a multiple of
    /// 8 bytes (so slices are element-aligned for every dtype), at most `max`.
    public var slice: Int

    /// The one algorithm this version implements: FastCDC over a 64-bit gear hash, normalized
    /// chunking level 2 (see ``Chunker``).
    public static let algorithmName = "fastcdc-gear64-nc2"

    /// 16 KiB / 64 KiB / 256 KiB, slices of 128 KiB.
    public static let `default` = ChunkerParameters(min: 16 << 10, avg: 64 << 10, max: 256 << 10, slice: 128 << 10)

    /// Parameters of these sizes (validated by ``validate()``); slices default to twice the
    /// average, at most the maximum.
    public init(min: Int, avg: Int, max: Int, slice: Int? = nil) {
        self.min = min
        self.avg = avg
        self.max = max
        self.slice = slice ?? Swift.min(2 * avg, max)
    }

    enum CodingKeys: String, CodingKey { case algorithm, min, avg, max, slice }

    /// Decodes parameters from a store's `config.json` (a config without `slice` gets the default).
    ///
    /// - Throws: `DecodingError` when a field is missing or of the wrong type.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        algorithm = try c.decode(String.self, forKey: .algorithm)
        min = try c.decode(Int.self, forKey: .min)
        avg = try c.decode(Int.self, forKey: .avg)
        max = try c.decode(Int.self, forKey: .max)
        // Stores written before slices existed get the default rule.
        slice = try c.decodeIfPresent(Int.self, forKey: .slice) ?? Swift.min(2 * avg, max)
    }

    /// Checks the values are usable.
    ///
    /// - Throws: ``CairnStoreError`` with `.invalidArgument` for an unknown algorithm or sizes out
    ///   of range.
    public func validate() throws {
        guard algorithm == Self.algorithmName else {
            throw CairnStoreError(.invalidArgument, "unknown chunking algorithm \"\(algorithm)\"")
        }
        guard slice >= 64, slice % 8 == 0, slice <= max else {
            throw CairnStoreError(
                .invalidArgument,
                "slice size must be a multiple of 8 between 64 bytes and the maximum chunk size (got \(slice))"
            )
        }
        guard min >= 64, min < avg, avg < max, avg.nonzeroBitCount == 1, max <= 16 << 20 else {
            throw CairnStoreError(
                .invalidArgument,
                "chunk sizes must satisfy 64 <= min < avg < max <= 16 MiB with avg a power of two (got \(min)/\(avg)/\(max))"
            )
        }
    }
}
