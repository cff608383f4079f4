import CairnRegistry
import CairnStore
import Foundation

/// The registry's operations as the command line uses them, against a local store (``Registry``)
/// or a server (``RemoteRegistry``): every command calls the same methods whichever it is given.
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
public protocol RegistryService: Sendable {
    /// Stores a directory as the next version of `request.model`.
    func pushReport(
        directory: String,
        request: PushRequest,
        progress: ((TransferProgress) -> Void)?
    ) throws -> PushReport
    func resolve(_ reference: Reference) throws -> VersionRecord
    func resolve(_ reference: Reference, at date: Date) throws -> PastResolution
    func info(_ reference: Reference) throws -> VersionInfo
    func manifest(of version: VersionRecord) throws -> Manifest
    /// Writes files of `version` under `directory` (all, those matching `selection`, or `paths`).
    func pull(
        _ version: VersionRecord,
        to directory: String,
        paths: [String]?,
        selection: FileSelection?,
        progress: ((TransferProgress) -> Void)?
    ) throws -> [FileEntry]
    /// Streams a file (or an inclusive byte range of it) to `sink`.
    func read(
        _ version: VersionRecord,
        path: String,
        range: ClosedRange<Int64>?,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws
    func listModels() throws -> [ModelSummary]
    func findVersions(_ query: VersionQuery) throws -> [VersionInfo]
    func lineage(_ reference: Reference) throws -> Lineage
    func history(of model: String) throws -> [AuditEntry]
    func auditLog(model: String?, since: Date?) throws -> [AuditEntry]
    func verifyAudit() throws -> AuditVerification
    func promote(
        _ reference: Reference,
        to target: Stage,
        actor: String,
        reason: String?,
        evidence: [String: String]
    ) throws
        -> ChangeResult
    func approve(_ reference: Reference, for stage: Stage, actor: String, reason: String?) throws -> ChangeResult
    func rollback(model: String, to target: Int?, actor: String, reason: String) throws -> ChangeResult
    func archive(
        _ reference: Reference,
        actor: String,
        reason: String?,
        evidence: [String: String]
    ) throws -> ChangeResult
    func delete(_ reference: Reference, actor: String, reason: String?) throws -> ChangeResult
    func setAlias(model: String, alias: String, version: Int, actor: String, reason: String?) throws -> ChangeResult
    func removeAlias(model: String, alias: String, actor: String, reason: String?) throws -> ChangeResult
    func aliases(of model: String) throws -> [AliasRecord]
    func tag(_ reference: Reference, _ tags: [String: String], actor: String) throws -> ChangeResult
    func untag(_ reference: Reference, _ keys: [String], actor: String) throws -> ChangeResult
    func policy(of model: String) throws -> Policy
    func setPolicy(model: String, _ policy: Policy, actor: String, reason: String?) throws -> ChangeResult
    func statistics() throws -> RegistryStatistics
    /// Per file of `manifest`: bytes its distinct chunks take on disk (empty when not known remotely).
    func storedBytesByFile(_ manifest: Manifest) throws -> [String: Int64]
    func collectGarbage(gracePeriod: Double) throws -> GarbageCollectionReport
    func verifySummary(deep: Bool, progress: ((TransferProgress) -> Void)?) throws -> VerifySummary
    func createToken(user: String, role: Role, actor: String) throws -> NewToken
    func listTokens() throws -> [TokenRecord]
    func revokeToken(id: String, actor: String) throws -> TokenRecord
}

extension Registry: RegistryService {
    public func pushReport(
        directory: String,
        request: PushRequest,
        progress: ((TransferProgress) -> Void)?
    ) throws
        -> PushReport
    {
        PushReport(result: try push(directory: directory, request: request, progress: progress), transferredBytes: nil)
    }

    public func verifySummary(deep: Bool, progress: ((TransferProgress) -> Void)?) throws -> VerifySummary {
        VerifySummary(try verify(deep: deep, progress: progress))
    }
}

extension RegistryService {
    public func storedBytesByFile(_ manifest: Manifest) throws -> [String: Int64] { [:] }

    /// ``pull(_:to:paths:selection:progress:)`` of every file, or those matching `selection`.
    @discardableResult
    public func pull(
        _ version: VersionRecord,
        to directory: String,
        selection: FileSelection?,
        progress: ((TransferProgress) -> Void)?
    ) throws -> [FileEntry] {
        try pull(version, to: directory, paths: nil, selection: selection, progress: progress)
    }

    @discardableResult
    public func archive(_ reference: Reference, actor: String, reason: String?) throws -> ChangeResult {
        try archive(reference, actor: actor, reason: reason, evidence: [:])
    }
}
