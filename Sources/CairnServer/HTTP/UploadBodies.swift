import Hummingbird
import NIOCore
import Synchronization

/// Memory for the request bodies of chunk uploads, kept for reuse (at most four): a fresh buffer
/// per bundle cost a page fault per 4 KiB. Unlike a ByteBuffer, whose storage is replaced when it
/// is written while anything else still holds it, a body's memory goes back to the pool exactly
/// when its request is done with it (``give(_:)``).
final class UploadBodies: Sendable {
    /// `count` bytes received into `memory`.
    ///
    /// `@unchecked Sendable`: the memory is raw and `count` mutable, which the compiler cannot
    /// check. What makes it safe: a body belongs to one request at a time, from ``take(capacity:)``
    /// to ``give(_:)``. That request's task fills it (``Request/uploadBody(upTo:pool:)``) and only
    /// then hands it to one blocking call, which it awaits before it gives the body back; nothing
    /// reads or writes a body concurrently or after it is given back.
    final class Body: @unchecked Sendable {
        let memory: UnsafeMutableRawBufferPointer
        var count = 0

        init(capacity: Int) { memory = .allocate(byteCount: capacity, alignment: 64) }
        deinit { memory.deallocate() }

        /// The bytes received.
        var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: memory[0..<count]) }
    }

    private let free = Mutex<[Body]>([])

    /// An empty body of at least `capacity` bytes (rounded up to 4 MiB, so that kept bodies fit
    /// bundles of slightly different sizes).
    func take(capacity: Int) -> Body {
        let kept = free.withLock { bodies -> Body? in
            guard let i = bodies.firstIndex(where: { $0.memory.count >= capacity }) else { return nil }
            return bodies.remove(at: i)
        }
        let body = kept ?? Body(capacity: max(1, (capacity + (4 << 20) - 1) / (4 << 20)) * (4 << 20))
        body.count = 0
        return body
    }

    /// Gives back a body taken with ``take(capacity:)`` once nothing reads it any more.
    func give(_ body: Body) {
        free.withLock { if $0.count < 4 { $0.append(body) } }
    }
}

extension Request {
    /// The body of a chunk upload, at most `limit` bytes, in memory from `pool` (give it back with
    /// ``UploadBodies/give(_:)``).
    ///
    /// - Throws: ``APIError`` with `.tooLarge` (413) for a body over `limit`, `.invalidArgument`
    ///   for one longer or shorter than its `Content-Length`.
    mutating func uploadBody(upTo limit: Int, pool: UploadBodies) async throws -> UploadBodies.Body {
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
