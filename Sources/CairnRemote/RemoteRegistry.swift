import AsyncHTTPClient
import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Foundation
import NIOHTTP1
import Synchronization

/// The registry on a `cairn serve` server, with the same operations as a local ``Registry``
/// (``RegistryService``, ``VersionContentReader``).
///
/// ```swift
/// let remote = try RemoteRegistry(url: "http://127.0.0.1:8080", token: token)
/// let report = try remote.pushReport(directory: "./out", request: PushRequest(model: "llama", actor: ""), progress: nil)
/// print(report.transferredBytes ?? 0)          // only the chunks the server lacked were sent
/// let version = try remote.resolve(try Reference(parsing: "llama@production"))
/// try remote.pull(version, to: "/srv/llama", paths: nil, selection: nil, progress: nil)
/// ```
///
/// - A push chunks the tree locally exactly as the server would (same parameters, fetched from
///   `GET /v1/config`), asks which chunks the server lacks, sends only those, raw, in bundles (three
///   in flight while the scan goes on; the server compresses what it stores), then creates the
///   version from its manifest.
/// - A pull keeps a local chunk cache (a store under ``cacheDirectory``), fetches only the chunks the
///   cache lacks (and only those of the selected files), verifies each, then restores from the cache.
/// - `actor` arguments are ignored: the server records the user its bearer token identifies.
///
/// ### Blocking calls and Swift concurrency
///
/// Every call is synchronous and blocks its thread until the server has answered: it waits on
/// AsyncHTTPClient's futures (`EventLoopFuture.wait()`) and on the replies of chunk uploads and
/// fetches, which run on blocking sockets on dispatch queues of their own. The command line calls
/// it from the `run()` of its synchronous commands, which its async `main` runs on the main thread,
/// not on a thread of the cooperative pool: what the type is made for. Never call it on an event
/// loop of AsyncHTTPClient or SwiftNIO (NIO stops the process there rather than deadlock in
/// `wait()`). From a Swift concurrency task a call works, but holds one of the cooperative pool's
/// few threads for as long as the transfer takes (seconds to minutes for a push or a pull); when a
/// server runs in the same process (as in the tests), blocked pool threads can starve it of the
/// threads it needs to answer. From `async` code, run calls on a thread of their own (a `Thread`,
/// or a dispatch queue).
///
/// The type is `Sendable`: its configuration is immutable, the server's configuration is fetched
/// once under a lock, and calls from several threads at once are safe.
///
/// ### Errors
///
/// A call throws ``RemoteError`` when the server answers with an error (its ``ErrorCode``, e.g.
/// `.unauthenticated` without a valid token, `.forbidden` when the token's role does not allow the
/// call, `.notFound`, `.invalidArgument`, `.refused` for a change a gate refuses), with `.unreachable`
/// when the server cannot be reached or does not answer within 5 minutes, and with `.badResponse`
/// when its reply cannot be read. Checks made on this side (a malformed URL or model name, a file or
/// manifest that does not match its SHA-256) throw ``RegistryError``; a failure of the local chunk
/// cache or of the files being pushed or written throws ``CairnStoreError``. Each method's `Throws`
/// names the codes particular to it.
public final class RemoteRegistry: RegistryService {
    /// The server's URL, without trailing slashes (`http://127.0.0.1:8080`).
    public let baseURL: String
    let token: String?
    /// The directory of the local chunk cache (a store; see ``defaultCacheDirectory(for:)``).
    public let cacheDirectory: String
    let client: HTTPClient
    private let configCache = Mutex<ServerConfig?>(nil)
    private let assignAfter = Atomic<Int>(32 << 20)

    /// Bytes a push checks with the server (all but 2% of them missing there) before it stops
    /// hashing chunks and lets the server assign their ids (see ``pushReport(directory:request:progress:)``).
    package var assignAfterBytes: Int {
        get { assignAfter.load(ordering: .relaxed) }
        set { assignAfter.store(newValue, ordering: .relaxed) }
    }

    /// Raw bytes per upload or fetch batch.
    let batchRawBytes: Int

    /// Chunk uploads and fetches over blocking sockets (plain http); nil: through AsyncHTTPClient.
    let socketClient: SocketClient?

    /// A client of the server at `url`. Nothing is sent until the first call.
    ///
    /// - Parameters:
    ///   - url: the server, `http://HOST:PORT` or `https://HOST:PORT` (with an optional path prefix).
    ///   - token: a bearer token (`cairn token create`), or nil (or empty) for a server started with
    ///     `--public-read`, which then allows reads only.
    ///   - cacheDirectory: the chunk cache for pulls, created on first use (default
    ///     ``defaultCacheDirectory(for:)``).
    ///   - batchBytes: raw bytes per bundle of chunks uploaded or fetched at most (the server's
    ///     limits may make bundles smaller).
    /// - Throws: ``RegistryError`` with `.invalidArgument` when `url` is not an http or https URL
    ///   with a host.
    public convenience init(
        url: String,
        token: String?,
        cacheDirectory: String? = nil,
        batchBytes: Int = 16 << 20
    ) throws {
        try self.init(
            url: url,
            token: token,
            cacheDirectory: cacheDirectory,
            batchBytes: batchBytes,
            socketFetches: true
        )
    }

    /// With `socketFetches` false, chunk uploads and fetches go through AsyncHTTPClient even for
    /// http (as they do for https).
    init(url: String, token: String?, cacheDirectory: String?, batchBytes: Int, socketFetches: Bool) throws {
        var base = url
        while base.hasSuffix("/") { base.removeLast() }
        guard let parsed = URL(string: base), let scheme = parsed.scheme, scheme == "http" || scheme == "https",
            parsed.host != nil
        else {
            throw RegistryError(.invalidArgument, "invalid --remote URL \"\(url)\": expected http://HOST:PORT")
        }
        baseURL = base
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        self.cacheDirectory = cacheDirectory ?? Self.defaultCacheDirectory(for: base)
        client = Self.httpClient
        batchRawBytes = batchBytes
        socketClient = socketFetches ? SocketClient(baseURL: base, token: self.token) : nil
    }

    /// The HTTP client of every remote registry: like AsyncHTTPClient's shared one, except that a
    /// server that refuses connections fails a call at once (the shared client keeps retrying for
    /// 90 seconds), one that stops answering fails it after 5 minutes, and replies are not
    /// decompressed (the server does not compress them).
    static let httpClient: HTTPClient = {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.timeout = HTTPClient.Configuration.Timeout(connect: .seconds(10), read: .seconds(300))
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.decompression = .disabled
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// The default chunk cache of the server at `url`: `$XDG_CACHE_HOME/cairn/remote/HOST_PORT`,
    /// else `~/.cache/cairn/remote/HOST_PORT` (characters other than letters, digits, `.`, `_` and
    /// `-` replaced by `_`).
    public static func defaultCacheDirectory(for url: String) -> String {
        let env = ProcessInfo.processInfo.environment
        let base: String
        if let cache = env["XDG_CACHE_HOME"], !cache.isEmpty {
            base = cache
        } else {
            base = (env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()) + "/.cache"
        }
        let parsed = URL(string: url)
        let name = "\(parsed?.host ?? "server")_\(parsed?.port ?? (parsed?.scheme == "https" ? 443 : 80))"
        return base + "/cairn/remote/"
            + name.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "_" || $0 == "-" ? $0 : "_" }.map(String.init)
            .joined()
    }

    // MARK: Server configuration and identity

    /// The server's chunking parameters, batch limits and abilities (`GET /v1/config`, fetched once).
    func serverConfig() throws -> ServerConfig {
        if let config = configCache.withLock({ $0 }) { return config }
        let config = try json(.GET, "/v1/config", as: ServerConfig.self)
        configCache.withLock { $0 = config }
        return config
    }

    /// The user, role and id of the token (`GET /v1/whoami`).
    ///
    /// - Throws: ``RemoteError`` with `.unauthenticated` without a valid token (see Errors on
    ///   ``RemoteRegistry``).
    public func whoami() throws -> Identity {
        try json(.GET, "/v1/whoami", as: Identity.self)
    }

    // MARK: Lookup

    /// The version `reference` names (`GET /v1/models/{model}/versions/{ref}`).
    ///
    /// - Throws: ``RemoteError`` with `.notFound` when the model or the version does not exist (see
    ///   Errors on ``RemoteRegistry``).
    public func resolve(_ reference: Reference) throws -> VersionRecord {
        try info(reference).record
    }

    /// The version `reference` names with its aliases and approvals (what `cairn show` prints).
    ///
    /// - Throws: ``RemoteError`` with `.notFound` when the model or the version does not exist (see
    ///   Errors on ``RemoteRegistry``).
    public func info(_ reference: Reference) throws -> VersionInfo {
        let reply = try call(.GET, Self.versionPath(reference))
        return try decodeVersion(reply).info
    }

    /// The version `reference` named at `date` (`?at=TIME`): a stage's or alias's version then.
    ///
    /// - Throws: ``RemoteError`` with `.notFound` when it named none then, `.badResponse` when the
    ///   server answers without the point in time (see Errors on ``RemoteRegistry``).
    public func resolve(_ reference: Reference, at date: Date) throws -> PastResolution {
        let reply = try call(.GET, Self.versionPath(reference), query: [("at", RegistryTime.format(date))])
        guard let past = try decodeVersion(reply).past else {
            throw RemoteError(
                status: reply.status,
                code: .badResponse,
                message: "the server did not answer for a point in time"
            )
        }
        return past
    }

    private func decodeVersion(_ reply: Reply) throws -> (info: VersionInfo, past: PastResolution?) {
        do {
            return try VersionDocument.decode(reply.data)
        } catch {
            throw RemoteError(
                status: reply.status,
                code: .badResponse,
                message: "unexpected version document from \(baseURL): \(error)"
            )
        }
    }

    /// The manifest of `version` (`GET /v1/manifests/{id}`), checked against its id.
    ///
    /// - Throws: ``RegistryError`` with `.corruption` when the version's manifest id is malformed or
    ///   the bytes the server sent do not hash to it; ``CairnStoreError`` with `.corruption` when they
    ///   do not decode; ``RemoteError`` (see Errors on ``RemoteRegistry``).
    public func manifest(of version: VersionRecord) throws -> Manifest {
        guard let id = SHA256Digest(hex: version.manifest) else {
            throw RegistryError(.corruption, "\(version.reference) has a malformed manifest id")
        }
        let reply = try call(.GET, "/v1/manifests/" + id.hex)
        return try reply.body.readableBytesView.withUnsafeBytes { bytes in
            guard SHA256Digest.hash(bytes) == id else {
                throw RegistryError(
                    .corruption,
                    "the manifest of \(version.reference) from \(baseURL) does not match its id"
                )
            }
            return try Manifest.decode(bytes)
        }
    }

    /// Every model with its version count and production version (`cairn ls`).
    ///
    /// - Throws: ``RemoteError`` (see Errors on ``RemoteRegistry``).
    public func listModels() throws -> [ModelSummary] {
        try json(.GET, "/v1/models", as: [ModelSummary].self)
    }

    /// The versions matching `query` (stage, tags, metric conditions), of one model or of all.
    ///
    /// - Throws: ``RemoteError`` with `.notFound` for a model that does not exist (see Errors on
    ///   ``RemoteRegistry``).
    public func findVersions(_ query: VersionQuery) throws -> [VersionInfo] {
        var items: [(String, String)] = []
        if let stage = query.stage { items.append(("stage", stage.rawValue)) }
        for (k, v) in query.tags.sorted(by: { $0.key < $1.key }) { items.append(("tag", "\(k)=\(v)")) }
        for m in query.metrics { items.append(("metric", m.description)) }
        let path = query.model.map { Self.modelPath($0) + "/versions" } ?? "/v1/versions"
        let reply = try call(.GET, path, query: items)
        guard let array = try JSONSerialization.jsonObject(with: reply.data) as? [Any] else {
            throw RemoteError(status: reply.status, code: .badResponse, message: "expected a list of versions")
        }
        return try array.map { try VersionDocument.decode(try JSONSerialization.data(withJSONObject: $0)).info }
    }

    /// The ancestors and descendants of the version `reference` names.
    ///
    /// - Throws: ``RemoteError`` with `.notFound` when it names none (see Errors on ``RemoteRegistry``).
    public func lineage(_ reference: Reference) throws -> Lineage {
        try json(.GET, Self.versionPath(reference) + "/lineage", as: Lineage.self)
    }

    /// The stage and alias changes of `model`, oldest first.
    ///
    /// - Throws: ``RemoteError`` with `.notFound` for a model that does not exist (see Errors on
    ///   ``RemoteRegistry``).
    public func history(of model: String) throws -> [AuditEntry] {
        try json(.GET, Self.modelPath(model) + "/history", as: [AuditEntry].self)
    }

    /// The audit log, of one model or all, from `since` on.
    ///
    /// - Throws: ``RemoteError`` (see Errors on ``RemoteRegistry``).
    public func auditLog(model: String?, since: Date?) throws -> [AuditEntry] {
        var query: [(String, String)] = []
        if let model { query.append(("model", model)) }
        if let since { query.append(("since", RegistryTime.format(since))) }
        return try json(.GET, "/v1/audit", query: query, as: [AuditEntry].self)
    }

    /// The server's check of the audit log's hash chain (a broken chain is a result, not an error).
    ///
    /// - Throws: ``RemoteError`` (see Errors on ``RemoteRegistry``).
    public func verifyAudit() throws -> AuditVerification {
        try json(.GET, "/v1/audit/verify", as: AuditVerification.self)
    }

    /// The aliases of `model` and the versions they name.
    ///
    /// - Throws: ``RemoteError`` with `.notFound` for a model that does not exist (see Errors on
    ///   ``RemoteRegistry``).
    public func aliases(of model: String) throws -> [AliasRecord] {
        try json(.GET, Self.modelPath(model) + "/aliases", as: [AliasRecord].self)
    }

    /// The promotion policy of `model` (approvals and metric requirements per stage).
    ///
    /// - Throws: ``RemoteError`` with `.notFound` for a model that does not exist (see Errors on
    ///   ``RemoteRegistry``).
    public func policy(of model: String) throws -> Policy {
        try json(.GET, Self.modelPath(model) + "/policy", as: PolicyDocument.self).policy
    }

    /// The server store's figures: models, versions, chunks, logical, unique and stored bytes.
    ///
    /// - Throws: ``RemoteError`` (see Errors on ``RemoteRegistry``).
    public func statistics() throws -> RegistryStatistics {
        try json(.GET, "/v1/stats", as: RegistryStatistics.self)
    }

    // MARK: Changes (the server records its token's user as the actor; `actor` is ignored)

    /// Moves the version `reference` names to `target` once the model's policy allows it.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the approver role, `.notFound` when
    ///   `reference` names no version, `.refused` when approvals or metric requirements are missing
    ///   (see Errors on ``RemoteRegistry``).
    public func promote(
        _ reference: Reference,
        to target: Stage,
        actor: String,
        reason: String?,
        evidence: [String: String]
    )
        throws -> ChangeResult
    {
        try json(
            .POST,
            Self.versionPath(reference) + "/promote",
            body: StageChangeBody(to: target, reason: reason, evidence: evidence),
            as: ChangeResult.self
        )
    }

    /// Records the token's user's approval of the version `reference` names for `stage`.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the approver role, `.notFound` when
    ///   `reference` names no version, `.invalidArgument` for a stage other than staging or
    ///   production, `.refused` when the user created the version or approved it already (see
    ///   Errors on ``RemoteRegistry``).
    public func approve(_ reference: Reference, for stage: Stage, actor: String, reason: String?) throws -> ChangeResult
    {
        try json(
            .POST,
            Self.versionPath(reference) + "/approve",
            body: StageChangeBody(to: stage, reason: reason),
            as: ChangeResult.self
        )
    }

    /// Puts version `target` (nil: the previous production version) of `model` back in production.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the approver role, `.invalidArgument`
    ///   without a reason, `.notFound` when there is no version `target`, `.refused` when there is no
    ///   former production version to go back to (see Errors on ``RemoteRegistry``).
    public func rollback(model: String, to target: Int?, actor: String, reason: String) throws -> ChangeResult {
        try json(
            .POST,
            Self.modelPath(model) + "/rollback",
            body: RollbackBody(to: target, reason: reason),
            as: ChangeResult.self
        )
    }

    /// Moves the version `reference` names to the archived stage.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the approver role, `.notFound` when
    ///   `reference` names no version (see Errors on ``RemoteRegistry``).
    public func archive(
        _ reference: Reference,
        actor: String,
        reason: String?,
        evidence: [String: String]
    ) throws -> ChangeResult {
        try json(
            .POST,
            Self.versionPath(reference) + "/archive",
            body: ReasonBody(reason: reason, evidence: evidence),
            as: ChangeResult.self
        )
    }

    /// Deletes the version `reference` names (its chunks stay until a garbage collection).
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the admin role, `.notFound` when `reference`
    ///   names no version, `.refused` for a version that has been in production or that an alias
    ///   names (see Errors on ``RemoteRegistry``).
    public func delete(_ reference: Reference, actor: String, reason: String?) throws -> ChangeResult {
        try json(
            .DELETE,
            Self.versionPath(reference),
            query: reason.map { [("reason", $0)] } ?? [],
            as: ChangeResult.self
        )
    }

    /// Points `alias` of `model` at `version`.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` when the token's role may not change aliases of
    ///   that stage, `.notFound` when the version does not exist, `.invalidArgument` for an invalid
    ///   alias (see Errors on ``RemoteRegistry``).
    public func setAlias(
        model: String,
        alias: String,
        version: Int,
        actor: String,
        reason: String?
    ) throws -> ChangeResult {
        try json(
            .PUT,
            Self.modelPath(model) + "/aliases/" + PathSegment.encode(alias),
            body: AliasBody(version: version, reason: reason),
            as: ChangeResult.self
        )
    }

    /// Removes `alias` of `model`.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` when the token's role may not change aliases of
    ///   that stage, `.notFound` when there is no such alias (see Errors on ``RemoteRegistry``).
    public func removeAlias(model: String, alias: String, actor: String, reason: String?) throws -> ChangeResult {
        try json(
            .DELETE,
            Self.modelPath(model) + "/aliases/" + PathSegment.encode(alias),
            query: reason.map { [("reason", $0)] } ?? [],
            as: ChangeResult.self
        )
    }

    /// Sets `tags` on the version `reference` names.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` when the token's role may not tag a version of
    ///   that stage, `.notFound` when `reference` names no version (see Errors on ``RemoteRegistry``).
    public func tag(_ reference: Reference, _ tags: [String: String], actor: String) throws -> ChangeResult {
        try json(.POST, Self.versionPath(reference) + "/tags", body: TagsBody(tags: tags), as: ChangeResult.self)
    }

    /// Removes the tags `keys` from the version `reference` names.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` when the token's role may not tag a version of
    ///   that stage, `.notFound` when `reference` names no version (see Errors on ``RemoteRegistry``).
    public func untag(_ reference: Reference, _ keys: [String], actor: String) throws -> ChangeResult {
        try json(.POST, Self.versionPath(reference) + "/untag", body: TagsBody(keys: keys), as: ChangeResult.self)
    }

    /// Replaces the promotion policy of `model`.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the admin role, `.notFound` for a model that
    ///   does not exist (see Errors on ``RemoteRegistry``).
    public func setPolicy(model: String, _ policy: Policy, actor: String, reason: String?) throws -> ChangeResult {
        try json(
            .PUT,
            Self.modelPath(model) + "/policy",
            body: PolicyBody(policy: policy, reason: reason),
            as: ChangeResult.self
        )
    }

    /// Has the server delete chunks no version uses that are older than `gracePeriod` seconds.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the admin role (see Errors on
    ///   ``RemoteRegistry``).
    public func collectGarbage(gracePeriod: Double) throws -> GarbageCollectionReport {
        try json(.POST, "/v1/gc", query: [("grace_period", "\(gracePeriod)")], as: GarbageCollectionReport.self)
    }

    /// Has the server verify its store (`deep`: every chunk's bytes too); `progress` is not called
    /// (the server reports none). Problems found are in the summary, not thrown.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the admin role (see Errors on
    ///   ``RemoteRegistry``).
    public func verifySummary(deep: Bool, progress: ((TransferProgress) -> Void)?) throws -> VerifySummary {
        try json(.POST, "/v1/verify", query: [("deep", deep ? "true" : "false")], as: VerifySummary.self)
    }

    /// Creates a token for `user` with `role`; the token itself is in the result only.
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the admin role, `.invalidArgument` for a user
    ///   name that is empty or not on one line (see Errors on ``RemoteRegistry``).
    public func createToken(user: String, role: Role, actor: String) throws -> NewToken {
        try json(.POST, "/v1/tokens", body: TokenBody(user: user, role: role), as: NewToken.self)
    }

    /// The server's tokens (their ids, users and roles; never the tokens).
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the admin role (see Errors on
    ///   ``RemoteRegistry``).
    public func listTokens() throws -> [TokenRecord] {
        try json(.GET, "/v1/tokens", as: [TokenRecord].self)
    }

    /// Revokes the token whose id starts with `id` (at least 6 hex digits).
    ///
    /// - Throws: ``RemoteError`` with `.forbidden` below the admin role, `.notFound` when no token
    ///   matches, `.invalidArgument` for a shorter or ambiguous id (see Errors on ``RemoteRegistry``).
    public func revokeToken(id: String, actor: String) throws -> TokenRecord {
        try json(.DELETE, "/v1/tokens/" + PathSegment.encode(id), as: TokenRecord.self)
    }
}
