import CairnRegistry
import CairnAPI
import CairnStore
import Digest
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// How a server runs: where it listens, what anonymous clients may do, and its limits.
public struct ServerOptions: Sendable {
    public var host: String
    public var port: Int
    /// Allow reads without a token (writes always need one).
    public var publicRead: Bool
    /// Largest chunk bundle accepted by `POST /v1/chunks` and returned by `POST /v1/chunks/fetch`.
    public var maxBatchBytes: Int
    /// Largest number of ids in one chunk id list.
    public var maxBatchIDs: Int
    /// Largest JSON body (a version's manifest travels in one).
    public var maxJSONBytes: Int
    /// Threads for blocking store work (writes, chunk transfers, file reads).
    public var threads: Int

    public init(
        host: String = "127.0.0.1",
        port: Int = 8080,
        publicRead: Bool = false,
        maxBatchBytes: Int = 33 << 20,
        maxBatchIDs: Int = 65536,
        maxJSONBytes: Int = 64 << 20,
        threads: Int = 8
    ) {
        self.host = host
        self.port = port
        self.publicRead = publicRead
        self.maxBatchBytes = maxBatchBytes
        self.maxBatchIDs = maxBatchIDs
        self.maxJSONBytes = maxJSONBytes
        self.threads = threads
    }
}

/// The request context of the server's routes: Hummingbird's core storage plus the identity the
/// bearer token established (nil for an anonymous read on a `--public-read` server).
public struct CairnRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: TokenRecord?
    /// The connection the request came on.
    public let channel: any Channel

    public init(source: Source) {
        coreContext = .init(source: source)
        identity = nil
        channel = source.channel
    }

    /// Bodies are collected with each route's own limit.
    public var maxUploadSize: Int { 64 << 20 }
}

/// A value cache that is valid while the store's index generation is unchanged (any commit, by
/// any process, moves the generation on and so empties the cache).
final class GenerationCache<Value: Sendable>: Sendable {
    private struct State {
        var generation = -1
        var entries: [String: Value] = [:]
    }

    private let state = Mutex(State())
    private let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    func get(_ key: String, generation: Int) -> Value? {
        state.withLock { $0.generation == generation ? $0.entries[key] : nil }
    }

    /// Stores a value computed from a snapshot taken after `generation` was read.
    func put(_ key: String, _ value: Value, generation: Int) {
        state.withLock { s in
            if generation > s.generation {
                s.generation = generation
                s.entries.removeAll(keepingCapacity: true)
            }
            guard generation == s.generation else { return }
            if s.entries.count >= capacity { s.entries.removeAll(keepingCapacity: true) }
            s.entries[key] = value
        }
    }
}

/// The server: the registry, a thread pool for blocking store work, caches and metrics. Build its
/// application with ``buildApplication(server:logger:onServerRunning:)``.
public final class CairnServer: Sendable {
    public let registry: Registry
    public let options: ServerOptions
    public let metrics = ServerMetrics()
    let pool: NIOThreadPool
    let logger: Logger
    let versionCache = GenerationCache<ByteBuffer>()
    let tokenCache = GenerationCache<TokenRecord?>()
    let statsCache = GenerationCache<RegistryStatistics>(capacity: 1)
    let uploads = UploadTable()
    /// Buffers of the chunk bundles sent in replies to fetches.
    let fetchReplyBuffers = FetchReplyBuffers()
    let fileBodies = FileBodies()
    /// Memory for the chunk bundles received in uploads.
    let uploadBodies = UploadBodies()
    let config: ServerConfig

    public init(registry: Registry, options: ServerOptions, logger: Logger = Logger(label: "cairn.server")) {
        self.registry = registry
        self.options = options
        self.logger = logger
        pool = NIOThreadPool(numberOfThreads: max(2, options.threads))
        pool.start()
        let store = registry.store.config
        config = ServerConfig(
            chunker: store.chunker,
            compressionLevel: store.compression.level,
            maxBatchBytes: options.maxBatchBytes,
            maxBatchIDs: options.maxBatchIDs,
            version: "0.1.0"
        )
    }

    deinit {
        pool.shutdownGracefully { _ in }
    }

    /// Runs blocking store work (LMDB write commits, pack I/O, file reads) on the server's thread
    /// pool, never on an event loop.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }

    var generation: Int { (try? registry.store.indexGeneration()) ?? -1 }

    /// The token record a bearer token names (cached per index generation), nil if unknown or revoked.
    func authenticate(_ token: String) throws -> TokenRecord? {
        let key = SHA256Digest.hash(Array(token.utf8)).hex
        let generation = self.generation
        if let hit = tokenCache.get(key, generation: generation) { return hit }
        let record = try registry.authenticate(token: token)
        tokenCache.put(key, record, generation: generation)
        return record
    }

    /// Store-wide figures for `/metrics` (recomputed only after a change).
    func statistics() async throws -> RegistryStatistics {
        let generation = self.generation
        if let hit = statsCache.get("stats", generation: generation) { return hit }
        let registry = self.registry
        let stats = try await blocking { try registry.statistics() }
        statsCache.put("stats", stats, generation: generation)
        return stats
    }
}

/// The router with every route of the API (see docs/http-api.md).
public func buildRouter(server: CairnServer) -> Router<CairnRequestContext> {
    let router = Router(context: CairnRequestContext.self)
    router.addMiddleware {
        RequestMiddleware(server: server)
        AuthMiddleware(server: server)
    }
    router.get("/healthz") { _, _ in
        jsonResponse(["status": "ok"])
    }
    router.get("/metrics") { _, _ -> Response in
        let stats = try? await server.statistics()
        var headers = HTTPFields()
        headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
        return Response(
            status: .ok,
            headers: headers,
            body: .init(byteBuffer: ByteBuffer(string: server.metrics.render(store: stats)))
        )
    }
    let v1 = router.group("v1")
    addQueryRoutes(v1, server: server)
    addChangeRoutes(v1, server: server)
    addChunkRoutes(v1, server: server)
    addFileRoutes(v1, server: server)
    addAdminRoutes(v1, server: server)
    // Anything else: a JSON 404 like every other error.
    let unknown: @Sendable (Request, CairnRequestContext) async throws -> Response = { request, _ in
        throw APIError.notFound("no route \(request.method.rawValue) \(request.uri.path) (see docs/http-api.md)")
    }
    for method in [HTTPRequest.Method.get, .head, .post, .put, .delete, .patch] {
        router.on("**", method: method, use: unknown)
    }
    return router
}

/// The application: the router on `options.host:options.port`, shutting down gracefully (in-flight
/// requests finish) on SIGTERM or SIGINT when run with `runService()`.
public func buildApplication(
    server: CairnServer,
    logger: Logger? = nil,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        router: buildRouter(server: server),
        server: .http1(
            configuration: .init(
                additionalChannelHandlers: [LargeReads(), FileBodyWriter(bodies: server.fileBodies), WholeReplies()])),
        configuration: .init(address: .hostname(server.options.host, port: server.options.port), serverName: "cairn"),
        onServerRunning: onServerRunning,
        logger: logger ?? server.logger
    )
}

/// Lets a connection read up to 1 MiB per read (NIO's default stops at 64 KiB): chunk uploads are
/// megabytes, and each read costs a pass through the HTTP decoder and the request body stream.
final class LargeReads: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = Never

    func handlerAdded(context: ChannelHandlerContext) {
        context.channel.setOption(
            ChannelOptions.recvAllocator, value: AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 1 << 20)
        ).whenComplete { _ in }
    }
}

// MARK: Middleware

/// Outermost: turns every error into the API's JSON error, records metrics, logs each request
/// (writes at info, reads at debug) with the authenticated user.
struct RequestMiddleware: RouterMiddleware {
    typealias Context = CairnRequestContext
    let server: CairnServer

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        server.metrics.begin()
        var response: Response
        var failure: APIError?
        do {
            response = try await next(request, context)
        } catch {
            let apiError = APIError.from(error)
            failure = apiError
            response = try apiError.response(from: request, context: context)
        }
        let route = context.endpointPath ?? "unknown"
        let bytesIn = request.headers[.contentLength].flatMap { Int($0) } ?? 0
        let bytesOut = request.method == .head ? 0 : (response.body.contentLength ?? 0)
        server.metrics.record(
            route: route,
            method: request.method.rawValue,
            status: Int(response.status.code),
            bytesIn: bytesIn,
            bytesOut: bytesOut
        )
        let isWrite = request.method != .get && request.method != .head
        let level: Logger.Level = failure.map { $0.status.code >= 500 ? .error : .info } ?? (isWrite ? .info : .debug)
        if server.logger.logLevel <= level {
            let elapsed = ContinuousClock.now - start
            var metadata: Logger.Metadata = [
                "method": "\(request.method.rawValue)", "path": "\(request.uri.path)",
                "status": "\(response.status.code)",
                "ms":
                    "\(Double(elapsed.components.attoseconds / 1_000_000_000_000) / 1000 + Double(elapsed.components.seconds) * 1000)",
            ]
            if let user = context.identity?.user { metadata["user"] = "\(user)" }
            if let failure { metadata["error"] = "\(failure.code): \(failure.message)" }
            server.logger.log(level: level, "request", metadata: metadata)
        }
        return response
    }
}

/// Establishes who is asking from `Authorization: Bearer TOKEN`. Without a token, requests under
/// /v1 are refused (401) unless the server allows public reads; an unknown or revoked token is
/// always refused. Each route then checks the role it needs (``CairnRequestContext/require(_:_:)``).
struct AuthMiddleware: RouterMiddleware {
    typealias Context = CairnRequestContext
    let server: CairnServer

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        guard request.uri.path.hasPrefix("/v1/") else { return try await next(request, context) }
        var context = context
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw APIError.unauthenticated("the Authorization header must be `Bearer TOKEN`")
            }
            // Trimmed without Foundation's `trimmingCharacters`, which was 6% of a lookup's CPU time.
            var token = parts[1]
            while let first = token.first, first == " " || first == "\t" { token.removeFirst() }
            while let last = token.last, last == " " || last == "\t" { token.removeLast() }
            guard let record = try server.authenticate(String(token)) else {
                throw APIError.unauthenticated("unknown or revoked token")
            }
            context.identity = record
        } else if !server.options.publicRead {
            throw APIError.unauthenticated(
                "this server needs a token: pass --token or set CAIRN_TOKEN (cairn token create)"
            )
        }
        return try await next(request, context)
    }
}

extension CairnRequestContext {
    /// The acting user if the request's identity has at least `role`; throws 401/403 otherwise.
    /// Anonymous requests (public-read servers) may only read.
    @discardableResult
    func require(_ role: Role, _ what: @autoclosure () -> String) throws -> String {
        guard let identity else {
            if role == .reader { return "anonymous" }
            throw APIError.unauthenticated("\(what()) needs a token with role \(role.rawValue) or higher")
        }
        guard identity.role >= role else {
            throw APIError.forbidden(
                "\(identity.user) (\(identity.role.rawValue)) cannot \(what()): it needs role \(role.rawValue)"
            )
        }
        return identity.user
    }

    /// A path parameter, percent-decoded (a model `org/name` travels as `org%2Fname`).
    func parameter(_ name: String) throws -> String {
        guard let raw = parameters.get(name) else { throw APIError.badRequest("missing path parameter \(name)") }
        if !raw.utf8.contains(UInt8(ascii: "%")) { return raw }  // most names: nothing to decode
        guard let decoded = raw.removingPercentEncoding else {
            throw APIError.badRequest("malformed percent-encoding in \(raw)")
        }
        return decoded
    }
}

// MARK: Helpers

func jsonEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}

func jsonBuffer(_ value: some Encodable) throws -> ByteBuffer {
    ByteBuffer(bytes: try jsonEncoder().encode(value))
}

func jsonResponse(_ buffer: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json; charset=utf-8"
    return Response(status: status, headers: headers, body: .init(byteBuffer: buffer))
}

func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
    do {
        return jsonResponse(try jsonBuffer(value), status: status)
    } catch {
        return Response(status: .internalServerError)
    }
}

func binaryResponse(_ bytes: [UInt8]) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/octet-stream"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}

/// Buffers of chunk bundles sent in replies to fetches where the connection cannot send file bodies
/// (``FileBodies``; a router under test), kept for reuse: bundles are megabytes
/// each, and a fresh buffer per request costs a page fault per 4 KiB. At most four are kept. A
/// buffer given back while something still holds it (a reply still being sent) gets new storage
/// on its next use, never shared.
final class FetchReplyBuffers: Sendable {
    private let free = Mutex<[ByteBuffer]>([])

    /// An empty buffer of at least `capacity` bytes.
    func take(capacity: Int) -> ByteBuffer {
        var buffer = free.withLock { $0.popLast() } ?? ByteBufferAllocator().buffer(capacity: capacity)
        buffer.clear(minimumCapacity: capacity)
        return buffer
    }

    /// Gives back a buffer taken with ``take(capacity:)`` once nothing reads it any more.
    func recycle(_ buffer: ByteBuffer) {
        free.withLock { if $0.count < 4 { $0.append(buffer) } }
    }
}

/// Memory for the request bodies of chunk uploads, kept for reuse (at most four): a fresh buffer
/// per bundle cost a page fault per 4 KiB. Unlike a ByteBuffer, whose storage is replaced when it
/// is written while anything else still holds it, a body's memory goes back to the pool exactly
/// when its request is done with it (``give(_:)``).
final class UploadBodies: Sendable {
    /// `count` bytes received into `memory`.
    final class Body: @unchecked Sendable {
        // @unchecked Sendable: filled by the request's task, then read by one blocking call.
        let memory: UnsafeMutableRawBufferPointer
        var count = 0

        init(capacity: Int) { memory = .allocate(byteCount: capacity, alignment: 64) }
        deinit { memory.deallocate() }

        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: memory[0..<count]) }
    }

    private let free = Mutex<[Body]>([])

    /// An empty body of at least `capacity` bytes (rounded up to 4 MiB, so that kept bodies fit
    /// bundles of slightly different sizes).
    func take(capacity: Int) -> Body {
        let kept = free.withLock { bodies -> Body? in
            guard let i = bodies.firstIndex(where: { $0.memory.count >= capacity }) else { return nil }
            return bodies.remove(at: i)
        }
        let body = kept ?? Body(capacity: max(1, (capacity + (4 << 20) - 1) / (4 << 20)) * (4 << 20))
        body.count = 0
        return body
    }

    func give(_ body: Body) {
        free.withLock { if $0.count < 4 { $0.append(body) } }
    }
}

extension Request {
    /// The body of a chunk upload, at most `limit` bytes (413 beyond), in memory from `pool`
    /// (give it back with ``UploadBodies/give(_:)``).
    mutating func uploadBody(upTo limit: Int, pool: UploadBodies) async throws -> UploadBodies.Body {
        guard let length = headers[.contentLength].flatMap({ Int($0) }) else {
            let buffer = try await body(upTo: limit)
            let body = pool.take(capacity: buffer.readableBytes)
            buffer.withUnsafeReadableBytes { body.memory.copyMemory(from: $0) }
            body.count = buffer.readableBytes
            return body
        }
        guard length <= limit else {
            throw APIError(.tooLarge, "the request body (\(length) bytes) is over the limit of \(limit) bytes")
        }
        let body = pool.take(capacity: length)
        do {
            for try await part in self.body {
                guard body.count + part.readableBytes <= length else {
                    throw APIError(.invalidArgument, "the request body is longer than its Content-Length")
                }
                part.withUnsafeReadableBytes {
                    UnsafeMutableRawBufferPointer(rebasing: body.memory[body.count...]).copyMemory(from: $0)
                }
                body.count += part.readableBytes
            }
            guard body.count == length else {
                throw APIError(.invalidArgument, "the request body is shorter than its Content-Length")
            }
        } catch {
            pool.give(body)
            throw error
        }
        return body
    }

    /// The body, at most `limit` bytes (413 beyond).
    mutating func body(upTo limit: Int) async throws -> ByteBuffer {
        if let length = headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.tooLarge, "the request body (\(length) bytes) is over the limit of \(limit) bytes"
            )
        }
        if let length = headers[.contentLength].flatMap({ Int($0) }), length > 64 << 10 {
            // Known size: one allocation of it, no regrowing (bodies of manifests can be megabytes).
            var buffer = ByteBufferAllocator().buffer(capacity: length)
            for try await part in self.body {
                guard buffer.readableBytes + part.readableBytes <= length else {
                    throw APIError(.invalidArgument, "the request body is longer than its Content-Length")
                }
                buffer.writeImmutableBuffer(part)
            }
            return buffer
        }
        do {
            return try await collectBody(upTo: limit)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            throw APIError(.tooLarge, "the request body is over the limit of \(limit) bytes")
        }
    }

    /// The JSON body decoded as `type`.
    mutating func json<T: Decodable>(_ type: T.Type, limit: Int = 1 << 20) async throws -> T {
        let buffer = try await body(upTo: limit)
        return try JSONDecoder().decode(type, from: Data(buffer.readableBytesView))
    }

    /// Query parameter values for `name`.
    func queryAll(_ name: String) -> [String] {
        uri.queryParameters.getAll(name).map { String($0) }
    }

    func query(_ name: String) -> String? {
        uri.queryParameters.get(name).map { String($0) }
    }
}

/// Parses the `{ref}` of a version route: a number, `latest`, a stage or an alias.
func reference(model: String, ref: String) throws -> Reference {
    try Reference(parsing: ref == "latest" ? model : "\(model)@\(ref)")
}

/// Open uploads (`POST /v1/uploads`): chunks staged for a push until its version commits them. Each
/// belongs to the user who opened it; uploads idle for 30 minutes are abandoned, and at most 256
/// are open at once.
final class UploadTable: Sendable {
    private struct Entry {
        var upload: ChunkUpload
        var user: String
        var lastUsed: ContinuousClock.Instant
    }

    private let table = Mutex<[String: Entry]>([:])
    static let idleLimit: Duration = .seconds(1800)
    static let capacity = 256

    /// Opens an upload for `user`; returns its id.
    func open(store: Store, user: String) throws -> String {
        expire()
        let upload = try ChunkUpload(store: store)
        var generator = SystemRandomNumberGenerator()
        let id = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        try table.withLock { entries in
            guard entries.count < Self.capacity else {
                throw APIError(.conflict, "too many open uploads; try again later")
            }
            entries[id] = Entry(upload: upload, user: user, lastUsed: .now)
        }
        return id
    }

    /// The open upload `id` of `user`.
    func get(_ id: String, user: String) throws -> ChunkUpload {
        try table.withLock { entries in
            guard var entry = entries[id] else {
                throw APIError.notFound("no open upload \(id) (it was committed, abandoned or expired)")
            }
            guard entry.user == user else { throw APIError.forbidden("upload \(id) belongs to another user") }
            entry.lastUsed = .now
            entries[id] = entry
            return entry.upload
        }
    }

    /// Forgets an upload (abandoning it unless it was committed).
    func close(_ id: String) {
        let entry = table.withLock { $0.removeValue(forKey: id) }
        entry?.upload.abandon()
    }

    private func expire() {
        let now = ContinuousClock.now
        let stale = table.withLock { entries -> [ChunkUpload] in
            let old = entries.filter { now - $0.value.lastUsed > Self.idleLimit }
            for key in old.keys { entries.removeValue(forKey: key) }
            return old.values.map(\.upload)
        }
        for upload in stale { upload.abandon() }
    }
}
