import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Foundation
import Hummingbird
import NIOCore

/// The chunk protocol:
///
/// - `POST /v1/chunks/missing` (writer): body = chunk ids (32 bytes each); answer = the ids the
///   store lacks, in the same form.
/// - `POST /v1/chunks` (writer): body = a chunk bundle (``ChunkBundle``); every chunk is decoded and
///   re-hashed, and if any does not match its id the whole batch is rejected (422
///   `chunk_mismatch`) and nothing is stored. Answer: ``ChunkStoreResult``.
/// - `POST /v1/chunks/fetch` (reader): body = chunk ids; answer = a bundle of those chunks as stored.
///
/// Bodies over the server's batch limit are refused with 413. Index lookups, verification, pack
/// writes and reads run on the server's blocking threads.
func addChunkRoutes(_ v1: RouterGroup<CairnRequestContext>, server: CairnServer) {
    let store = server.registry.store
    let options = server.options
    /// Memory for the chunk bundles received in uploads.
    let uploadBodies = BufferPool.uploadBodies()
    /// Buffers of the chunk bundles sent in replies to fetches.
    let fetchReplyBuffers = FetchReplyBuffers()

    v1.post("chunks/missing") { request, context in
        try context.require(.writer, "upload chunks")
        var request = request
        let ids = try await idList(&request, limit: options.maxBatchIDs)
        let missing = try await server.blocking { try store.missingChunks(ids) }
        return binaryResponse(ChunkIDList.encode(missing))
    }

    v1.post("uploads") { _, context in
        let actor = try context.require(.writer, "upload chunks")
        let id = try await server.blocking { try server.uploads.open(store: store, user: actor) }
        return try jsonResponse(UploadCreated(upload: id), status: .created)
    }

    v1.delete("uploads/:id") { _, context in
        let actor = try context.require(.writer, "upload chunks")
        let id = try context.parameter("id")
        _ = try server.uploads.get(id, user: actor)
        // Abandoning deletes the staged pack (after any bundle being staged into it).
        let uploads = server.uploads
        try await server.blocking { uploads.close(id) }
        return Response(status: .noContent)
    }

    v1.post("chunks") { request, context in
        let actor = try context.require(.writer, "upload chunks")
        // With ?upload=ID the chunks are staged in that upload (committed with its version);
        // without, they are stored and indexed at once.
        let upload = try request.query("upload").map { try server.uploads.get($0, user: actor) }
        // Chunks sent without ids (all zeros) get the SHA-256 of their bytes; only into an upload,
        // whose version commit then checks every id the manifest names.
        let assignIDs = request.query("assign_ids") == "1"
        if assignIDs, upload == nil { throw APIError.badRequest("assign_ids=1 needs an upload (?upload=ID)") }
        var request = request
        let body = try await request.uploadBody(upTo: options.maxBatchBytes, pool: uploadBodies)
        // Back to the pool once the blocking call below has returned: nothing reads it after that.
        defer { uploadBodies.give(body) }
        let result: ChunkStoreResult
        do {
            result = try await server.blocking {
                if let upload { return try upload.add(bundle: body.bytes, assignIDs: assignIDs) }
                return try store.storeChunks(bundle: body.bytes)
            }
        } catch let error as CairnStoreError where error.code == .corruption {
            server.logger.warning("rejected chunk batch", metadata: ["user": "\(actor)", "error": "\(error.message)"])
            throw APIError(.chunkMismatch, error.message)
        }
        server.metrics.recordUpload(
            wireBytes: body.count,
            received: result.received,
            newChunks: result.newChunks,
            newBytes: result.newBytes
        )
        return try jsonResponse(result)
    }

    v1.post("chunks/fetch") { request, context in
        try context.require(.reader, "fetch chunks")
        var request = request
        let ids = try await idList(&request, limit: options.maxBatchIDs)
        // `deltas=1`: the client holds the parent chunks deltas are stored against.
        let deltas = request.query("deltas") == "1"
        // On a connection that sends file bodies, the chunks' stored bytes go from the packs to
        // the socket (FileBodies); elsewhere the bundle is read from the packs straight into a
        // reused buffer, which goes back to the pool once the response is written.
        var headers = HTTPFields()
        headers[.contentType] = "application/octet-stream"
        if server.fileBodies.canSend(on: context.channel) {
            let pieces = try await server.blocking {
                try store.exportPieces(
                    try store.planExport(ids, maxBytes: options.maxBatchBytes, sendingDeltas: deltas)
                )
            }
            let size = pieces.size
            server.metrics.recordFetch(wireBytes: size, fromFiles: true)
            guard let marker = server.fileBodies.register(pieces, on: context.channel) else {
                throw APIError(.unreachable, "the connection closed before the reply")
            }
            return Response(
                status: .ok,
                headers: headers,
                body: ResponseBody(contentLength: size) { writer in
                    try await writer.write(marker)
                    try await writer.finish(nil)
                }
            )
        }
        let bundle = try await server.blocking {
            let plan = try store.planExport(ids, maxBytes: options.maxBatchBytes, sendingDeltas: deltas)
            var buffer = fetchReplyBuffers.take(capacity: plan.bound)
            try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: plan.bound) {
                try store.export(plan, into: $0)
            }
            return buffer
        }
        server.metrics.recordFetch(wireBytes: bundle.readableBytes, fromFiles: false)
        return Response(
            status: .ok,
            headers: headers,
            body: ResponseBody(contentLength: bundle.readableBytes) { writer in
                try await writer.write(bundle)
                try await writer.finish(nil)
                fetchReplyBuffers.recycle(bundle)
            }
        )
    }
}

/// A body of chunk ids (32 bytes each, at most `limit` of them).
///
/// - Throws: ``APIError`` with `.tooLarge` for more than `limit` ids, `.invalidArgument` for a body
///   that is not a whole number of ids.
private func idList(_ request: inout Request, limit: Int) async throws -> [SHA256Digest] {
    let body = try await request.body(upTo: limit * 32)
    guard let ids = body.readableBytesView.withUnsafeBytes({ ChunkIDList.decode($0) }) else {
        throw APIError.badRequest("a chunk id list is a sequence of 32-byte ids")
    }
    return ids
}
