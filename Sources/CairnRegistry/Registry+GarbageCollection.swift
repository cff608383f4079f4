import CairnStore
import Digest

extension Registry {
    /// Reclaims the bytes no live version uses: in one index transaction the manifests of every
    /// version record (deleted versions have none) are kept and everything else is dropped; packs
    /// with a low live share are rewritten, and retired pack files are deleted once older than
    /// `gracePeriod` seconds (readers that started before may still use them).
    ///
    /// A collection deletes what the index says is unreferenced, so it first checks that the index
    /// can be trusted: it refuses to run on a store that ``verify(deep:progress:)`` finds damaged
    /// (a damaged chunk id in a manifest would otherwise turn a detectable fault into a chunk
    /// dropped for good).
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a negative or infinite grace period,
    ///   `.corruption` (nothing removed) if verify finds any problem, a version record is unreadable
    ///   or names a malformed or missing manifest, `.io`.
    public func collectGarbage(gracePeriod: Double = 3600) throws -> GarbageCollectionReport {
        guard gracePeriod >= 0, gracePeriod.isFinite else {
            throw RegistryError(.invalidArgument, "the grace period must be a non-negative number of seconds")
        }
        let verified = try verify(deep: false).store
        if let first = verified.problems.first {
            throw RegistryError(
                .corruption,
                "gc refused: verify finds \(verified.problems.count) problem\(verified.problems.count == 1 ? "" : "s") in the store (first: \(first.message)); nothing was removed"
            )
        }
        return try storeCall {
            try store.collectGarbage(gracePeriod: gracePeriod) { txn in
                var live = Set<SHA256Digest>()
                for item in try txn.scan(versions) {
                    let record = try RecordCoding.decode(VersionRecord.self, item.value, what: "a version")
                    guard let id = SHA256Digest(hex: record.manifest) else {
                        throw RegistryError(
                            .corruption,
                            "\(record.reference) has a malformed manifest id; gc removed nothing"
                        )
                    }
                    live.insert(id)
                }
                return live
            }
        }
    }
}
