import CairnRegistry
import CairnStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// `GET`/`HEAD /v1/models/{model}/versions/{ref}/files/{path}`: a version's file over plain HTTP,
/// usable with curl. `ETag` is the file's SHA-256 (quoted), `Accept-Ranges: bytes`; `Range` gives
/// 206 with `Content-Range` (one range) or `multipart/byteranges` (several), an unsatisfiable or
/// malformed range 416 with `Content-Range: bytes */SIZE`; `If-Range` with another ETag sends the
/// whole file. The version and its manifest are looked up, and bytes read from the store in 4 MiB
/// windows (each verified chunk by chunk, the next read while the current one is sent), on the
/// server's blocking threads.
func addFileRoutes(_ v1: RouterGroup<CairnRequestContext>, server: CairnServer) {
    let handler: @Sendable (Request, CairnRequestContext) async throws -> Response = { request, context in
        try context.require(.reader, "read files")
        let model = try context.parameter("model")
        let ref = try context.parameter("ref")
        let segments = try context.parameters.getCatchAll().map { segment -> String in
            guard let decoded = String(segment).removingPercentEncoding else {
                throw APIError.badRequest("malformed percent-encoding")
            }
            return decoded
        }
        let path = segments.joined(separator: "/")
        guard !path.isEmpty, path.utf8.count <= 4096 else {
            throw APIError.badRequest("give a file path (at most 4096 bytes)")
        }
        let registry = server.registry
        let (version, file) = try await server.blocking {
            let version = try registry.resolve(try reference(model: model, ref: ref))
            guard let file = try registry.manifest(of: version).file(path) else {
                throw APIError.notFound("\(version.reference) has no file \(path)")
            }
            return (version, file)
        }
        let etag = "\"\(file.sha256.hex)\""
        var headers = HTTPFields()
        headers[.acceptRanges] = "bytes"
        headers[.eTag] = etag
        headers[.contentType] = "application/octet-stream"
        headers[HTTPField.Name("X-Cairn-Version")!] = version.reference
        if request.headers[.ifNoneMatch].map({ $0 == etag || $0 == "*" }) == true {
            return Response(status: .notModified, headers: headers)
        }
        var ranges = ByteRanges.parse(request.headers[.range], size: file.size)
        if let ifRange = request.headers[.ifRange], ifRange != etag { ranges = .whole }
        let isHead = request.method == .head
        switch ranges {
        case .whole:
            return stream(
                server,
                file,
                parts: [(nil, 0..<file.size)],
                size: file.size,
                headers: headers,
                status: .ok,
                head: isHead
            )
        case .unsatisfiable:
            var e = APIError(
                .rangeNotSatisfiable,
                "the range is invalid or outside \(path) (\(file.size) bytes)"
            )
            e.headers[.contentRange] = "bytes */\(file.size)"
            throw e
        case .ranges(let list) where list.count == 1:
            let r = list[0]
            headers[.contentRange] = "bytes \(r.lowerBound)-\(r.upperBound - 1)/\(file.size)"
            return stream(
                server,
                file,
                parts: [(nil, r)],
                size: file.size,
                headers: headers,
                status: .partialContent,
                head: isHead
            )
        case .ranges(let list):
            let boundary = "cairn-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
            headers[.contentType] = "multipart/byteranges; boundary=\(boundary)"
            let parts = list.map { r -> (String?, Range<Int64>) in
                let head =
                    "\r\n--\(boundary)\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes \(r.lowerBound)-\(r.upperBound - 1)/\(file.size)\r\n\r\n"
                return (head, r)
            }
            return stream(
                server,
                file,
                parts: parts,
                size: file.size,
                headers: headers,
                status: .partialContent,
                head: isHead,
                trailer: "\r\n--\(boundary)--\r\n"
            )
        }
    }
    v1.get("models/:model/versions/:ref/files/**", use: handler)
    v1.head("models/:model/versions/:ref/files/**", use: handler)
}

/// A streamed response of `parts` of `file` (each with an optional multipart header).
private func stream(
    _ server: CairnServer,
    _ file: FileEntry,
    parts: [(header: String?, range: Range<Int64>)],
    size: Int64,
    headers: HTTPFields,
    status: HTTPResponse.Status,
    head: Bool,
    trailer: String? = nil
) -> Response {
    var headers = headers
    let length =
        parts.reduce(0) { $0 + ($1.header?.utf8.count ?? 0) + Int($1.range.count) } + (trailer?.utf8.count ?? 0)
    headers[.contentLength] = "\(length)"
    if head { return Response(status: status, headers: headers, body: ResponseBody()) }
    let store = server.registry.store
    // The windows to read, in order.
    var windows: [(header: String?, range: Range<Int64>)] = []
    for part in parts {
        var at = part.range.lowerBound
        var header = part.header
        repeat {
            let end = min(at + fileWindow, part.range.upperBound)
            windows.append((header, at..<end))
            header = nil
            at = end
        } while at < part.range.upperBound
    }
    let frozen = windows
    let body = ResponseBody(contentLength: length) { writer in
        @Sendable func read(_ range: Range<Int64>) async throws -> ByteBuffer {
            try await server.blocking {
                var buffer = ByteBuffer()
                buffer.reserveCapacity(Int(range.count))
                try store.read(file, range: range, context: "file \(file.path)") { bytes, _ in buffer.writeBytes(bytes)
                }
                return buffer
            }
        }
        var pending: Task<ByteBuffer, any Error>? = frozen.first.map { first in Task { try await read(first.range) } }
        for (i, window) in frozen.enumerated() {
            guard let current = pending else { break }
            let buffer = try await current.value
            pending = i + 1 < frozen.count ? Task { [next = frozen[i + 1].range] in try await read(next) } : nil
            if let header = window.header { try await writer.write(ByteBuffer(string: header)) }
            // In 256 KiB slices (no copies): backpressure applies per slice, so little sits
            // unsent in the channel when a connection closes right after the response.
            var rest = buffer
            while rest.readableBytes > 0, let slice = rest.readSlice(length: min(rest.readableBytes, 256 << 10)) {
                try await writer.write(slice)
            }
        }
        if let trailer { try await writer.write(ByteBuffer(string: trailer)) }
        try await writer.finish(nil)
    }
    return Response(status: status, headers: headers, body: body)
}

/// Bytes read from the store per step of a file response.
private let fileWindow: Int64 = 4 << 20
