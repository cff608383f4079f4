import CairnAPI
import CairnRegistry
import CairnStore
import Foundation
import Hummingbird
import NIOCore

/// An error answered as `{"error":{"code":…,"message":…}}` (and `missing` for `missing_chunks`),
/// with the status of its code (``ErrorCode/httpStatus``, defined once in CairnAPI):
///
/// | status | code |
/// |---|---|
/// | 400 | `invalid_argument` (malformed name, reference, JSON, bundle, id list, path) |
/// | 401 | `unauthenticated` (no token, or an unknown or revoked one) |
/// | 403 | `forbidden` (the token's role does not allow it) |
/// | 404 | `not_found` (model, version, alias, file, manifest, upload, route) |
/// | 409 | `conflict` (too many open uploads), `missing_chunks` (a manifest references chunks not stored; `missing` lists them) |
/// | 413 | `too_large` (a body over its route's limit) |
/// | 416 | `range_not_satisfiable` (with `Content-Range: bytes */SIZE`) |
/// | 422 | `refused` (a gate, a forbidden stage move), `chunk_mismatch` (a chunk that does not hash to its id), `manifest_mismatch` (a manifest that does not hash to the id given with it) |
/// | 500 | `corruption`, `io`, `internal` |
/// | 503 | `unreachable` (the connection closed before a chunk fetch's reply; no client sees it) |
///
/// `bad_response` (502) is the client's code for a reply it cannot read; the server never sends
/// it. An error Hummingbird raises itself (405 for a method a route does not take, say) keeps its
/// status, with the code ``ErrorCode/init(code:status:)`` gives that status.
struct APIError: HTTPResponseError, CodedError {
    var code: ErrorCode
    var message: String
    /// The chunk ids a `missing_chunks` error lists.
    var missing: [String]?
    /// Headers of the reply (`WWW-Authenticate`, `Content-Range`).
    var headers: HTTPFields = [:]
    /// The reply's status: the code's own (``ErrorCode/httpStatus``) unless a foreign HTTP error
    /// (a method not allowed, say) brought its own.
    var status: HTTPResponse.Status

    init(_ code: ErrorCode, _ message: String, missing: [String]? = nil) {
        self.code = code
        self.message = message
        self.missing = missing
        self.status = HTTPResponse.Status(code: code.httpStatus)
    }

    var description: String { "\(status.code) \(code.rawValue): \(message)" }

    /// The JSON reply.
    ///
    /// - Throws: `EncodingError` (never, for these strings).
    func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = try JSONEncoder().encode(ErrorBody(code: code.rawValue, message: message, missing: missing))
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// 401, asking for a bearer token (`WWW-Authenticate: Bearer realm="cairn"`).
    static func unauthenticated(_ message: String) -> APIError {
        var e = APIError(.unauthenticated, message)
        e.headers[.wwwAuthenticate] = "Bearer realm=\"cairn\""
        return e
    }

    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, message) }

    static func badRequest(_ message: String) -> APIError { APIError(.invalidArgument, message) }

    static func notFound(_ message: String) -> APIError { APIError(.notFound, message) }

    /// The API error for any error a handler threw.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError:
            return e
        case let e as MissingChunksError:
            return APIError(.missingChunks, e.message, missing: e.ids.map(\.hex))
        case let e as any CodedError:
            return APIError(e.code, e.message)
        case let e as DecodingError:
            return APIError(.invalidArgument, "malformed JSON body: \(Self.describe(e))")
        case let e as HTTPError:
            let code = ErrorCode(code: nil, status: Int(e.status.code))
            var mapped = APIError(
                code,
                e.body ?? (code == .tooLarge ? "the request body is too large" : e.status.reasonPhrase)
            )
            mapped.status = e.status
            return mapped
        case let e as any HTTPResponseError:
            var mapped = APIError(ErrorCode(code: nil, status: Int(e.status.code)), "\(e)")
            mapped.status = e.status
            return mapped
        default:
            return APIError(.internal, "\(error)")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        switch error {
        case .keyNotFound(let key, _): "missing field \(key.stringValue)"
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
            (c.codingPath.isEmpty ? "" : c.codingPath.map(\.stringValue).joined(separator: ".") + ": ")
                + c.debugDescription
        @unknown default: "\(error)"
        }
    }
}
