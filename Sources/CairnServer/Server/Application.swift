import Hummingbird
import Logging
import NIOCore

/// The application that runs `server`: its router on `options.host:options.port` over HTTP/1.1,
/// shutting down gracefully (requests in flight finish) on SIGTERM or SIGINT when run with
/// `runService()`.
///
/// ```swift
/// let app = buildApplication(server: server) { channel in
///     print("listening on port", channel.localAddress?.port ?? 0)
/// }
/// try await app.runService()
/// ```
///
/// - Parameters:
///   - server: the server whose routes the application answers.
///   - logger: where the application logs; the server's logger if nil.
///   - onServerRunning: called once the server listens, with its channel.
/// - Returns: the application. It throws nothing itself; `runService()` throws what binding the
///   address throws (NIO's `IOError`, an address in use say).
public func buildApplication(
    server: CairnServer,
    logger: Logger? = nil,
    onServerRunning: @escaping @Sendable (any Channel) async -> Void = { _ in }
) -> some ApplicationProtocol {
    Application(
        router: buildRouter(server: server),
        server: .http1(
            configuration: .init(
                additionalChannelHandlers: [LargeReads(), FileBodyWriter(bodies: server.fileBodies), WholeReplies()])
        ),
        configuration: .init(address: .hostname(server.options.host, port: server.options.port), serverName: "cairn"),
        onServerRunning: onServerRunning,
        logger: logger ?? server.logger
    )
}

/// The router: `/healthz`, `/metrics`, and the adapters' routes (the /v1 API, docs/http-api.md),
/// behind the middleware every request goes through (errors, metrics, logs, then the bearer token).
func buildRouter(server: CairnServer) -> Router<CairnRequestContext> {
    let router = Router(context: CairnRequestContext.self)
    router.addMiddleware {
        RequestMiddleware(server: server)
        AuthMiddleware(server: server)
    }
    router.get("/healthz") { _, _ in
        try jsonResponse(["status": "ok"])
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
    addV1Routes(router.group("v1"), server: server)
    // Anything else: a JSON 404 like every other error.
    let unknown: @Sendable (Request, CairnRequestContext) async throws -> Response = { request, _ in
        throw APIError.notFound("no route \(request.method.rawValue) \(request.uri.path) (see docs/http-api.md)")
    }
    for method in [HTTPRequest.Method.get, .head, .post, .put, .delete, .patch] {
        router.on("**", method: method, use: unknown)
    }
    return router
}
