import Hummingbird
import Logging

/// Outermost: turns every error into the API's JSON error (``APIError``), records metrics, logs
/// each request (writes at info, reads at debug, failures at info or error) with the authenticated
/// user.
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
