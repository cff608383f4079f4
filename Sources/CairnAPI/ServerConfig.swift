import CairnStore

/// `GET /v1/config`: what a client needs to chunk like the server and size its batches.
public struct ServerConfig: Codable, Sendable, Equatable {
    /// The store's chunking parameters (FastCDC sizes and tensor slice size).
    public var chunker: ChunkerParameters
    /// The zstd level the store compresses chunks at.
    public var compressionLevel: Int
    /// Largest request body of `POST /v1/chunks` and largest bundle `POST /v1/chunks/fetch` returns.
    public var maxBatchBytes: Int
    /// Largest number of ids in one `POST /v1/chunks/missing` or `POST /v1/chunks/fetch`.
    public var maxBatchIDs: Int
    /// The server's version of Cairn.
    public var version: String
    /// Whether `POST /v1/chunks?upload=ID&assign_ids=1` takes chunks without ids (all zeros) and
    /// answers with the ids it computed (nil from older servers, which do not).
    public var assignsChunkIDs: Bool?
    /// Whether `POST /v1/chunks/fetch?deltas=1` sends chunks stored as deltas as stored, for a
    /// client that holds their references (nil from older servers, which decode them always).
    public var sendsDeltas: Bool?

    /// A configuration as a server reports it.
    public init(
        chunker: ChunkerParameters,
        compressionLevel: Int,
        maxBatchBytes: Int,
        maxBatchIDs: Int,
        version: String,
        assignsChunkIDs: Bool? = true,
        sendsDeltas: Bool? = true
    ) {
        self.chunker = chunker
        self.compressionLevel = compressionLevel
        self.maxBatchBytes = maxBatchBytes
        self.maxBatchIDs = maxBatchIDs
        self.version = version
        self.assignsChunkIDs = assignsChunkIDs
        self.sendsDeltas = sendsDeltas
    }

    enum CodingKeys: String, CodingKey {
        case chunker, version
        case compressionLevel = "compression_level"
        case maxBatchBytes = "max_batch_bytes"
        case maxBatchIDs = "max_batch_ids"
        case assignsChunkIDs = "assigns_chunk_ids"
        case sendsDeltas = "sends_deltas"
    }
}
