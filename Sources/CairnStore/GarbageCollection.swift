import Digest

/// What a garbage collection did.
public struct GarbageCollectionReport: Sendable, Codable, Equatable {
    /// Chunks dropped from the index (no live manifest uses them).
    public var removedChunks = 0
    /// Their raw bytes.
    public var removedChunkBytes: Int64 = 0
    /// Manifests dropped (no live version uses them).
    public var removedManifests = 0
    /// Packs whose live chunks were copied to new packs.
    public var rewrittenPacks = 0
    /// Pack files deleted from disk in this run (retired ones past the grace period, and orphans).
    public var deletedPackFiles = 0
    /// Pack files retired in this run and kept on disk until the grace period has passed.
    public var retiredPacks = 0
    /// Bytes of pack files referenced by the index before and after.
    public var storedBytesBefore: Int64 = 0
    public var storedBytesAfter: Int64 = 0

    enum CodingKeys: String, CodingKey {
        case removedChunks = "removed_chunks"
        case removedChunkBytes = "removed_chunk_bytes"
        case removedManifests = "removed_manifests"
        case rewrittenPacks = "rewritten_packs"
        case deletedPackFiles = "deleted_pack_files"
        case retiredPacks = "retired_packs"
        case storedBytesBefore = "stored_bytes_before"
        case storedBytesAfter = "stored_bytes_after"
    }
}
