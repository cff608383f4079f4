import Foundation
import Hummingbird
import NIOCore

/// The API's JSON encoding: keys sorted, slashes unescaped.
func jsonEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return encoder
}

/// `value` encoded as the API's JSON.
///
/// - Throws: `EncodingError` when the value cannot be encoded (a non-finite number), answered as
///   500 `internal`.
func jsonBuffer(_ value: some Encodable) throws -> ByteBuffer {
    ByteBuffer(bytes: try jsonEncoder().encode(value))
}

/// A JSON reply of encoded bytes.
func jsonResponse(_ buffer: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json; charset=utf-8"
    return Response(status: status, headers: headers, body: .init(byteBuffer: buffer))
}

/// A JSON reply of `value`.
///
/// - Throws: `EncodingError` when the value cannot be encoded, answered as 500 `internal`.
func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    jsonResponse(try jsonBuffer(value), status: status)
}

/// An `application/octet-stream` reply of `bytes`.
func binaryResponse(_ bytes: [UInt8]) -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/octet-stream"
    return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}
