import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnRemote
import CairnServer
import CairnStore
import Digest
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@Suite struct ChunkProtocolTests {
    /// A bundle of raw chunks, as a client would send it.
    static func bundle(_ chunks: [(id: SHA256Digest, data: [UInt8])]) -> ByteBuffer {
        var out = [UInt8](repeating: 0, count: ChunkBundle.size(storedLengths: chunks.map(\.data.count)))
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            ChunkBundle.writeHeader(count: chunks.count, to: p)
            var at = ChunkBundle.headerSize
            for c in chunks {
                ChunkBundle.writeEntryHeader(
                    id: c.id,
                    codec: .raw,
                    rawLength: c.data.count,
                    storedLength: c.data.count,
                    to: p + at
                )
                at += ChunkBundle.entryHeaderSize
                c.data.withUnsafeBytes { (p + at).copyMemory(from: $0.baseAddress!, byteCount: c.data.count) }
                at += c.data.count
            }
        }
        return ByteBuffer(bytes: out)
    }

    @Test func uploadMissingFetchAndCreate() async throws {
        let f = try ServerFixture()
        let a = FixtureData.bytes(count: 50_000, seed: 1)
        let b = FixtureData.bytes(count: 60_000, seed: 2)
        let ida = SHA256Digest.hash(a)
        let idb = SHA256Digest.hash(b)
        try await f.application.test(.router) { client in
            try await client.execute(
                uri: "/v1/chunks/missing",
                method: .post,
                headers: bearer(f.writer),
                body: ByteBuffer(bytes: ChunkIDList.encode([ida, idb]))
            ) { response in
                #expect(response.body.readableBytesView.withUnsafeBytes { ChunkIDList.decode($0) } == [ida, idb])
            }
            try await client.execute(
                uri: "/v1/chunks",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(ida, a), (idb, b)])
            ) {
                response in
                #expect(response.status == .ok)
                let result = try decode(ChunkStoreResult.self, response)
                #expect(result.received == 2 && result.newChunks == 2 && result.newBytes == 110_000)
            }
            // Again: nothing new.
            try await client.execute(
                uri: "/v1/chunks",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(ida, a)])
            ) {
                #expect(decoded(ChunkStoreResult.self, $0)?.newChunks == 0)
            }
            try await client.execute(
                uri: "/v1/chunks/missing",
                method: .post,
                headers: bearer(f.writer),
                body: ByteBuffer(bytes: ChunkIDList.encode([ida, idb]))
            ) { #expect($0.body.readableBytes == 0) }
            // Fetch returns them (as stored: the receiver verifies).
            try await client.execute(
                uri: "/v1/chunks/fetch",
                method: .post,
                headers: bearer(f.reader),
                body: ByteBuffer(bytes: ChunkIDList.encode([idb, ida]))
            ) { response in
                #expect(response.status == .ok)
                let other = try Store.create(at: f.dir.sub("other"))
                let result = try response.body.readableBytesView.withUnsafeBytes { try other.storeChunks(bundle: $0) }
                #expect(result.newChunks == 2 && result.newBytes == 110_000)
            }
            // A version from a manifest whose chunks are stored …
            let file = FileEntry(
                path: "w.bin",
                size: 110_000,
                sha256: SHA256Digest.hash(a + b),
                chunks: [ChunkRef(id: ida, length: 50_000), ChunkRef(id: idb, length: 60_000)]
            )
            let body = CreateVersionBody(
                request: PushRequest(model: "m", actor: "claimed"),
                manifest: Manifest(files: [file]),
                newBytes: 110_000,
                storedBytes: 0
            )
            try await client.execute(
                uri: "/v1/models/m/versions",
                method: .post,
                headers: bearer(f.writer),
                body: try json(body)
            ) {
                #expect($0.status == .created)
            }
            try await client.execute(
                uri: "/v1/models/m/versions/1/files/w.bin",
                method: .get,
                headers: bearer(f.reader)
            ) {
                #expect(Array($0.body.readableBytesView) == a + b)
            }
            #expect(try f.registry.resolve(try Reference(parsing: "m@1")).createdBy == "will")
            // … nor one whose paths are no tree (a file `w.bin` and a file under a directory `w.bin`):
            // refused, nothing stored.
            var nested = file
            nested.path = "w.bin/inner"
            try await client.execute(
                uri: "/v1/models/m/versions",
                method: .post,
                headers: bearer(f.writer),
                body: try json(
                    CreateVersionBody(
                        request: PushRequest(model: "m", actor: "claimed"),
                        manifest: Manifest(files: [file, nested]),
                        newBytes: 0,
                        storedBytes: 0
                    )
                )
            ) {
                #expect($0.status == .badRequest)
                #expect(String(buffer: $0.body).contains(#"w.bin is both a file and the directory of w.bin\/inner"#))
            }
            #expect(try f.registry.listVersions(of: "m").count == 1)
            // … but not one that references a chunk the server lacks.
            let c = FixtureData.bytes(count: 1000, seed: 3)
            let missing = FileEntry(
                path: "x",
                size: 1000,
                sha256: SHA256Digest.hash(c),
                chunks: [ChunkRef(id: SHA256Digest.hash(c), length: 1000)]
            )
            let bad = CreateVersionBody(
                request: PushRequest(model: "m", actor: "x"),
                manifest: Manifest(files: [missing]),
                newBytes: 0,
                storedBytes: 0
            )
            try await client.execute(
                uri: "/v1/models/m/versions",
                method: .post,
                headers: bearer(f.writer),
                body: try json(bad)
            ) { response in
                #expect(response.status == .conflict)
                #expect(errorCode(response) == "missing_chunks")
                let body = try decode(ErrorBody.self, response)
                #expect(body.error.missing == [SHA256Digest.hash(c).hex])
            }
            // A manifest whose id does not match its content.
            var wrongID = body
            wrongID.manifestID = String(repeating: "ab", count: 32)
            try await client.execute(
                uri: "/v1/models/m/versions",
                method: .post,
                headers: bearer(f.writer),
                body: try json(wrongID)
            ) {
                #expect($0.status == .unprocessableContent)
            }
            #expect(try f.registry.listVersions(of: "m").count == 1)
        }
    }

    @Test func uploadsStageChunksUntilTheirVersionCommits() async throws {
        let f = try ServerFixture()
        let a = FixtureData.bytes(count: 70_000, seed: 21)
        let b = FixtureData.bytes(count: 30_000, seed: 22)
        let ida = SHA256Digest.hash(a)
        let idb = SHA256Digest.hash(b)
        try await f.application.test(.router) { client in
            var id = ""
            try await client.execute(uri: "/v1/uploads", method: .post, headers: bearer(f.writer)) {
                #expect($0.status == .created)
                id = try decode(UploadCreated.self, $0).upload
            }
            try await client.execute(
                uri: "/v1/chunks?upload=\(id)",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(ida, a)])
            ) {
                #expect(decoded(ChunkStoreResult.self, $0)?.newChunks == 1)
            }
            // Another user cannot use it.
            try await client.execute(
                uri: "/v1/chunks?upload=\(id)",
                method: .post,
                headers: bearer(f.approver),
                body: Self.bundle([(idb, b)])
            ) {
                #expect($0.status == .forbidden)
            }
            // Staged chunks are invisible until the version commits them.
            #expect(try f.registry.store.missingChunks([ida]) == [ida])
            let file = FileEntry(
                path: "w.bin",
                size: 100_000,
                sha256: SHA256Digest.hash(a + b),
                chunks: [ChunkRef(id: ida, length: 70_000), ChunkRef(id: idb, length: 30_000)]
            )
            var body = CreateVersionBody(
                request: PushRequest(model: "m", actor: "x"),
                manifest: Manifest(files: [file]),
                newBytes: 0,
                storedBytes: 0
            )
            body.upload = id
            // b is missing: 409 listing it, and the upload stays open.
            try await client.execute(
                uri: "/v1/models/m/versions",
                method: .post,
                headers: bearer(f.writer),
                body: try json(body)
            ) { response in
                #expect(response.status == .conflict)
                #expect(decoded(ErrorBody.self, response)?.error.missing == [idb.hex])
            }
            try await client.execute(
                uri: "/v1/chunks?upload=\(id)",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(idb, b)])
            ) {
                #expect($0.status == .ok)
            }
            try await client.execute(
                uri: "/v1/models/m/versions",
                method: .post,
                headers: bearer(f.writer),
                body: try json(body)
            ) { response in
                #expect(response.status == .created)
                #expect(decoded(PushResult.self, response)?.newBytes == 100_000)
            }
            #expect(try f.registry.store.missingChunks([ida, idb]).isEmpty)
            // Committed: the upload is closed.
            try await client.execute(
                uri: "/v1/chunks?upload=\(id)",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(idb, b)])
            ) {
                #expect($0.status == .notFound)
            }
            try await client.execute(
                uri: "/v1/models/m/versions/1/files/w.bin",
                method: .get,
                headers: bearer(f.reader)
            ) {
                #expect(Array($0.body.readableBytesView) == a + b)
            }
        }
        #expect(try f.registry.store.verify(deep: true).isHealthy)
    }

    @Test func theServerAssignsIDsOnlyWhenAskedAndOnlyInAnUpload() async throws {
        let f = try ServerFixture()
        let a = FixtureData.bytes(count: 50_000, seed: 41)
        let b = FixtureData.bytes(count: 20_000, seed: 42)
        try await f.application.test(.router) { client in
            try await client.execute(uri: "/v1/config", method: .get, headers: bearer(f.reader)) {
                #expect(decoded(ServerConfig.self, $0)?.assignsChunkIDs == true)
            }
            var id = ""
            try await client.execute(uri: "/v1/uploads", method: .post, headers: bearer(f.writer)) {
                id = try decode(UploadCreated.self, $0).upload
            }
            // An all-zero id is a mismatch unless the server is asked to assign ids …
            try await client.execute(
                uri: "/v1/chunks?upload=\(id)",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(.zero, a)])
            ) {
                #expect($0.status == .unprocessableContent)
                #expect(errorCode($0) == "chunk_mismatch")
            }
            // … which it does only into an upload …
            try await client.execute(
                uri: "/v1/chunks?assign_ids=1",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(.zero, a)])
            ) {
                #expect($0.status == .badRequest)
            }
            // … answering every chunk's id in bundle order; a given id is still checked.
            try await client.execute(
                uri: "/v1/chunks?upload=\(id)&assign_ids=1",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(.zero, a), (SHA256Digest.hash(b), b)])
            ) {
                #expect(
                    decoded(ChunkStoreResult.self, $0)?.ids == [SHA256Digest.hash(a).hex, SHA256Digest.hash(b).hex]
                )
            }
            try await client.execute(
                uri: "/v1/chunks?upload=\(id)&assign_ids=1",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(SHA256Digest.hash(a), b)])
            ) {
                #expect($0.status == .unprocessableContent)
            }
            let file = FileEntry(
                path: "w.bin",
                size: 70_000,
                sha256: SHA256Digest.hash(a + b),
                chunks: [
                    ChunkRef(id: SHA256Digest.hash(a), length: 50_000),
                    ChunkRef(id: SHA256Digest.hash(b), length: 20_000),
                ]
            )
            var body = CreateVersionBody(
                request: PushRequest(model: "m", actor: "x"),
                manifest: Manifest(files: [file]),
                newBytes: 0,
                storedBytes: 0
            )
            body.upload = id
            try await client.execute(
                uri: "/v1/models/m/versions",
                method: .post,
                headers: bearer(f.writer),
                body: try json(body)
            ) {
                #expect($0.status == .created)
            }
        }
        #expect(try f.registry.store.verify(deep: true).isHealthy)
    }

    @Test func tamperedChunkRejectsTheWholeBatch() async throws {
        let f = try ServerFixture()
        let good = FixtureData.bytes(count: 40_000, seed: 7)
        var evil = FixtureData.bytes(count: 40_000, seed: 8)
        let claimed = SHA256Digest.hash(evil)
        evil[123] ^= 0xFF  // the bytes no longer hash to the id the client claims
        let tampered = evil
        let before = try f.registry.store.statistics()
        try await f.application.test(.router) { client in
            try await client.execute(
                uri: "/v1/chunks",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle([(SHA256Digest.hash(good), good), (claimed, tampered)])
            ) { response in
                #expect(response.status == .unprocessableContent)
                #expect(errorCode(response) == "chunk_mismatch")
                let body = try decode(ErrorBody.self, response)
                #expect(body.error.message.contains(claimed.hex))
            }
            // A malformed bundle: 400.
            try await client.execute(
                uri: "/v1/chunks",
                method: .post,
                headers: bearer(f.writer),
                body: ByteBuffer(string: "not a bundle")
            ) {
                #expect($0.status == .badRequest)
            }
        }
        // Nothing was stored: neither the tampered chunk nor the good one in the same batch.
        #expect(try f.registry.store.missingChunks([SHA256Digest.hash(good), claimed]).count == 2)
        let after = try f.registry.store.statistics()
        #expect(after.chunkCount == before.chunkCount && after.packCount == before.packCount)
    }

    @Test func oversizedBodiesAre413() async throws {
        let f = try ServerFixture(maxBatchBytes: 1 << 20)
        let chunks = (0..<6).map { i -> (SHA256Digest, [UInt8]) in
            let data = FixtureData.bytes(count: 200_000, seed: UInt64(10 + i))
            return (SHA256Digest.hash(data), data)
        }
        try await f.application.test(.router) { client in
            try await client.execute(
                uri: "/v1/chunks",
                method: .post,
                headers: bearer(f.writer),
                body: Self.bundle(chunks)
            ) { response in
                #expect(response.status == .contentTooLarge)
                #expect(errorCode(response) == "too_large")
            }
            let tooMany = ByteBuffer(bytes: [UInt8](repeating: 1, count: 65537 * 32))
            try await client.execute(uri: "/v1/chunks/missing", method: .post, headers: bearer(f.writer), body: tooMany)
            {
                #expect($0.status == .contentTooLarge)
            }
        }
    }
}
