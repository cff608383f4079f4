import AsyncHTTPClient
import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

// The HTTP side of the client: requests, replies, the errors replies carry, API paths.
extension RemoteRegistry {
    // MARK: Requests and replies

    /// A reply: its status, headers and body (whole; empty for bundles a ``PooledReplyCollector``
    /// keeps).
    struct Reply {
        var status: Int
        var headers: HTTPHeaders
        var body: ByteBuffer

        var data: Data { Data(body.readableBytesView) }
    }

    /// A request to `path` (under ``baseURL``) with the client's headers: user agent and token.
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
        query.isEmpty
            ? "" : "?" + query.map { "\(PathSegment.encode($0.0))=\(PathSegment.encode($0.1))" }.joined(separator: "&")
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

    /// Like ``start(_:_:query:body:contentType:headers:)``, with the reply read by `collector`.
    func start(
        _ method: HTTPMethod,
        _ path: String,
        body: HTTPClient.Body? = nil,
        contentType: String? = nil,
        collector: PooledReplyCollector
    ) throws -> EventLoopFuture<PooledReplyCollector.Collected> {
        client.execute(
            request: try makeRequest(method, path, body: body, contentType: contentType),
            delegate: collector
        ).futureResult
    }

    /// Waits for a started request, blocking the thread (see "Blocking calls" on
    /// ``RemoteRegistry``); throws the server's error for a status of 400 or more.
    func finish(_ future: EventLoopFuture<HTTPClient.Response>) throws -> Reply {
        let response = try wait(for: future)
        let reply = Reply(
            status: Int(response.status.code),
            headers: response.headers,
            body: response.body ?? ByteBuffer()
        )
        if reply.status >= 400 { throw Self.error(from: reply) }
        return reply
    }

    /// Waits for a started request, blocking the thread; throws only when there is no reply (the
    /// server could not be reached or did not answer in time).
    func wait<Value: Sendable>(for future: EventLoopFuture<Value>) throws -> Value {
        do {
            return try future.wait()
        } catch {
            throw noReply(error)
        }
    }

    /// The error of a call that got no reply: the server did not answer in time, or could not be
    /// reached.
    private func noReply(_ error: any Error) -> RemoteError {
        if let error = error as? HTTPClientError, error == .readTimeout {
            return .timedOut(baseURL, after: "5 minutes")
        }
        return .unreachable(baseURL, Self.reason(error))
    }

    /// Why a connection failed, in words: "connection refused", "unknown host example.org".
    static func reason(_ error: any Error) -> String {
        switch error {
        case let error as IOError: return String(cString: strerror(error.errnoCode)).lowercased()
        case let error as NIOConnectionError:
            if let first = error.connectionErrors.first { return reason(first.error) }
            return "unknown host \(error.host)"
        case let error as HTTPClientError where error == .connectTimeout: return "no connection within 10 seconds"
        default: return "\(error)"
        }
    }

    /// Starts a request and waits for its reply; throws the server's error for a status of 400 or
    /// more.
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

    /// An empty JSON object as a request body.
    struct Empty: Codable {}

    /// The error an error reply carries: its code (``ErrorCode/init(code:status:)``), message and
    /// missing chunks, or for a body that is not the API's error JSON, the status's code.
    static func error(from reply: Reply) -> RemoteError {
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

    // MARK: Paths

    /// `/v1/models/{model}`.
    static func modelPath(_ model: String) -> String { "/v1/models/" + PathSegment.encode(model) }

    /// `/v1/models/{model}/versions/{ref}`: a number, `latest`, a stage or an alias.
    static func versionPath(_ reference: Reference) -> String {
        let ref: String =
            switch reference.selector {
            case .latest: "latest"
            case .number(let n): "\(n)"
            case .name(let name): name
            }
        return modelPath(reference.model) + "/versions/" + PathSegment.encode(ref)
    }

    /// `/v1/models/{model}/versions/{number}`.
    static func versionPath(_ version: VersionRecord) -> String {
        modelPath(version.model) + "/versions/\(version.version)"
    }

    // MARK: Chunk transfers

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

    /// Raw bytes of chunks per bundle the server takes or sends: half its body limit (a bundle of
    /// incompressible chunks is a little larger than their bytes), at least one chunk of the
    /// largest size.
    static func serverBatchLimit(_ config: ServerConfig) -> Int {
        max(config.maxBatchBytes / 2, config.chunker.max)
    }

    /// Raw bytes of chunks per bundle this client uploads or fetches: its batch size, within the
    /// server's limit.
    func batchLimit(_ config: ServerConfig) -> Int { min(batchRawBytes, Self.serverBatchLimit(config)) }

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
}
