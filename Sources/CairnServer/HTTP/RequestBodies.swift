import Foundation
import Hummingbird
import NIOCore

extension Request {
    /// The body, at most `limit` bytes.
    ///
    /// - Throws: ``APIError`` with `.tooLarge` (413) for a body over `limit`, `.invalidArgument`
    ///   for one longer than its `Content-Length`.
    mutating func body(upTo limit: Int) async throws -> ByteBuffer {
        if let length = headers[.contentLength].flatMap({ Int($0) }), length > limit {
            throw APIError(.tooLarge, "the request body (\(length) bytes) is over the limit of \(limit) bytes")
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

    /// The JSON body decoded as `type`, at most `limit` bytes.
    ///
    /// - Throws: ``APIError`` as ``body(upTo:)`` does; `DecodingError` for a malformed body,
    ///   answered as 400 `invalid_argument`.
    mutating func json<T: Decodable>(_ type: T.Type, limit: Int = 1 << 20) async throws -> T {
        let buffer = try await body(upTo: limit)
        return try JSONDecoder().decode(type, from: Data(buffer.readableBytesView))
    }

    /// Query parameter values for `name`.
    func queryAll(_ name: String) -> [String] {
        uri.queryParameters.getAll(name).map { String($0) }
    }

    /// The first query parameter value for `name`, nil if there is none.
    func query(_ name: String) -> String? {
        uri.queryParameters.get(name).map { String($0) }
    }
}
