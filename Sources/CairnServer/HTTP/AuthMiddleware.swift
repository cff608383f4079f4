import CairnRegistry
import Digest
import Hummingbird

/// Establishes who is asking from `Authorization: Bearer TOKEN`. Without a token, requests under
/// /v1 are refused (401) unless the server allows public reads, and `/metrics` unless it allows
/// public metrics; an unknown or revoked token is always refused. Each route then checks the role it needs (``CairnRequestContext/require(_:_:)``).
struct AuthMiddleware: RouterMiddleware {
    typealias Context = CairnRequestContext
    let server: CairnServer
    /// Token records by the SHA-256 of their token (nil: unknown or revoked), valid while the
    /// index generation is unchanged: a token created or revoked moves it on.
    private let known = GenerationCache<TokenRecord?>()

    init(server: CairnServer) { self.server = server }

    func handle(
        _ request: Request,
        context: Context,
        next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let metrics = request.uri.path == "/metrics"
        guard request.uri.path.hasPrefix("/v1/") || metrics else { return try await next(request, context) }
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
            guard let record = try await authenticate(String(token)) else {
                throw APIError.unauthenticated("unknown or revoked token")
            }
            context.identity = record
        } else if metrics {
            guard server.options.publicMetrics else {
                throw APIError.unauthenticated("/metrics needs a token of any role (or cairn serve --public-metrics)")
            }
        } else if !server.options.publicRead {
            throw APIError.unauthenticated(
                "this server needs a token: pass --token or set CAIRN_TOKEN (cairn token create)"
            )
        }
        return try await next(request, context)
    }

    /// The record a bearer token names, nil if it is unknown or revoked. Every request with a token
    /// asks, so a known token is answered from memory on the request's thread (a hash, a lock and
    /// `mdb_env_info`); only the first request after a change reads the tokens table, on the
    /// blocking threads.
    private func authenticate(_ token: String) async throws -> TokenRecord? {
        let key = SHA256Digest.hash(Array(token.utf8)).hex
        let generation = server.generation
        if let hit = known.get(key, generation: generation) { return hit }
        let registry = server.registry
        let record = try await server.blocking { try registry.authenticate(token: token) }
        known.put(key, record, generation: generation)
        return record
    }
}
