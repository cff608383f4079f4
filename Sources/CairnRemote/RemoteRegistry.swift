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
    public convenience init(url: String, token: String?, cacheDirectory: String? = nil, batchBytes: Int = 16 << 20) throws {
        try self.init(url: url, token: token, cacheDirectory: cacheDirectory, batchBytes: batchBytes, socketFetches: true)
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

    // MARK: HTTP

    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer

        var data: Data { Data(body.readableBytesView) }
    }

    private func makeRequest(
        _ method: HTTPMethod,
        _ path: String,
        query: [(String, String)] = [],
        body: HTTPClient.Body? = nil,
        contentType: String? = nil,
        headers extra: [(String, String)] = []
    ) throws -> HTTPClient.Request {
        let url = baseURL + path + Self.queryString(query)
        var headers = HTTPHeaders()
        headers.add(name: "User-Agent", value: "cairn/0.1")
        if let token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let contentType { headers.add(name: "Content-Type", value: contentType) }
        for (name, value) in extra { headers.add(name: name, value: value) }
        do {
            return try HTTPClient.Request(url: url, method: method, headers: headers, body: body)
        } catch {
            throw RegistryError(.invalidArgument, "invalid request URL \(url): \(error)")
        }
    }

    /// `?name=value&…`, percent-encoded; empty for no parameters.
    static func queryString(_ query: [(String, String)]) -> String {
        query.isEmpty ? "" : "?" + query.map { "\(PathSegment.encode($0.0))=\(PathSegment.encode($0.1))" }.joined(separator: "&")
    }

    /// Starts a request; the reply is checked when waited for (``finish(_:)``).
    func start(
        _ method: HTTPMethod,
        _ path: String,
        query: [(String, String)] = [],
        body: HTTPClient.Body? = nil,
        contentType: String? = nil,
        headers: [(String, String)] = []
    ) throws -> EventLoopFuture<HTTPClient.Response> {
        client.execute(
            request: try makeRequest(method, path, query: query, body: body, contentType: contentType, headers: headers)
        )
    }

    /// Waits for a started request; throws the server's error for a status of 400 or more.
    func finish(_ future: EventLoopFuture<HTTPClient.Response>) throws -> Reply {
        try finish(future.map { Reply(status: Int($0.status.code), headers: $0.headers, body: $0.body ?? ByteBuffer()) })
    }

    /// Like ``start(_:_:query:body:contentType:headers:)``, with the reply read by `collector`.
    func start(
        _ method: HTTPMethod,
        _ path: String,
        body: HTTPClient.Body? = nil,
        contentType: String? = nil,
        collector: PooledReplyCollector
    ) throws -> EventLoopFuture<Reply> {
        client.execute(
            request: try makeRequest(method, path, body: body, contentType: contentType), delegate: collector
        ).futureResult
    }

    func finish(_ future: EventLoopFuture<Reply>) throws -> Reply {
        let reply: Reply
        do {
            reply = try future.wait()
        } catch {
            throw RemoteError(status: 0, code: .unreachable, message: "cannot reach \(baseURL): \(Self.reason(error))")
        }
        if reply.status >= 400 { throw Self.error(from: reply) }
        return reply
    }

    /// Why a connection failed, in words: "connection refused", "unknown host example.org".
    static func reason(_ error: any Error) -> String {
        switch error {
        case let error as IOError: return String(cString: strerror(error.errnoCode)).lowercased()
        case let error as NIOConnectionError:
            if let first = error.connectionErrors.first { return reason(first.error) }
            return "unknown host \(error.host)"
        case let error as HTTPClientError where error == .connectTimeout: return "no connection within 10 seconds"
        case let error as HTTPClientError where error == .readTimeout: return "no answer within 5 minutes"
        default: return "\(error)"
        }
    }

    func call(
        _ method: HTTPMethod,
        _ path: String,
        query: [(String, String)] = [],
        body: HTTPClient.Body? = nil,
        contentType: String? = nil,
        headers: [(String, String)] = []
    ) throws -> Reply {
        try finish(try start(method, path, query: query, body: body, contentType: contentType, headers: headers))
    }

    /// A JSON request and a JSON reply.
    func json<Reply: Decodable>(
        _ method: HTTPMethod,
        _ path: String,
        query: [(String, String)] = [],
        body: (some Encodable)? = Optional<Empty>.none,
        as type: Reply.Type
    ) throws -> Reply {
        var payload: HTTPClient.Body?
        if let body {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            payload = .bytes(Array(try encoder.encode(body)))
        }
        let reply = try call(
            method,
            path,
            query: query,
            body: payload,
            contentType: payload == nil ? nil : "application/json"
        )
        do {
            return try JSONDecoder().decode(type, from: reply.data)
        } catch {
            throw RemoteError(
                status: reply.status,
                code: .badResponse,
                message: "unexpected reply from \(baseURL)\(path): \(error)"
            )
        }
    }

    struct Empty: Codable {}

    static func error(from reply: Reply) -> any Error {
        guard let body = try? JSONDecoder().decode(ErrorBody.self, from: reply.data) else {
            let text = String(decoding: reply.body.readableBytesView.prefix(200), as: UTF8.self)
            return RemoteError(
                status: reply.status,
                code: ErrorCode(code: nil, status: reply.status),
                message: "server answered \(reply.status): \(text)"
            )
        }
        let e = body.error
        return RemoteError(
            status: reply.status,
            code: ErrorCode(code: e.code, status: reply.status),
            message: e.message,
            missing: (e.missing ?? []).compactMap { SHA256Digest(hex: $0) }
        )
    }

    static func modelPath(_ model: String) -> String { "/v1/models/" + PathSegment.encode(model) }

    static func versionPath(_ reference: Reference) -> String {
        let ref: String =
            switch reference.selector {
            case .latest: "latest"
            case .number(let n): "\(n)"
            case .name(let name): name
            }
        return modelPath(reference.model) + "/versions/" + PathSegment.encode(ref)
    }

    static func versionPath(_ version: VersionRecord) -> String {
        modelPath(version.model) + "/versions/\(version.version)"
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

    // MARK: Chunks

    /// The ids among `ids` the server does not store.
    public func missingChunks(_ ids: [SHA256Digest]) throws -> [SHA256Digest] {
        let config = try serverConfig()
        var missing: [SHA256Digest] = []
        var start = 0
        while start < ids.count {
            let end = min(start + config.maxBatchIDs, ids.count)
            let reply = try call(
                .POST,
                "/v1/chunks/missing",
                body: .bytes(ChunkIDList.encode(Array(ids[start..<end]))),
                contentType: "application/octet-stream"
            )
            guard let list = reply.body.readableBytesView.withUnsafeBytes({ ChunkIDList.decode($0) }) else {
                throw RemoteError(
                    status: reply.status,
                    code: .badResponse,
                    message: "malformed id list from \(baseURL)"
                )
            }
            missing += list
            start = end
        }
        return missing
    }

    /// Uploads chunks read from local files in batches (two in flight); returns bytes sent and
    /// what the server added.
    func upload(
        _ sources: [ChunkSource],
        config: ServerConfig,
        into uploadID: String?,
        progress: ((TransferProgress) -> Void)?
    ) throws -> (sent: Int64, result: ChunkStoreResult) {
        var total = ChunkStoreResult(received: 0, newChunks: 0, newBytes: 0, storedBytes: 0)
        var sent: Int64 = 0
        let limit = min(batchRawBytes, max(config.maxBatchBytes / 2, config.chunker.max))
        let batches = Self.batches(sources.map { Int($0.chunk.length) }, limit: limit, maxCount: config.maxBatchIDs)
        let rawTotal = sources.reduce(Int64(0)) { $0 + Int64($1.chunk.length) }
        var rawDone: Int64 = 0
        var inFlight: (future: EventLoopFuture<HTTPClient.Response>, raw: Int64)?
        func collect(_ pending: (future: EventLoopFuture<HTTPClient.Response>, raw: Int64)) throws {
            let reply: Reply
            do {
                reply = try finish(pending.future)
            } catch let error as RemoteError where error.code == .chunkMismatch {
                throw RemoteError(
                    status: error.status,
                    code: error.code,
                    message: "\(error.message) (did a file change while it was being pushed? push again)"
                )
            }
            let r = try JSONDecoder().decode(ChunkStoreResult.self, from: reply.data)
            total.received += r.received
            total.newChunks += r.newChunks
            total.newBytes += r.newBytes
            total.storedBytes += r.storedBytes
            rawDone += pending.raw
            progress?(TransferProgress(done: rawDone, of: rawTotal, new: total.newBytes))
        }
        for range in batches {
            let batch = Array(sources[range])
            // Not re-hashed here: the server verifies every chunk (a file changed since the scan gets
            // its batch rejected as chunk_mismatch).
            let bundle = try Store.bundle(
                batch,
                compressionLevel: config.compressionLevel,
                maxChunk: config.chunker.max,
                compress: false,
                verify: false
            )
            sent += Int64(bundle.count)
            let future = try start(
                .POST,
                "/v1/chunks",
                query: uploadID.map { [("upload", $0)] } ?? [],
                body: .bytes(bundle),
                contentType: "application/octet-stream"
            )
            if let pending = inFlight { try collect(pending) }
            inFlight = (future, batch.reduce(Int64(0)) { $0 + Int64($1.chunk.length) })
        }
        if let pending = inFlight { try collect(pending) }
        return (sent, total)
    }

    /// A call on its way, through AsyncHTTPClient or a ``SocketClient``.
    enum PendingCall {
        case client(EventLoopFuture<HTTPClient.Response>)
        case socket(SocketReply)

        /// Waits for the reply; throws the server's error for a status of 400 or more.
        func wait(_ remote: RemoteRegistry) throws -> Reply {
            switch self {
            case .client(let future): return try remote.finish(future)
            case .socket(let reply): return Reply(status: 200, headers: HTTPHeaders(), body: try reply.body())
            }
        }
    }

    /// Consecutive index ranges of `lengths` whose sums stay within `limit` (at least one each).
    static func batches(_ lengths: [Int], limit: Int, maxCount: Int) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = 0
        var sum = 0
        for (i, n) in lengths.enumerated() {
            if i > start && (sum + n > limit || i - start >= maxCount) {
                out.append(start..<i)
                start = i
                sum = 0
            }
            sum += n
        }
        if start < lengths.count { out.append(start..<lengths.count) }
        return out
    }

    // MARK: Push

    public func pushReport(
        directory: String,
        request: PushRequest,
        progress: ((TransferProgress) -> Void)?
    ) throws
        -> PushReport
    {
        try ModelName.validate(request.model)
        let config = try serverConfig()
        let planner = try pushPlanner(request, config: config)
        // The chunks are staged in an upload and committed with the version in one transaction.
        let uploadID = try json(.POST, "/v1/uploads", body: Empty(), as: UploadCreated.self).upload
        var committed = false
        defer {
            if !committed { _ = try? call(.DELETE, "/v1/uploads/" + uploadID) }
        }
        // Uploads overlap the scan: after each round of chunking and hashing, the server is asked
        // which of its new chunks it lacks, those are copied into the current bundle straight from
        // the round's buffer, and a full bundle is sent (two in flight) while scanning goes on.
        let limit = min(batchRawBytes, max(config.maxBatchBytes / 2, config.chunker.max))
        var seen = Set<SHA256Digest>()
        var builder = BundleBuffer(capacity: limit)
        // The chunks of the bundle being built and of those in flight, in bundle order.
        var building: [ChunkSource] = []
        var inFlight: [(response: PendingCall, bundle: ByteBuffer, chunks: [ChunkSource])] = []
        // Chunks sent without ids, with the ids the server assigned them.
        var assigned: [ChunkSource] = []
        var sent: Int64 = 0
        func collect(_ pending: (response: PendingCall, bundle: ByteBuffer, chunks: [ChunkSource])) throws {
            let reply: Reply
            do {
                reply = try pending.response.wait(self)
            } catch let error as RemoteError where error.code == .chunkMismatch {
                throw RemoteError(
                    status: error.status, code: error.code,
                    message: "\(error.message) (did a file change while it was being pushed? push again)")
            }
            builder.recycle(pending.bundle)
            guard pending.chunks.contains(where: { $0.chunk.id == .zero }) else { return }
            let ids = try JSONDecoder().decode(ChunkStoreResult.self, from: reply.data).ids ?? []
            guard ids.count == pending.chunks.count else {
                throw RemoteError(status: 0, code: .badResponse, message: "the server assigned \(ids.count) chunk ids for \(pending.chunks.count) chunks")
            }
            for (chunk, hex) in zip(pending.chunks, ids) where chunk.chunk.id == .zero {
                guard let id = SHA256Digest(hex: hex) else {
                    throw RemoteError(status: 0, code: .badResponse, message: "the server assigned an invalid chunk id \(hex)")
                }
                var chunk = chunk
                chunk.chunk.id = id
                assigned.append(chunk)
            }
        }
        func send() throws {
            guard builder.count > 0 else { return }
            let bundle = builder.take()
            sent += Int64(bundle.readableBytes)
            let unhashed = building.contains { $0.chunk.id == .zero }
            let query = [("upload", uploadID)] + (unhashed ? [("assign_ids", "1")] : [])
            let call: PendingCall
            if let socketClient {
                call = .socket(socketClient.post("/v1/chunks" + Self.queryString(query), body: bundle))
            } else {
                call = .client(
                    try start(.POST, "/v1/chunks", query: query, body: .byteBuffer(bundle), contentType: "application/octet-stream"))
            }
            inFlight.append((call, bundle, building))
            building = []
            if inFlight.count > 2 { try collect(inFlight.removeFirst()) }
        }
        func add(_ chunk: ChunkSource, _ bytes: UnsafeRawBufferPointer) throws {
            builder.append(chunk, bytes: bytes)
            building.append(chunk)
            if builder.rawBytes >= limit || builder.count >= config.maxBatchIDs { try send() }
        }
        // When the server lacks (nearly) everything scanned so far — a model's first push — the
        // client stops hashing chunks (the server hashes each one anyway, to verify it) and sends
        // the rest without ids; the server assigns them. A variant, whose chunks the server mostly
        // has, keeps asking which are missing and sends only those.
        let control = ScanControl()
        var checkedBytes = 0
        var missingBytes = 0
        let scanned = try Store.scan(
            directory: directory, parameters: config.chunker, planner: planner, progress: progress, control: control
        ) { round in
            if round.chunks.first?.chunk.id == .zero {
                for (i, chunk) in round.chunks.enumerated() { try add(chunk, round.bytes(of: i)) }
                return
            }
            var fresh: [SHA256Digest] = []
            for chunk in round.chunks where seen.insert(chunk.chunk.id).inserted { fresh.append(chunk.chunk.id) }
            guard !fresh.isEmpty else { return }
            var missing = Set(try self.missingChunks(fresh))
            for (i, chunk) in round.chunks.enumerated() {
                checkedBytes += Int(chunk.chunk.length)
                if missing.remove(chunk.chunk.id) != nil {
                    missingBytes += Int(chunk.chunk.length)
                    try add(chunk, round.bytes(of: i))
                }
            }
            if config.assignsChunkIDs == true, checkedBytes >= self.assignAfterBytes, missingBytes >= checkedBytes / 100 * 98 {
                control.hashesChunks = false
            }
        }
        try send()
        for pending in inFlight { try collect(pending) }
        inFlight = []
        let tree = assigned.isEmpty ? scanned : try scanned.assigning(assigned)
        for attempt in 0..<4 {
            do {
                var body = CreateVersionBody(request: request, manifest: tree.manifest, newBytes: 0, storedBytes: 0)
                body.upload = uploadID
                let result = try json(.POST, Self.modelPath(request.model) + "/versions", body: body, as: PushResult.self)
                committed = true
                return PushReport(result: result, transferredBytes: sent)
            } catch let error as RemoteError where error.code == .missingChunks && attempt < 3 {
                // A garbage collection on the server dropped chunks this push found there.
                let again = try upload(
                    tree.chunkSources(Set(error.missing)), config: config, into: uploadID, progress: progress)
                sent += again.sent
            } catch {
                committed = true  // a refused or failed version closes the upload on the server
                throw error
            }
        }
        throw RemoteError(status: 409, code: .missingChunks, message: "chunks kept disappearing on the server; push again")
    }


    /// The chunking plans of a push, with delta references against the parent a local push would
    /// use (the first parent, else the model's latest version), whose headers are read through the
    /// chunk cache.
    func pushPlanner(_ request: PushRequest, config: ServerConfig) throws -> ChunkingPlanner {
        let slice = config.chunker.slice
        var parent: VersionRecord?
        if let first = request.parents.first {
            parent = try resolve(try Reference(parsing: first))
        } else {
            parent = try? resolve(Reference(model: request.model, selector: .latest))
        }
        guard let parent, let manifest = try? manifest(of: parent) else { return Registry.chunkingPlanner(sliceSize: slice) }
        return Registry.chunkingPlanner(sliceSize: slice, parent: manifest) { file, range in
            var bytes: [UInt8] = []
            try self.readRange(parent, file: file, range: range) { piece, _ in bytes.append(contentsOf: piece) }
            return bytes
        }
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

    // MARK: Reads

    /// The local chunk cache (a store), created with the server's chunking parameters on first use.
    public func cacheStore() throws -> Store {
        try Self.openCache(at: cacheDirectory, config: try serverConfig())
    }

    /// Stores opened by this process, by directory (one environment per file per process).
    private static let openStores = Mutex<[String: Store]>([:])

    static func openCache(at path: String, config: ServerConfig) throws -> Store {
        try openStores.withLock { stores in
            if let store = stores[path] { return store }
            let store: Store
            if FileManager.default.fileExists(atPath: path + "/config.json") {
                store = try Store.open(at: path)
            } else {
                do {
                    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                    store = try Store.create(
                        at: path,
                        config: StoreConfig(chunker: config.chunker, compressionLevel: config.compressionLevel)
                    )
                } catch let error as CairnStoreError where error.code == .conflict {
                    store = try Store.open(at: path)  // another process created it meanwhile
                }
            }
            stores[path] = store
            return store
        }
    }

    /// Where a read gets the chunks the cache's packs lack: the files earlier pulls kept in the
    /// cache, then the server.
    func cacheThenServer(_ cache: Store, asksForDeltas: Bool = false) throws -> CacheThenServer {
        CacheThenServer(
            files: try CachedFiles(cache: cache), server: ServerChunks(remote: self, config: try serverConfig()),
            asksForDeltas: asksForDeltas)
    }

    /// Whether the cache holds most of the chunks of one of `version`'s parents (in its packs or
    /// linked files): then the chunks the server stores as deltas against them can come as deltas.
    func cacheHoldsAParent(of version: VersionRecord, cache: Store, cached: CachedFiles) -> Bool {
        // An empty cache holds nothing: no requests.
        let holdsSomething = [cached.directory, cache.root + "/packs"].contains {
            !((try? FileManager.default.contentsOfDirectory(atPath: $0)) ?? []).isEmpty
        }
        guard holdsSomething else { return false }
        for parent in version.parents {
            guard let reference = try? Reference(parsing: parent), let record = try? resolve(reference),
                let manifest = try? self.manifest(of: record)
            else { continue }
            var unique = Set<SHA256Digest>()
            let refs = manifest.files.flatMap(\.chunks).filter { unique.insert($0.id).inserted }
            guard !refs.isEmpty, let missing = try? Set(cache.missingChunks(refs.map(\.id))),
                let linked = try? cached.locate(refs.filter { missing.contains($0.id) })
            else { continue }
            if (refs.count - missing.count + linked.count) * 2 >= refs.count { return true }
        }
        return false
    }

    /// Fetches into the cache's packs the chunks of `files` they lack (from the cache's linked
    /// files, else from the server), in batches (two in flight); returns the bytes received. Each
    /// chunk is verified as it is stored. A linked file whose chunk does not verify is dropped and
    /// the fetch starts again.
    @discardableResult
    public func fetchIntoCache(_ files: [FileEntry], progress: ((TransferProgress) -> Void)? = nil) throws -> Int64 {
        while true {
            do {
                return try fetchIntoCacheOnce(files, progress: progress)
            } catch let error as CairnStoreError where error.droppedSource {
                continue  // a linked file that did not verify was dropped: its chunks come from the server now
            }
        }
    }

    private func fetchIntoCacheOnce(_ files: [FileEntry], progress: ((TransferProgress) -> Void)?) throws -> Int64 {
        let config = try serverConfig()
        let cache = try cacheStore()
        var lengths: [SHA256Digest: Int] = [:]
        var ids: [SHA256Digest] = []
        for file in files {
            for chunk in file.chunks where lengths[chunk.id] == nil {
                lengths[chunk.id] = Int(chunk.length)
                ids.append(chunk.id)
            }
        }
        let missing = try cache.missingChunks(ids)
        if missing.isEmpty { return 0 }
        // Staged into packs as they arrive and indexed once at the end (one fsync per pack, not per batch).
        let staging = try ChunkUpload(store: cache, bypassesPageCache: true)
        defer { staging.abandon() }
        let limit = min(batchRawBytes, max(config.maxBatchBytes / 2, config.chunker.max))
        let batches = Self.batches(missing.map { lengths[$0]! }, limit: limit, maxCount: config.maxBatchIDs)
        let rawTotal = missing.reduce(Int64(0)) { $0 + Int64(lengths[$1]!) }
        var rawDone: Int64 = 0
        var received: Int64 = 0
        // Read from the cache's linked files or fetched through the same transport as a pull's, one
        // batch ahead.
        let fetcher = try cacheThenServer(cache)
        var inFlight: (bundles: [any PendingBundle], raw: Int64)?
        // Each bundle is verified (in parallel) on this thread, then written to the cache's packs
        // on a serial queue while the next one is verified.
        let writing = DispatchQueue(label: "cairn.cache.stage")
        defer { writing.sync {} }  // before the staging is abandoned, should this throw
        let writeError = ErrorBox()
        func store(_ pending: (bundles: [any PendingBundle], raw: Int64)) throws {
            for bundle in pending.bundles {
                // The server sent chunks raw only where compression did not help: keep them so.
                let verified = try fetcher.verifying(bundle) {
                    try bundle.withBytes { bytes in
                        if !bundle.isKeptLocally { received += Int64(bytes.count) }
                        return try staging.verify(bundle: bytes, compressRaw: false)
                    }
                }
                writing.async {
                    do {
                        try bundle.withBytes { _ = try staging.stage(verified, bundle: $0) }
                    } catch {
                        writeError.record(error)
                    }
                }
            }
            try writeError.rethrow()
            rawDone += pending.raw
            progress?(TransferProgress(done: rawDone, of: rawTotal, new: rawDone))
        }
        for range in batches {
            let batch = missing[range].map { ChunkRef(id: $0, length: UInt32(lengths[$0]!)) }
            let bundles = try fetcher.startFetch(batch)
            if let pending = inFlight { try store(pending) }
            inFlight = (bundles, batch.reduce(Int64(0)) { $0 + Int64($1.length) })
        }
        if let pending = inFlight { try store(pending) }
        writing.sync {}
        try writeError.rethrow()
        try staging.commitChunks()
        return received
    }

    public func pull(
        _ version: VersionRecord,
        to directory: String,
        paths: [String]?,
        selection: FileSelection?,
        progress: ((TransferProgress) -> Void)?
    ) throws -> [FileEntry] {
        let files = try Registry.files(of: try manifest(of: version), version: version, paths: paths, selection: selection)
        // The files are restored from the cache as from a local store; the chunks it lacks are read
        // from the files earlier pulls kept in it, or fetched from the server, window by window as
        // they are needed, and verified once. Where the written files can be linked into the cache
        // (one file system), they are its copy of their chunks; elsewhere the fetched chunks are
        // written to the cache's packs as well.
        let cache = try cacheStore()
        let cached = try CachedFiles(cache: cache)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let links = cached.canLink(filesUnder: directory)
        // Deltas come as such only where nothing fetched is kept in packs (their references may
        // not be there).
        let serverSendsDeltas = try serverConfig().sendsDeltas == true
        let deltas = links && serverSendsDeltas && cacheHoldsAParent(of: version, cache: cache, cached: cached)
        try cache.restore(
            files, to: directory, context: "model \(version.model) version \(version.version)", progress: progress,
            fetcher: try cacheThenServer(cache, asksForDeltas: deltas), keepsFetched: !links)
        if links { try cached.add(files, writtenUnder: directory) }
        return files
    }

    /// Bytes per ranged request of ``read(_:path:range:sink:)``.
    static let readWindow: Int64 = 8 << 20

    public func read(
        _ version: VersionRecord,
        path: String,
        range: ClosedRange<Int64>?,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let (file, bytes) = try Registry.fileRange(in: try manifest(of: version), of: version, path: path, range: range)
        if bytes.isEmpty { return }
        let filePath = Self.versionPath(version) + "/files/" + PathSegment.encodePath(path)
        let hasher = range == nil ? SHA256Hasher() : nil
        func request(_ window: Range<Int64>) throws -> EventLoopFuture<HTTPClient.Response> {
            try start(
                .GET,
                filePath,
                headers: [
                    ("Range", "bytes=\(window.lowerBound)-\(window.upperBound - 1)"),
                    ("If-Range", "\"\(file.sha256.hex)\""),
                ]
            )
        }
        var at = bytes.lowerBound
        var next: (future: EventLoopFuture<HTTPClient.Response>, window: Range<Int64>)? = nil
        while at < bytes.upperBound || next != nil {
            let current: (future: EventLoopFuture<HTTPClient.Response>, window: Range<Int64>)
            if let n = next {
                current = n
            } else {
                let window = at..<min(at + Self.readWindow, bytes.upperBound)
                current = (try request(window), window)
                at = window.upperBound
            }
            next = nil
            if at < bytes.upperBound {
                let window = at..<min(at + Self.readWindow, bytes.upperBound)
                next = (try request(window), window)
                at = window.upperBound
            }
            let reply = try finish(current.future)
            guard reply.body.readableBytes == current.window.count else {
                throw RemoteError(
                    status: reply.status,
                    code: .badResponse,
                    message: "asked for \(current.window.count) bytes of \(path), got \(reply.body.readableBytes)"
                )
            }
            try reply.body.readableBytesView.withUnsafeBytes { chunk in
                hasher?.update(chunk)
                try sink(chunk)
            }
        }
        if let hasher, hasher.finalize() != file.sha256 {
            throw RegistryError(
                .corruption,
                "\(path) of \(version.reference) from \(baseURL) does not match its SHA-256"
            )
        }
    }
}

/// The first error of work done on another queue.
final class ErrorBox: Sendable {
    private let error = Mutex<(any Error)?>(nil)

    func record(_ e: any Error) { error.withLock { if $0 == nil { $0 = e } } }

    func rethrow() throws {
        if let e = error.withLock({ $0 }) { throw e }
    }
}

/// A chunk bundle (``ChunkBundle``) of raw chunks built straight into a ByteBuffer, so the bytes
/// are copied once on their way from the scan's buffer to the socket.
struct BundleBuffer {
    private var buffer: ByteBuffer
    private let capacity: Int
    /// Buffers of bundles whose upload finished, cleared for the next ones: a fresh 16 MiB buffer
    /// per bundle cost a page fault per 4 KiB, about 5 % of a remote push's CPU time.
    private var spare: [ByteBuffer] = []
    private(set) var count = 0
    private(set) var rawBytes = 0

    init(capacity: Int) {
        self.capacity = capacity
        buffer = Self.empty(capacity: capacity, reusing: nil)
    }

    private static func empty(capacity: Int, reusing old: consuming ByteBuffer?) -> ByteBuffer {
        var buffer = old ?? ByteBufferAllocator().buffer(capacity: capacity + (capacity >> 4))
        buffer.clear()
        buffer.writeRepeatingByte(0, count: ChunkBundle.headerSize)
        return buffer
    }

    mutating func append(_ source: ChunkSource, bytes: UnsafeRawBufferPointer) {
        let headerSize = ChunkBundle.entryHeaderSize(hasReference: source.reference != nil)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: headerSize) { raw in
            ChunkBundle.writeEntryHeader(
                id: source.chunk.id, codec: .raw, rawLength: bytes.count, storedLength: bytes.count,
                elementSize: source.elementSize, reference: source.reference, to: raw.baseAddress!)
            return headerSize
        }
        buffer.writeBytes(bytes)
        count += 1
        rawBytes += bytes.count
    }

    /// The bundle, and an empty builder in its place.
    mutating func take() -> ByteBuffer {
        let count = self.count
        buffer.withUnsafeMutableReadableBytes { ChunkBundle.writeHeader(count: count, to: $0.baseAddress!) }
        let out = buffer
        buffer = Self.empty(capacity: capacity, reusing: spare.popLast())
        self.count = 0
        rawBytes = 0
        return out
    }

    /// Takes back the buffer of a bundle whose upload finished (its memory is reused when nothing
    /// else holds it).
    mutating func recycle(_ bundle: consuming ByteBuffer) {
        spare.append(bundle)
    }
}

/// Collects a reply into a buffer from ``ReceiveBuffers``, sized by its Content-Length
/// (AsyncHTTPClient's default collector grows a fresh buffer per reply, whose pages are faulted in
/// anew each time). The body stays with the collector (``takeBody()``) until the reply's owner
/// takes it.
final class PooledReplyCollector: HTTPClientResponseDelegate, @unchecked Sendable {
    // @unchecked Sendable: AsyncHTTPClient calls a delegate on its event loop only; `takeBody` is
    // called after the reply's future completed.
    typealias Response = RemoteRegistry.Reply
    private var status = 0
    private var headers = HTTPHeaders()
    private var body: ReceiveBuffer?

    /// The body, once the reply is complete (to be given back to ``ReceiveBuffers``).
    func takeBody() -> ReceiveBuffer {
        defer { body = nil }
        return body ?? ReceiveBuffers.shared.take(capacity: 0)
    }

    func didReceiveHead(task: HTTPClient.Task<Response>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status = Int(head.status.code)
        headers = head.headers
        body = ReceiveBuffers.shared.take(capacity: head.headers.first(name: "content-length").flatMap { Int($0) } ?? 0)
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: HTTPClient.Task<Response>, _ part: ByteBuffer) -> EventLoopFuture<Void> {
        if body == nil { body = ReceiveBuffers.shared.take(capacity: part.readableBytes) }
        part.withUnsafeReadableBytes { body!.append($0) }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didFinishRequest(task: HTTPClient.Task<Response>) throws -> Response {
        // Error replies are small: they carry their body; a bundle stays here for takeBody().
        guard status >= 400 else { return Response(status: status, headers: headers, body: ByteBuffer()) }
        let error = takeBody()
        defer { ReceiveBuffers.shared.give(error) }
        return Response(status: status, headers: headers, body: error.byteBuffer())
    }
}

/// The server as a source of chunks for a restore from the cache: one `POST /v1/chunks/fetch` per
/// batch within the server's limits, started at once and waited for when the restore needs it.
struct ServerChunks: ChunkFetcher {
    let remote: RemoteRegistry
    let config: ServerConfig

    func startFetch(_ chunks: [ChunkRef]) throws -> [any PendingBundle] { try startFetch(chunks, deltas: false) }

    /// With `deltas`, chunks the server stores as deltas come as such (``ChunkBundle/parse(_:maxChunk:allowingDeltas:)``).
    func startFetch(_ chunks: [ChunkRef], deltas: Bool) throws -> [any PendingBundle] {
        let batches = RemoteRegistry.batches(
            chunks.map { Int($0.length) }, limit: max(config.maxBatchBytes / 2, config.chunker.max), maxCount: config.maxBatchIDs)
        if let sockets = remote.socketClient {
            return batches.map { sockets.fetch(ChunkIDList.encode(chunks[$0].map(\.id)), deltas: deltas) }
        }
        return try batches.map { range in
            let batch = chunks[range].map(\.id)
            let collector = PooledReplyCollector()
            return FetchedBundle(
                remote: remote, collector: collector,
                future: try remote.start(
                    .POST, "/v1/chunks/fetch" + (deltas ? "?deltas=1" : ""), body: .bytes(ChunkIDList.encode(batch)),
                    contentType: "application/octet-stream",
                    collector: collector))
        }
    }
}

/// A `POST /v1/chunks/fetch` on its way; its reply is kept once it has arrived.
final class FetchedBundle: PendingBundle, @unchecked Sendable {
    // @unchecked Sendable: used by one thread at a time (the restore's read loop, then its stager).
    private let remote: RemoteRegistry
    private let collector: PooledReplyCollector
    private let future: EventLoopFuture<RemoteRegistry.Reply>
    private var body: ReceiveBuffer?

    init(remote: RemoteRegistry, collector: PooledReplyCollector, future: EventLoopFuture<RemoteRegistry.Reply>) {
        self.remote = remote
        self.collector = collector
        self.future = future
    }

    deinit {
        if let body { ReceiveBuffers.shared.give(body) }
    }

    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        if self.body == nil {
            _ = try remote.finish(future)  // throws the server's error for an error reply
            self.body = collector.takeBody()
        }
        return try body(self.body!.bytes)
    }
}
