import CairnStore
import Hummingbird
import NIOCore

extension BufferPool {
    /// Memory for the request bodies of chunk uploads, kept for reuse (sizes round up to 4 MiB, so
    /// that kept bodies fit bundles of slightly different sizes; at most four are kept): a fresh
    /// buffer per bundle cost a page fault per 4 KiB. Unlike a ByteBuffer, whose storage is
    /// replaced when it is written while anything else still holds it, a body's memory goes back
    /// to the pool exactly when its request is done with it.
    ///
    /// A body belongs to one request at a time, from `take` to `give`: that request's task fills
    /// it (``Request/uploadBody(upTo:pool:)``) and only then hands it to one blocking call, which
    /// it awaits before it gives the body back; nothing reads or writes a body concurrently or
    /// after it is given back.
    static func uploadBodies() -> BufferPool { BufferPool(granule: 4 << 20, keeping: 4) }
}

extension Request {
    /// The body of a chunk upload, at most `limit` bytes, in memory from `pool` (give it back with
    /// ``BufferPool/give(_:)``).
    ///
    /// - Throws: ``APIError`` with `.tooLarge` (413) for a body over `limit`, `.invalidArgument`
    ///   for one longer or shorter than its `Content-Length`.
    mutating func uploadBody(upTo limit: Int, pool: BufferPool) async throws -> AlignedBuffer {
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
}
