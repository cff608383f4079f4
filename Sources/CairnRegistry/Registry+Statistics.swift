import CairnStore

extension Registry {
    /// Store-wide figures: `logicalBytes` over all versions, `uniqueBytes` after dedup,
    /// `storedBytes` of pack files on disk.
    ///
    /// - Throws: ``RegistryError`` with `.corruption` for a damaged version record, `.io`.
    public func statistics() throws -> RegistryStatistics {
        let storeStats = try storeCall { try store.statistics() }
        return try storeCall {
            try store.readMetadata { txn in
                var logical: Int64 = 0
                var count = 0
                for entry in try txn.scan(versions) {
                    let record = try RecordCoding.decode(VersionRecord.self, entry.value, what: "a version")
                    logical += record.logicalBytes
                    count += 1
                }
                return RegistryStatistics(
                    models: try txn.count(models),
                    versions: count,
                    logicalBytes: logical,
                    uniqueBytes: storeStats.uniqueBytes,
                    compressedBytes: storeStats.compressedBytes,
                    storedBytes: storeStats.storedBytes,
                    chunks: storeStats.chunkCount,
                    packs: storeStats.packCount,
                    manifests: storeStats.manifestCount,
                    indexBytes: storeStats.indexBytes,
                    codecs: storeStats.codecs
                )
            }
        }
    }

    /// For each file of `manifest`, the bytes its distinct chunks take on disk after compression
    /// (chunks shared with other files or versions are counted in full for each file).
    ///
    /// - Throws: ``RegistryError`` with `.io` when the index cannot be read.
    public func storedBytesByFile(_ manifest: Manifest) throws -> [String: Int64] {
        let lengths = try storeCall { try store.storedLengths(manifest.files.flatMap { $0.chunks.map(\.id) }) }
        var out: [String: Int64] = [:]
        for file in manifest.files {
            out[file.path] = Set(file.chunks.map(\.id)).reduce(0) { $0 + (lengths[$1] ?? 0) }
        }
        return out
    }
}

/// Store-wide figures (`cairn stats`).
public struct RegistryStatistics: Codable, Sendable, Equatable {
    /// How many models there are.
    public var models: Int
    /// How many live versions there are.
    public var versions: Int
    /// Sum of the sizes of every version's files.
    public var logicalBytes: Int64
    /// Raw bytes of distinct chunks.
    public var uniqueBytes: Int64
    /// Bytes of distinct chunks after compression.
    public var compressedBytes: Int64
    /// Bytes of pack files on disk.
    public var storedBytes: Int64
    /// How many distinct chunks are stored.
    public var chunks: Int
    /// How many pack files hold them.
    public var packs: Int
    /// How many distinct manifests are stored.
    public var manifests: Int
    /// Bytes of the index (LMDB) file in use.
    public var indexBytes: Int64
    /// Distinct chunks per codec: how many, raw and stored bytes (what each codec saved).
    public var codecs: [Codec.Usage]? = nil

    enum CodingKeys: String, CodingKey {
        case models, versions, chunks, packs, manifests
        case logicalBytes = "logical_bytes"
        case uniqueBytes = "unique_bytes"
        case compressedBytes = "compressed_bytes"
        case storedBytes = "stored_bytes"
        case codecs
        case indexBytes = "index_bytes"
    }
}
