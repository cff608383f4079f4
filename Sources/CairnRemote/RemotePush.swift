import AsyncHTTPClient
import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Foundation
import NIOCore
import NIOHTTP1

// Pushes: the scan, the missing chunks, bundle uploads, the version.
extension RemoteRegistry {
    // MARK: Push

    /// Stores `directory` as the next version of `request.model` on the server, sending only the
    /// chunks it lacks; the report's ``PushReport/transferredBytes`` counts the bundle bytes sent.
    ///
    /// The chunks go into an upload on the server (`POST /v1/uploads`) that the version commits
    /// with itself (`POST /v1/models/{model}/versions`); a push that fails closes its upload.
    /// Chunks a garbage collection on the server drops meanwhile are sent again (up to three
    /// times).
    ///
    /// - Parameters:
    ///   - directory: the tree to push (every regular file under it).
    ///   - request: the model, parents and metadata of the new version (`actor` is ignored: the
    ///     server records the token's user).
    ///   - progress: called with the scan's progress (and the upload's when chunks are sent again).
    /// - Throws: ``RegistryError`` with `.invalidArgument` for an invalid model name or parent
    ///   reference; ``CairnStoreError`` when `directory` is missing (`.notFound`), holds a symlink or
    ///   special file (`.invalidArgument`), cannot be read (`.io`) or a file changes while it is
    ///   read (`.conflict`);
    ///   ``RemoteError`` with `.forbidden` below the writer role, `.notFound` for a parent that does
    ///   not exist, `.chunkMismatch` when a file changed while it was being pushed, `.missingChunks`
    ///   when chunks kept disappearing on the server, `.refused` or `.conflict` when the server
    ///   refuses the version (see Errors on ``RemoteRegistry``).
    public func pushReport(
        directory: String,
        request: PushRequest,
        progress: ((TransferProgress) -> Void)?
    ) throws
        -> PushReport
    {
        try ModelName.validate(request.model)
        let config = try serverConfig()
        let planner = try pushPlanner(request, config: config)
        // The chunks are staged in an upload and committed with the version in one transaction.
        let uploadID = try json(.POST, "/v1/uploads", body: Empty(), as: UploadCreated.self).upload
        var committed = false
        defer {
            if !committed { _ = try? call(.DELETE, "/v1/uploads/" + uploadID) }
        }
        // Uploads overlap the scan: after each round of chunking and hashing, the server is asked
        // which of its new chunks it lacks, those are copied into the current bundle straight from
        // the round's buffer, and a full bundle is sent while scanning goes on, with up to three in
        // flight (sending the third waits for the reply to the first).
        let limit = batchLimit(config)
        var seen = Set<SHA256Digest>()
        var builder = BundleBuffer(capacity: limit)
        // The chunks of the bundle being built and of those in flight, in bundle order.
        var building: [ChunkSource] = []
        var inFlight: [(response: PendingCall, bundle: ByteBuffer, chunks: [ChunkSource])] = []
        // Chunks sent without ids, with the ids the server assigned them.
        var assigned: [ChunkSource] = []
        var sent: Int64 = 0
        func collect(_ pending: (response: PendingCall, bundle: ByteBuffer, chunks: [ChunkSource])) throws {
            let reply = try uploadReply(pending.response)
            builder.recycle(pending.bundle)
            guard pending.chunks.contains(where: { $0.chunk.id == .zero }) else { return }
            let ids = try JSONDecoder().decode(ChunkStoreResult.self, from: reply.data).ids ?? []
            guard ids.count == pending.chunks.count else {
                throw RemoteError(
                    status: 0,
                    code: .badResponse,
                    message: "the server assigned \(ids.count) chunk ids for \(pending.chunks.count) chunks"
                )
            }
            for (chunk, hex) in zip(pending.chunks, ids) where chunk.chunk.id == .zero {
                guard let id = SHA256Digest(hex: hex) else {
                    throw RemoteError(
                        status: 0,
                        code: .badResponse,
                        message: "the server assigned an invalid chunk id \(hex)"
                    )
                }
                var chunk = chunk
                chunk.chunk.id = id
                assigned.append(chunk)
            }
        }
        func send() throws {
            guard builder.count > 0 else { return }
            let bundle = builder.take()
            sent += Int64(bundle.readableBytes)
            let unhashed = building.contains { $0.chunk.id == .zero }
            let query = [("upload", uploadID)] + (unhashed ? [("assign_ids", "1")] : [])
            let call: PendingCall
            if let socketClient {
                call = .socket(socketClient.post("/v1/chunks" + Self.queryString(query), body: bundle))
            } else {
                call = .client(
                    try start(
                        .POST,
                        "/v1/chunks",
                        query: query,
                        body: .byteBuffer(bundle),
                        contentType: "application/octet-stream"
                    )
                )
            }
            inFlight.append((call, bundle, building))
            building = []
            if inFlight.count > 2 { try collect(inFlight.removeFirst()) }
        }
        func add(_ chunk: ChunkSource, _ bytes: UnsafeRawBufferPointer) throws {
            builder.append(chunk, bytes: bytes)
            building.append(chunk)
            if builder.rawBytes >= limit || builder.count >= config.maxBatchIDs { try send() }
        }
        // When the server lacks (nearly) everything scanned so far — a model's first push — the
        // client stops hashing chunks (the server hashes each one anyway, to verify it) and sends
        // the rest without ids; the server assigns them. A variant, whose chunks the server mostly
        // has, keeps asking which are missing and sends only those.
        let control = ScanControl()
        var checkedBytes = 0
        var missingBytes = 0
        let scanned = try Store.scan(
            directory: directory,
            parameters: config.chunker,
            planner: planner,
            progress: progress,
            control: control
        ) { round in
            if round.chunks.first?.chunk.id == .zero {
                for (i, chunk) in round.chunks.enumerated() { try add(chunk, round.bytes(of: i)) }
                return
            }
            var fresh: [SHA256Digest] = []
            for chunk in round.chunks where seen.insert(chunk.chunk.id).inserted { fresh.append(chunk.chunk.id) }
            guard !fresh.isEmpty else { return }
            var missing = Set(try self.missingChunks(fresh))
            for (i, chunk) in round.chunks.enumerated() {
                checkedBytes += Int(chunk.chunk.length)
                if missing.remove(chunk.chunk.id) != nil {
                    missingBytes += Int(chunk.chunk.length)
                    try add(chunk, round.bytes(of: i))
                }
            }
            if config.assignsChunkIDs == true, checkedBytes >= self.assignAfterBytes,
                missingBytes >= checkedBytes / 100 * 98
            {
                control.hashesChunks = false
            }
        }
        try send()
        for pending in inFlight { try collect(pending) }
        inFlight = []
        let tree = assigned.isEmpty ? scanned : try scanned.assigning(assigned)
        for attempt in 0..<4 {
            do {
                var body = CreateVersionBody(request: request, manifest: tree.manifest, newBytes: 0, storedBytes: 0)
                body.upload = uploadID
                let result = try json(
                    .POST,
                    Self.modelPath(request.model) + "/versions",
                    body: body,
                    as: PushResult.self
                )
                committed = true
                return PushReport(result: result, transferredBytes: sent)
            } catch let error as RemoteError where error.code == .missingChunks && attempt < 3 {
                // A garbage collection on the server dropped chunks this push found there.
                let again = try upload(
                    tree.chunkSources(Set(error.missing)),
                    config: config,
                    into: uploadID,
                    progress: progress
                )
                sent += again.sent
            } catch {
                committed = true  // a refused or failed version closes the upload on the server
                throw error
            }
        }
        throw RemoteError(
            status: 409,
            code: .missingChunks,
            message: "chunks kept disappearing on the server; push again"
        )
    }

    // MARK: Chunks

    /// The ids among `ids` the server does not store (`POST /v1/chunks/missing`, in batches
    /// within the server's limit).
    func missingChunks(_ ids: [SHA256Digest]) throws -> [SHA256Digest] {
        let config = try serverConfig()
        var missing: [SHA256Digest] = []
        var start = 0
        while start < ids.count {
            let end = min(start + config.maxBatchIDs, ids.count)
            let reply = try call(
                .POST,
                "/v1/chunks/missing",
                body: .bytes(ChunkIDList.encode(Array(ids[start..<end]))),
                contentType: "application/octet-stream"
            )
            guard let list = reply.body.readableBytesView.withUnsafeBytes({ ChunkIDList.decode($0) }) else {
                throw RemoteError(
                    status: reply.status,
                    code: .badResponse,
                    message: "malformed id list from \(baseURL)"
                )
            }
            missing += list
            start = end
        }
        return missing
    }

    /// Uploads chunks read from local files in batches (two in flight); returns bytes sent and
    /// what the server added.
    func upload(
        _ sources: [ChunkSource],
        config: ServerConfig,
        into uploadID: String?,
        progress: ((TransferProgress) -> Void)?
    ) throws -> (sent: Int64, result: ChunkStoreResult) {
        var total = ChunkStoreResult(received: 0, newChunks: 0, newBytes: 0, storedBytes: 0)
        var sent: Int64 = 0
        let limit = batchLimit(config)
        let batches = Self.batches(sources.map { Int($0.chunk.length) }, limit: limit, maxCount: config.maxBatchIDs)
        let rawTotal = sources.reduce(Int64(0)) { $0 + Int64($1.chunk.length) }
        var rawDone: Int64 = 0
        var inFlight: (call: PendingCall, raw: Int64)?
        func collect(_ pending: (call: PendingCall, raw: Int64)) throws {
            let reply = try uploadReply(pending.call)
            let r = try JSONDecoder().decode(ChunkStoreResult.self, from: reply.data)
            total.received += r.received
            total.newChunks += r.newChunks
            total.newBytes += r.newBytes
            total.storedBytes += r.storedBytes
            rawDone += pending.raw
            progress?(TransferProgress(done: rawDone, of: rawTotal, new: total.newBytes))
        }
        for range in batches {
            let batch = Array(sources[range])
            // Not re-hashed here: the server verifies every chunk (a file changed since the scan gets
            // its batch rejected as chunk_mismatch).
            let bundle = try Store.bundle(
                batch,
                compressionLevel: config.compressionLevel,
                maxChunk: config.chunker.max,
                compress: false,
                verify: false
            )
            sent += Int64(bundle.count)
            let future = try start(
                .POST,
                "/v1/chunks",
                query: uploadID.map { [("upload", $0)] } ?? [],
                body: .bytes(bundle),
                contentType: "application/octet-stream"
            )
            if let pending = inFlight { try collect(pending) }
            inFlight = (.client(future), batch.reduce(Int64(0)) { $0 + Int64($1.chunk.length) })
        }
        if let pending = inFlight { try collect(pending) }
        return (sent, total)
    }

    /// Waits for the reply to a chunk upload; a `chunk_mismatch` says what likely caused it.
    func uploadReply(_ call: PendingCall) throws -> Reply {
        do {
            return try call.wait(self)
        } catch let error as RemoteError where error.code == .chunkMismatch {
            throw RemoteError(
                status: error.status,
                code: error.code,
                message: "\(error.message) (did a file change while it was being pushed? push again)"
            )
        }
    }

    /// The chunking plans of a push, with delta references against the parent a local push would
    /// use (the first parent, else the model's latest version), whose headers are read through the
    /// chunk cache.
    func pushPlanner(_ request: PushRequest, config: ServerConfig) throws -> ChunkingPlanner {
        let slice = config.chunker.slice
        var parent: VersionRecord?
        if let first = request.parents.first {
            parent = try resolve(try Reference(parsing: first))
        } else {
            parent = try? resolve(Reference(model: request.model, selector: .latest))
        }
        guard let parent, let manifest = try? manifest(of: parent) else {
            return Registry.chunkingPlanner(sliceSize: slice)
        }
        return Registry.chunkingPlanner(sliceSize: slice, parent: manifest) { file, range in
            var bytes: [UInt8] = []
            try self.readRange(parent, file: file, range: range) { piece, _ in bytes.append(contentsOf: piece) }
            return bytes
        }
    }
}

/// A chunk bundle (``ChunkBundle``) of raw chunks built straight into a ByteBuffer, so the bytes
/// are copied once on their way from the scan's buffer to the socket.
struct BundleBuffer {
    private var buffer: ByteBuffer
    private let capacity: Int
    /// Buffers of bundles whose upload finished, cleared for the next ones: a fresh 16 MiB buffer
    /// per bundle cost a page fault per 4 KiB, about 5 % of a remote push's CPU time.
    private var spare: [ByteBuffer] = []
    private(set) var count = 0
    private(set) var rawBytes = 0

    init(capacity: Int) {
        self.capacity = capacity
        buffer = Self.empty(capacity: capacity, reusing: nil)
    }

    private static func empty(capacity: Int, reusing old: consuming ByteBuffer?) -> ByteBuffer {
        var buffer = old ?? ByteBufferAllocator().buffer(capacity: capacity + (capacity >> 4))
        buffer.clear()
        buffer.writeRepeatingByte(0, count: ChunkBundle.headerSize)
        return buffer
    }

    mutating func append(_ source: ChunkSource, bytes: UnsafeRawBufferPointer) {
        let headerSize = ChunkBundle.entryHeaderSize(hasReference: source.reference != nil)
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: headerSize) { raw in
            ChunkBundle.writeEntryHeader(
                id: source.chunk.id,
                codec: .raw,
                rawLength: bytes.count,
                storedLength: bytes.count,
                elementSize: source.elementSize,
                reference: source.reference,
                to: raw.baseAddress!
            )
            return headerSize
        }
        buffer.writeBytes(bytes)
        count += 1
        rawBytes += bytes.count
    }

    /// The bundle, and an empty builder in its place.
    mutating func take() -> ByteBuffer {
        let count = self.count
        buffer.withUnsafeMutableReadableBytes { ChunkBundle.writeHeader(count: count, to: $0.baseAddress!) }
        let out = buffer
        buffer = Self.empty(capacity: capacity, reusing: spare.popLast())
        self.count = 0
        rawBytes = 0
        return out
    }

    /// Takes back the buffer of a bundle whose upload finished (its memory is reused when nothing
    /// else holds it).
    mutating func recycle(_ bundle: consuming ByteBuffer) {
        spare.append(bundle)
    }
}
