import CairnStore
import Foundation

/// The model registry: models, numbered versions and their metadata, over a ``Store``.
///
/// ```swift
/// let registry = try Registry(store: try Store.open(at: path))
/// let result = try registry.push(directory: "./out", request: PushRequest(model: "llama-support", actor: "alice"))
/// let version = try registry.resolve(try Reference(parsing: "llama-support@\(result.version)"))
/// try registry.pull(version, to: "/srv/models/llama")
/// ```
///
/// Every push registers a new version (1, 2, 3 … per model) in the same index transaction that makes
/// its chunks and manifest visible: a version is either wholly there or not at all. Every change
/// (promotion, alias, tag, policy, …) commits with its audit entry in one transaction.
///
/// Its operations, one file of `Registry+…` each: pushing (``push(directory:request:progress:)``),
/// reading files (``pull(_:to:paths:selection:progress:)``, ``read(_:path:range:sink:)``), resolving
/// references now or at a past time (``resolve(_:)``, ``resolve(_:at:)``), listing and searching
/// (``listModels()``, ``findVersions(_:)``, ``lineage(_:)``), stage changes (``promote(_:to:actor:reason:evidence:)``,
/// ``rollback(model:to:actor:reason:)``, …), aliases, tags and policies, the audit log
/// (``auditLog(model:since:)``, ``verifyAudit()``), tokens, and the store's upkeep (``statistics()``,
/// ``verify(deep:progress:)``, ``collectGarbage(gracePeriod:)``). Tensor listing, tensor pulls and
/// diffs come with ``VersionContentReader``.
///
/// A registry may be shared between threads. Its methods are synchronous and block on disk I/O and
/// on the index's single writer: from Swift concurrency, call them on a thread of their own (the
/// server runs them in a thread pool), not on the cooperative pool.
public final class Registry: Sendable {
    /// The store under the registry: chunks, packs, manifests and the index that also holds the
    /// registry's tables.
    public let store: Store
    /// model → ``ModelRecord``.
    let models: MetadataTable
    /// model \0 version (u32 big-endian) → ``VersionRecord``.
    let versions: MetadataTable
    /// model \0 alias → ``AliasRecord``.
    let aliases: MetadataTable
    /// model → ``Policy``.
    let policies: MetadataTable
    /// sequence (u64 big-endian) → ``AuditEntry``.
    let audit: MetadataTable
    /// model \0 sequence → empty: the audit entries of one model.
    let auditByModel: MetadataTable
    /// "head" → ``AuditHead``.
    let auditHead: MetadataTable
    /// The clock that times changes (tests pass their own).
    let clock: @Sendable () -> Date

    /// The registry of `store`, creating its tables on first use. `clock` times changes (the audit
    /// log never goes back in time, whatever it says).
    ///
    /// - Throws: ``RegistryError`` with the store's code (`.io`, `.corruption`) when its index cannot
    ///   open the registry's tables.
    public init(store: Store, clock: @escaping @Sendable () -> Date = { Date() }) throws {
        self.store = store
        self.clock = clock
        (models, versions, aliases, policies, audit, auditByModel, auditHead) = try storeCall {
            (
                try store.table("models"), try store.table("versions"), try store.table("aliases"),
                try store.table("policies"), try store.table("audit"), try store.table("audit-by-model"),
                try store.table("audit-head")
            )
        }
    }

    // MARK: Keys

    static func modelKey(_ name: String) -> [UInt8] { Array(name.utf8) }

    /// `model \0`: the prefix of every key of one model in the versions, aliases and audit-by-model
    /// tables.
    static func modelKeyPrefix(_ model: String) -> [UInt8] { Array(model.utf8) + [0] }

    static func versionKey(_ model: String, _ number: Int) -> [UInt8] {
        modelKeyPrefix(model) + withUnsafeBytes(of: UInt32(number).bigEndian) { Array($0) }
    }

    static func aliasKey(_ model: String, _ alias: String) -> [UInt8] { modelKeyPrefix(model) + Array(alias.utf8) }

    // MARK: Records in a transaction

    func model(_ name: String, in txn: MetadataTransaction) throws -> ModelRecord {
        guard let bytes = try txn.get(models, Self.modelKey(name)) else {
            throw RegistryError(.notFound, "no model named \(name)")
        }
        return try RecordCoding.decode(ModelRecord.self, bytes, what: "model \(name)")
    }

    func put(_ model: ModelRecord, in txn: MetadataTransaction) throws {
        try txn.put(models, Self.modelKey(model.name), try RecordCoding.encode(model))
    }

    func version(_ model: String, _ number: Int, in txn: MetadataTransaction) throws -> VersionRecord? {
        try txn.get(versions, Self.versionKey(model, number)).map {
            try RecordCoding.decode(VersionRecord.self, $0, what: Reference.text(model: model, version: number))
        }
    }

    func put(_ version: VersionRecord, in txn: MetadataTransaction) throws {
        try txn.put(versions, Self.versionKey(version.model, version.version), try RecordCoding.encode(version))
    }

    /// The versions of `model`, oldest first.
    func versions(of model: String, in txn: MetadataTransaction) throws -> [VersionRecord] {
        try txn.scan(versions, prefix: Self.modelKeyPrefix(model)).map {
            try RecordCoding.decode(VersionRecord.self, $0.value, what: "a version of \(model)")
        }
    }

    /// The aliases of `model`, by name.
    func aliases(of model: String, in txn: MetadataTransaction) throws -> [AliasRecord] {
        try txn.scan(aliases, prefix: Self.modelKeyPrefix(model)).map {
            try RecordCoding.decode(AliasRecord.self, $0.value, what: "an alias of \(model)")
        }
    }

    func policy(of model: String, in txn: MetadataTransaction) throws -> Policy {
        try txn.get(policies, Self.modelKey(model)).map {
            try RecordCoding.decode(Policy.self, $0, what: "the policy of \(model)")
        }
            ?? Policy()
    }

    // MARK: Changes

    /// Runs `body` in one index write transaction: its checks, its writes and its audit entries
    /// commit together, and nothing is written if it throws.
    func write<T>(_ body: (MetadataTransaction) throws -> T) throws -> T {
        try storeCall { try store.writeMetadata(body) }
    }

    /// A reason as recorded: trimmed, nil when empty.
    static func normalizedReason(_ reason: String?) -> String? {
        guard let r = reason?.trimmingCharacters(in: .whitespacesAndNewlines), !r.isEmpty else { return nil }
        return r
    }
}
