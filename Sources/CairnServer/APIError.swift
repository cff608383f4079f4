import CairnRegistry
import CairnRemote
import CairnStore
import Foundation
import Hummingbird
import NIOCore

/// An error answered as `{"error":{"code":…,"message":…}}` with a fitting status.
///
/// | status | code |
/// |---|---|
/// | 400 | `invalid_argument` (malformed name, reference, JSON, bundle) |
/// | 401 | `unauthenticated` (no token, or an unknown or revoked one) |
/// | 403 | `forbidden` (the token's role does not allow it) |
/// | 404 | `not_found` |
/// | 409 | `conflict`, `missing_chunks` (a manifest references chunks not stored; `missing` lists them) |
/// | 413 | `too_large` (a body over its route's limit) |
/// | 416 | `range_not_satisfiable` |
/// | 422 | `refused` (a gate, a forbidden stage move), `chunk_mismatch` (a chunk that does not hash to its id) |
/// | 500 | `corruption`, `io`, `internal` |
public struct APIError: HTTPResponseError, CustomStringConvertible, Sendable {
    public var status: HTTPResponse.Status
    public var code: String
    public var message: String
    public var missing: [String]?
    public var headers: HTTPFields = [:]

    public init(_ status: HTTPResponse.Status, _ code: String, _ message: String, missing: [String]? = nil) {
        self.status = status
        self.code = code
        self.message = message
        self.missing = missing
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        let body = try JSONEncoder().encode(ErrorBody(code: code, message: message, missing: missing))
        var headers = self.headers
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func unauthenticated(_ message: String) -> APIError {
        var e = APIError(.unauthorized, "unauthenticated", message)
        e.headers[.wwwAuthenticate] = "Bearer realm=\"cairn\""
        return e
    }

    static func forbidden(_ message: String) -> APIError { APIError(.forbidden, "forbidden", message) }

    static func badRequest(_ message: String) -> APIError { APIError(.badRequest, "invalid_argument", message) }

    static func notFound(_ message: String) -> APIError { APIError(.notFound, "not_found", message) }

    /// The API error for any error a handler threw.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError:
            return e
        case let e as RegistryError:
            switch e.code {
            case .notFound: return APIError(.notFound, "not_found", e.message)
            case .invalidArgument: return APIError(.badRequest, "invalid_argument", e.message)
            case .refused: return APIError(.unprocessableContent, "refused", e.message)
            case .conflict: return APIError(.conflict, "conflict", e.message)
            case .corruption: return APIError(.internalServerError, "corruption", e.message)
            case .io: return APIError(.internalServerError, "io", e.message)
            }
        case let e as MissingChunksError:
            return APIError(.conflict, "missing_chunks", e.description, missing: e.ids.map(\.hex))
        case let e as CairnStoreError:
            switch e.code {
            case .notFound: return APIError(.notFound, "not_found", e.message)
            case .invalidArgument, .unsafePath: return APIError(.badRequest, "invalid_argument", e.message)
            case .corruption: return APIError(.internalServerError, "corruption", e.message)
            case .io: return APIError(.internalServerError, "io", e.message)
            case .alreadyExists, .conflict: return APIError(.conflict, "conflict", e.message)
            }
        case let e as DecodingError:
            return APIError(.badRequest, "invalid_argument", "malformed JSON body: \(Self.describe(e))")
        case let e as HTTPError:
            switch e.status {
            case .contentTooLarge:
                return APIError(.contentTooLarge, "too_large", e.body ?? "the request body is too large")
            case .notFound: return APIError(.notFound, "not_found", e.body ?? "not found")
            case .badRequest: return APIError(.badRequest, "invalid_argument", e.body ?? "bad request")
            default: return APIError(e.status, "http_\(e.status.code)", e.body ?? e.status.reasonPhrase)
            }
        case let e as any HTTPResponseError:
            return APIError(e.status, "http_\(e.status.code)", "\(e)")
        default:
            return APIError(.internalServerError, "internal", "\(error)")
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
