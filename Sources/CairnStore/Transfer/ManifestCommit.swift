import Digest
import LMDB

// Which chunks the index lacks, and committing a manifest whose chunks were all stored before.

/// Thrown by ``Store/commit(manifest:_:)`` when chunks the manifest references are not indexed
/// (never uploaded, or dropped by a garbage collection since): upload them and commit again.
public struct MissingChunksError: CodedError {
    /// The chunks that are not stored.
    public let ids: [SHA256Digest]

    /// The error for chunks `ids`.
    public init(ids: [SHA256Digest]) { self.ids = ids }

    /// Always ``ErrorCode/missingChunks``.
    public var code: ErrorCode { .missingChunks }

    /// How many chunks are not stored, and the first of them.
    public var message: String {
        "\(ids.count) chunk\(ids.count == 1 ? " is" : "s are") not stored (first: \(ids.first?.hex ?? "")); upload \(ids.count == 1 ? "it" : "them") first"
    }
}

extension Store {
    /// A number that changes whenever anything commits to the index (in any process): a cache of
    /// values read from the index stays valid while it is unchanged.
    package func indexGeneration() throws -> Int {
        try lmdb { try environment.lastTransactionID() }
    }

    /// The ids among `ids` that are not indexed, in the order given (each once).
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be read.
    public func missingChunks(_ ids: [SHA256Digest]) throws -> [SHA256Digest] {
        try lmdb { try environment.read { txn in try unindexed(ids, in: txn) } }
    }

    /// The one check that chunks are present: the ids among `ids` that `txn` does not index, in
    /// the order given, each once. Commits run it inside their write transaction, so that a
    /// garbage collection cannot drop a chunk between the check and the commit.
    func unindexed(_ ids: some Sequence<SHA256Digest>, in txn: Transaction) throws -> [SHA256Digest] {
        var seen = Set<SHA256Digest>()
        var missing: [SHA256Digest] = []
        for id in ids where seen.insert(id).inserted {
            if try !id.withUnsafeBytes({ try txn.contains(chunksDB, key: $0) }) { missing.append(id) }
        }
        return missing
    }

    /// Records a manifest whose chunks were stored earlier (by ``storeChunks(bundle:compressRaw:onVerified:)``): in ONE
    /// index write transaction, checks that every chunk it references is indexed, adds the manifest
    /// if it is new, then runs `body` so the layer above records what it means in the same
    /// transaction. `info.newBytes` and `info.storedBytes` are 0: the chunks were added before.
    ///
    /// - Throws: ``MissingChunksError`` listing chunks not indexed (nothing is written; upload them
    ///   and call again); ``CairnStoreError``; errors thrown by `body` (nothing is committed).
    public func commit<T>(manifest: Manifest, _ body: (MetadataTransaction, CommitInfo) throws -> T) throws -> T {
        let encoded = manifest.encoded()
        let id = SHA256Digest.hash(encoded)
        return try lmdb {
            try environment.write { txn in
                let missing = try unindexed(manifest.chunkIDs(), in: txn)
                if !missing.isEmpty { throw MissingChunksError(ids: missing) }  // aborts the transaction
                let key = id.bytes
                let isNew = try txn.get(manifestsDB, key: key) == nil
                if isNew { try txn.put(manifestsDB, key: key, value: encoded) }
                let info = CommitInfo(
                    manifestID: id,
                    manifestIsNew: isNew,
                    newBytes: 0,
                    storedBytes: 0,
                    newChunks: 0,
                    codecs: []
                )
                return try body(MetadataTransaction(store: self, txn: txn), info)
            }
        }
    }
}
