import CairnStore
import Foundation

/// The registry's operations as the command line uses them, against a local store (``Registry``)
/// or a server (`RemoteRegistry` in CairnRemote): every command calls the same methods whichever
/// it is given.
///
/// ```swift
/// let service: any RegistryService = remote != nil
///     ? try RemoteRegistry(url: remote!, token: token, cacheDirectory: cache)
///     : try Registry(store: try Store.open(at: path))
/// let production = try service.resolve(try Reference(parsing: "llama@production"))
/// ```
///
/// `actor` arguments name the acting user for a local store; a server ignores them and records
/// the user its bearer token identifies.
///
/// Every method throws a ``CodedError``: what the ``Registry`` method of the same name throws
/// (``RegistryError``, whose codes each method's documentation there lists); a server's registry
/// throws the same codes from the server's answer, plus `.unauthenticated`, `.forbidden`,
/// `.unreachable` and `.badResponse`.
public protocol RegistryService: Sendable {
    /// Stores a directory as the next version of `request.model`
    /// (``Registry/push(directory:request:progress:)``), with the bytes sent for a remote push.
    func pushReport(
        directory: String,
        request: PushRequest,
        progress: ((TransferProgress) -> Void)?
    ) throws -> PushReport
    /// The version a reference names now (``Registry/resolve(_:)``).
    func resolve(_ reference: Reference) throws -> VersionRecord
    /// What a reference named at `date` (``Registry/resolve(_:at:)``).
    func resolve(_ reference: Reference, at date: Date) throws -> PastResolution
    /// The version a reference names, with its aliases (``Registry/info(_:)``).
    func info(_ reference: Reference) throws -> VersionInfo
    /// The files of a version (``Registry/manifest(of:)``).
    func manifest(of version: VersionRecord) throws -> Manifest
    /// Writes files of `version` under `directory` (all, those matching `selection`, or `paths`)
    /// (``Registry/pull(_:to:paths:selection:progress:)``).
    func pull(
        _ version: VersionRecord,
        to directory: String,
        paths: [String]?,
        selection: FileSelection?,
        progress: ((TransferProgress) -> Void)?
    ) throws -> [FileEntry]
    /// Streams a file (or an inclusive byte range of it) to `sink` (``Registry/read(_:path:range:sink:)``).
    func read(
        _ version: VersionRecord,
        path: String,
        range: ClosedRange<Int64>?,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws
    /// Every model, sorted by name (``Registry/listModels()``).
    func listModels() throws -> [ModelSummary]
    /// Versions matching `query` (``Registry/findVersions(_:)``).
    func findVersions(_ query: VersionQuery) throws -> [VersionInfo]
    /// Ancestors and descendants of a version (``Registry/lineage(_:)``).
    func lineage(_ reference: Reference) throws -> Lineage
    /// The stage and alias changes of one model (``Registry/history(of:)``).
    func history(of model: String) throws -> [AuditEntry]
    /// Audit entries in order, optionally of one model and from a time on (``Registry/auditLog(model:since:)``).
    func auditLog(model: String?, since: Date?) throws -> [AuditEntry]
    /// Walks the audit chain (``Registry/verifyAudit()``).
    func verifyAudit() throws -> AuditVerification
    /// Moves a version to `target` through the model's gate
    /// (``Registry/promote(_:to:actor:reason:evidence:)``).
    func promote(
        _ reference: Reference,
        to target: Stage,
        actor: String,
        reason: String?,
        evidence: [String: String]
    ) throws
        -> ChangeResult
    /// Records an approval of a version for `stage` (``Registry/approve(_:for:actor:reason:)``).
    func approve(_ reference: Reference, for stage: Stage, actor: String, reason: String?) throws -> ChangeResult
    /// Makes a former production version production again (``Registry/rollback(model:to:actor:reason:)``).
    func rollback(model: String, to target: Int?, actor: String, reason: String) throws -> ChangeResult
    /// Archives a version (``Registry/archive(_:actor:reason:evidence:)``).
    func archive(
        _ reference: Reference,
        actor: String,
        reason: String?,
        evidence: [String: String]
    ) throws -> ChangeResult
    /// Deletes a version (``Registry/delete(_:actor:reason:)``).
    func delete(_ reference: Reference, actor: String, reason: String?) throws -> ChangeResult
    /// Points an alias at a version (``Registry/setAlias(model:alias:version:actor:reason:)``).
    func setAlias(model: String, alias: String, version: Int, actor: String, reason: String?) throws -> ChangeResult
    /// Removes an alias (``Registry/removeAlias(model:alias:actor:reason:)``).
    func removeAlias(model: String, alias: String, actor: String, reason: String?) throws -> ChangeResult
    /// The aliases of a model (``Registry/aliases(of:)``).
    func aliases(of model: String) throws -> [AliasRecord]
    /// Sets tags on a version (``Registry/tag(_:_:actor:)``).
    func tag(_ reference: Reference, _ tags: [String: String], actor: String) throws -> ChangeResult
    /// Removes tags from a version (``Registry/untag(_:_:actor:)``).
    func untag(_ reference: Reference, _ keys: [String], actor: String) throws -> ChangeResult
    /// The promotion policy of a model (``Registry/policy(of:)``).
    func policy(of model: String) throws -> Policy
    /// Replaces the policy of a model (``Registry/setPolicy(model:_:actor:reason:)``).
    func setPolicy(model: String, _ policy: Policy, actor: String, reason: String?) throws -> ChangeResult
    /// Store-wide figures (``Registry/statistics()``).
    func statistics() throws -> RegistryStatistics
    /// Per file of `manifest`: bytes its distinct chunks take on disk (empty when not known remotely).
    func storedBytesByFile(_ manifest: Manifest) throws -> [String: Int64]
    /// Reclaims the bytes no live version uses (``Registry/collectGarbage(gracePeriod:)``).
    func collectGarbage(gracePeriod: Double) throws -> GarbageCollectionReport
    /// Verifies the store and summarizes what is damaged (``Registry/verify(deep:progress:)``).
    func verifySummary(deep: Bool, progress: ((TransferProgress) -> Void)?) throws -> VerifySummary
    /// Creates a bearer token (``Registry/createToken(user:role:actor:)``).
    func createToken(user: String, role: Role, actor: String) throws -> NewToken
    /// Every token ever created (``Registry/listTokens()``).
    func listTokens() throws -> [TokenRecord]
    /// Revokes a token by its id or a unique prefix of it (``Registry/revokeToken(id:actor:)``).
    func revokeToken(id: String, actor: String) throws -> TokenRecord
}

extension Registry: RegistryService {
    /// ``push(directory:request:progress:)`` as a report (no bytes transferred).
    ///
    /// - Throws: ``RegistryError`` as ``push(directory:request:progress:)``.
    public func pushReport(
        directory: String,
        request: PushRequest,
        progress: ((TransferProgress) -> Void)?
    ) throws
        -> PushReport
    {
        PushReport(result: try push(directory: directory, request: request, progress: progress), transferredBytes: nil)
    }

    /// ``verify(deep:progress:)`` as a summary.
    ///
    /// - Throws: ``RegistryError`` as ``verify(deep:progress:)``.
    public func verifySummary(deep: Bool, progress: ((TransferProgress) -> Void)?) throws -> VerifySummary {
        VerifySummary(try verify(deep: deep, progress: progress))
    }
}

extension RegistryService {
    /// Nothing known: a service that cannot tell answers an empty map.
    ///
    /// - Throws: Nothing (a service that knows may throw as ``Registry/storedBytesByFile(_:)``).
    public func storedBytesByFile(_ manifest: Manifest) throws -> [String: Int64] { [:] }

    /// ``pull(_:to:paths:selection:progress:)`` of every file, or those matching `selection`.
    ///
    /// - Throws: as ``pull(_:to:paths:selection:progress:)``.
    @discardableResult
    public func pull(
        _ version: VersionRecord,
        to directory: String,
        selection: FileSelection?,
        progress: ((TransferProgress) -> Void)?
    ) throws -> [FileEntry] {
        try pull(version, to: directory, paths: nil, selection: selection, progress: progress)
    }

    /// ``archive(_:actor:reason:evidence:)`` without evidence.
    ///
    /// - Throws: as ``archive(_:actor:reason:evidence:)``.
    @discardableResult
    public func archive(_ reference: Reference, actor: String, reason: String?) throws -> ChangeResult {
        try archive(reference, actor: actor, reason: reason, evidence: [:])
    }
}
