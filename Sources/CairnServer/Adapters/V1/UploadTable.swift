import CairnStore
import Foundation
import Synchronization

/// Open uploads (`POST /v1/uploads`): chunks staged for a push until its version commits them. Each
/// belongs to the user who opened it; uploads idle for 30 minutes are abandoned, and at most 256
/// are open at once.
///
/// ``open(store:user:)`` and ``close(_:)`` touch the store (a lock file, the staged pack); call
/// them on the blocking threads. ``get(_:user:)`` is a table lookup.
final class UploadTable: Sendable {
    private struct Entry {
        var upload: ChunkUpload
        var user: String
        var lastUsed: ContinuousClock.Instant
    }

    private let table = Mutex<[String: Entry]>([:])
    static let idleLimit: Duration = .seconds(1800)
    static let capacity = 256

    /// Opens an upload for `user` (abandoning those idle too long first); returns its id.
    ///
    /// - Throws: ``APIError`` with `.conflict` when 256 uploads are open; `CairnStoreError` from
    ///   opening the upload (`.io`).
    func open(store: Store, user: String) throws -> String {
        expire()
        let upload = try ChunkUpload(store: store)
        var generator = SystemRandomNumberGenerator()
        let id = (0..<16).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        try table.withLock { entries in
            guard entries.count < Self.capacity else {
                throw APIError(.conflict, "too many open uploads; try again later")
            }
            entries[id] = Entry(upload: upload, user: user, lastUsed: .now)
        }
        return id
    }

    /// The open upload `id` of `user`.
    ///
    /// - Throws: ``APIError`` with `.notFound` when no upload `id` is open, `.forbidden` when it
    ///   belongs to another user.
    func get(_ id: String, user: String) throws -> ChunkUpload {
        try table.withLock { entries in
            guard var entry = entries[id] else {
                throw APIError.notFound("no open upload \(id) (it was committed, abandoned or expired)")
            }
            guard entry.user == user else { throw APIError.forbidden("upload \(id) belongs to another user") }
            entry.lastUsed = .now
            entries[id] = entry
            return entry.upload
        }
    }

    /// Forgets an upload (abandoning it unless it was committed: its staged pack is deleted, after
    /// any chunks being added to it meanwhile).
    func close(_ id: String) {
        let entry = table.withLock { $0.removeValue(forKey: id) }
        entry?.upload.abandon()
    }

    private func expire() {
        let now = ContinuousClock.now
        let stale = table.withLock { entries -> [ChunkUpload] in
            let old = entries.filter { now - $0.value.lastUsed > Self.idleLimit }
            for key in old.keys { entries.removeValue(forKey: key) }
            return old.values.map(\.upload)
        }
        for upload in stale { upload.abandon() }
    }
}
