import AsyncHTTPClient
import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Dispatch
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization

/// An error a server returned (or failing to reach it) that has no ``RegistryError`` equivalent:
/// `unauthenticated` (401), `forbidden` (403), `too_large` (413), `missing_chunks` (409), …
/// The registry on a `cairn serve` server, with the same operations as a local ``Registry``.
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
///   `GET /v1/config`), asks which chunks the server lacks, uploads only those in batches (zstd
///   compressed), then creates the version from its manifest.
/// - A pull keeps a local chunk cache (a store under `cacheDirectory`), fetches only the chunks the
///   cache lacks (and only those of the selected files), verifies each, then restores from the cache.
///
/// Calls block the calling thread until the server answers: call them from a plain thread (the
/// command line's main thread), not from a Swift concurrency task.
public final class RemoteRegistry: RegistryService, @unchecked Sendable {
    // @unchecked Sendable: immutable after init, except the lazily fetched config and cache store,
    // which are guarded by mutexes.
    public let baseURL: String
    let token: String?
    /// Directory of the local chunk cache.
    public let cacheDirectory: String
    let client: HTTPClient
    private let configCache = Mutex<ServerConfig?>(nil)
    /// Bytes a push checks with the server (all but 2% of them missing there) before it stops
    /// hashing chunks and lets the server assign their ids (see ``pushReport(directory:request:progress:)``).
    public var assignAfterBytes = 32 << 20

    /// Raw bytes per upload or fetch batch.
    let batchRawBytes: Int

    /// - Parameters:
    ///   - url: the server, e.g. `http://127.0.0.1:8080`.
    ///   - token: a bearer token (`cairn token create`), or nil for a server started with `--public-read`.
    ///   - cacheDirectory: the chunk cache for pulls (default ``defaultCacheDirectory(for:)``).
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

    /// Chunk uploads and fetches over blocking sockets (plain http); nil: through AsyncHTTPClient.
    let socketClient: SocketClient?

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

    /// `$XDG_CACHE_HOME/cairn/remote/HOST_PORT`, else `~/.cache/cairn/remote/HOST_PORT`.
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

    /// The server's chunking parameters and batch limits (fetched once).
    public func serverConfig() throws -> ServerConfig {
        if let config = configCache.withLock({ $0 }) { return config }
        let config = try json(.GET, "/v1/config", as: ServerConfig.self)
        configCache.withLock { $0 = config }
        return config
    }

    /// Who the token identifies.
    public func whoami() throws -> Identity {
        try json(.GET, "/v1/whoami", as: Identity.self)
    }

    // MARK: Lookup

    public func resolve(_ reference: Reference) throws -> VersionRecord {
        try info(reference).record
    }

    public func info(_ reference: Reference) throws -> VersionInfo {
        let reply = try call(.GET, Self.versionPath(reference))
        return try decodeVersion(reply).info
    }

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

    public func listModels() throws -> [ModelSummary] {
        try json(.GET, "/v1/models", as: [ModelSummary].self)
    }

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

    public func lineage(_ reference: Reference) throws -> Lineage {
        try json(.GET, Self.versionPath(reference) + "/lineage", as: Lineage.self)
    }

    public func history(of model: String) throws -> [AuditEntry] {
        try json(.GET, Self.modelPath(model) + "/history", as: [AuditEntry].self)
    }

    public func auditLog(model: String?, since: Date?) throws -> [AuditEntry] {
        var query: [(String, String)] = []
        if let model { query.append(("model", model)) }
        if let since { query.append(("since", RegistryTime.format(since))) }
        return try json(.GET, "/v1/audit", query: query, as: [AuditEntry].self)
    }

    public func verifyAudit() throws -> AuditVerification {
        try json(.GET, "/v1/audit/verify", as: AuditVerification.self)
    }

    public func aliases(of model: String) throws -> [AliasRecord] {
        try json(.GET, Self.modelPath(model) + "/aliases", as: [AliasRecord].self)
    }

    public func policy(of model: String) throws -> Policy {
        try json(.GET, Self.modelPath(model) + "/policy", as: PolicyDocument.self).policy
    }

    public func statistics() throws -> RegistryStatistics {
        try json(.GET, "/v1/stats", as: RegistryStatistics.self)
    }

    // MARK: Changes (the server records its token's user as the actor)

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

    public func approve(_ reference: Reference, for stage: Stage, actor: String, reason: String?) throws -> ChangeResult
    {
        try json(
            .POST,
            Self.versionPath(reference) + "/approve",
            body: StageChangeBody(to: stage, reason: reason),
            as: ChangeResult.self
        )
    }

    public func rollback(model: String, to target: Int?, actor: String, reason: String) throws -> ChangeResult {
        try json(
            .POST,
            Self.modelPath(model) + "/rollback",
            body: RollbackBody(to: target, reason: reason),
            as: ChangeResult.self
        )
    }

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

    public func delete(_ reference: Reference, actor: String, reason: String?) throws -> ChangeResult {
        try json(
            .DELETE,
            Self.versionPath(reference),
            query: reason.map { [("reason", $0)] } ?? [],
            as: ChangeResult.self
        )
    }

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

    public func removeAlias(model: String, alias: String, actor: String, reason: String?) throws -> ChangeResult {
        try json(
            .DELETE,
            Self.modelPath(model) + "/aliases/" + PathSegment.encode(alias),
            query: reason.map { [("reason", $0)] } ?? [],
            as: ChangeResult.self
        )
    }

    public func tag(_ reference: Reference, _ tags: [String: String], actor: String) throws -> ChangeResult {
        try json(.POST, Self.versionPath(reference) + "/tags", body: TagsBody(tags: tags), as: ChangeResult.self)
    }

    public func untag(_ reference: Reference, _ keys: [String], actor: String) throws -> ChangeResult {
        try json(.POST, Self.versionPath(reference) + "/untag", body: TagsBody(keys: keys), as: ChangeResult.self)
    }

    public func setPolicy(model: String, _ policy: Policy, actor: String, reason: String?) throws -> ChangeResult {
        try json(
            .PUT,
            Self.modelPath(model) + "/policy",
            body: PolicyBody(policy: policy, reason: reason),
            as: ChangeResult.self
        )
    }

    public func collectGarbage(gracePeriod: Double) throws -> GarbageCollectionReport {
        try json(.POST, "/v1/gc", query: [("grace_period", "\(gracePeriod)")], as: GarbageCollectionReport.self)
    }

    public func verifySummary(deep: Bool, progress: ((TransferProgress) -> Void)?) throws -> VerifySummary {
        try json(.POST, "/v1/verify", query: [("deep", deep ? "true" : "false")], as: VerifySummary.self)
    }

    public func createToken(user: String, role: Role, actor: String) throws -> NewToken {
        try json(.POST, "/v1/tokens", body: TokenBody(user: user, role: role), as: NewToken.self)
    }

    public func listTokens() throws -> [TokenRecord] {
        try json(.GET, "/v1/tokens", as: [TokenRecord].self)
    }

    public func revokeToken(id: String, actor: String) throws -> TokenRecord {
        try json(.DELETE, "/v1/tokens/" + PathSegment.encode(id), as: TokenRecord.self)
    }
}
