import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnRemote
import CairnStore
import Digest
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Synchronization
import Testing

@testable import CairnServer

@Suite struct APITests {
    /// A model with three versions: 1 in production (alias champion), 2 in staging, 3 experimental.
    static func populated(publicRead: Bool = false, maxBatchBytes: Int = 33 << 20) throws -> ServerFixture {
        let f = try ServerFixture(publicRead: publicRead, maxBatchBytes: maxBatchBytes)
        for i in 1...3 {
            let dir = try f.writeTree(
                "v\(i)",
                [
                    "config.json": Array("{\"v\": \(i)}".utf8),
                    "weights.bin": FixtureData.bytes(count: 200_000, seed: UInt64(i)),
                ]
            )
            try f.pushLocally(dir, model: "llama")
        }
        let r = f.registry
        try r.promote(try Reference(parsing: "llama@1"), to: .staging, actor: "ann")
        try r.promote(try Reference(parsing: "llama@1"), to: .production, actor: "ann")
        try r.promote(try Reference(parsing: "llama@2"), to: .staging, actor: "ann")
        try r.setAlias(model: "llama", alias: "champion", version: 1, actor: "ann")
        return f
    }

    @Test func healthAndMetrics() async throws {
        let f = try ServerFixture()
        try await f.application.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("ok"))
            }
            try await client.execute(uri: "/v1/models", method: .get, headers: bearer(f.reader)) {
                #expect($0.status == .ok)
            }
            // /metrics needs a token of any role unless the server was told otherwise.
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/metrics", method: .get, headers: bearer(f.reader)) { response in
                #expect(response.status == .ok)
                let text = String(buffer: response.body)
                #expect(text.contains("# TYPE cairn_http_requests_total counter"))
                #expect(
                    text.contains("cairn_http_requests_total{route=\"/v1/models\",method=\"GET\",status=\"200\"} 1")
                )
                #expect(text.contains("cairn_store_chunks "))
                #expect(text.contains("cairn_store_logical_bytes "))
                #expect(text.contains("cairn_store_stored_bytes "))
                #expect(text.contains("cairn_http_response_bytes_total "))
            }
        }
    }

    /// Public reads do not open /metrics; --public-metrics does, and only it.
    @Test func metricsNeedATokenUnlessPublic() async throws {
        let reads = try ServerFixture(publicRead: true)
        try await reads.application.test(.router) { client in
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/metrics", method: .get, headers: bearer("not-a-token")) {
                #expect($0.status == .unauthorized)
            }
        }
        let metrics = try ServerFixture(publicMetrics: true)
        try await metrics.application.test(.router) { client in
            try await client.execute(uri: "/metrics", method: .get) {
                #expect($0.status == .ok && String(buffer: $0.body).contains("cairn_store_chunks "))
            }
            try await client.execute(uri: "/v1/models", method: .get) { #expect($0.status == .unauthorized) }
        }
    }

    @Test func versionLookupByReference() async throws {
        let f = try Self.populated()
        try await f.application.test(.router) { client in
            for (ref, expected) in [
                ("production", 1), ("champion", 1), ("staging", 2), ("latest", 3), ("2", 2), ("experimental", 3),
            ] {
                try await client.execute(
                    uri: "/v1/models/llama/versions/\(ref)",
                    method: .get,
                    headers: bearer(f.reader)
                ) { response in
                    #expect(response.status == .ok, "\(ref)")
                    let (info, _) = try VersionDocument.decode(Data(response.body.readableBytesView))
                    #expect(info.record.version == expected, "\(ref)")
                    let object =
                        try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as! [String: Any]
                    let files = object["files"] as! [[String: Any]]
                    #expect(files.map { $0["path"] as! String } == ["config.json", "weights.bin"])
                    #expect((files[1]["size"] as! Int) == 200_000)
                    #expect((files[1]["sha256"] as! String).count == 64)
                    #expect((object["manifest"] as! String).count == 64)
                    #expect(
                        object["stage"] is String && object["metrics"] is [String: Any] && object["aliases"] is [String]
                    )
                }
            }
            // A rollback moves the production pointer: the cached answer must change with it.
            try f.registry.promote(try Reference(parsing: "llama@2"), to: .production, actor: "ann")
            try await client.execute(
                uri: "/v1/models/llama/versions/production",
                method: .get,
                headers: bearer(f.reader)
            ) { response in
                #expect((try? VersionDocument.decode(Data(response.body.readableBytesView)))?.info.record.version == 2)
            }
        }
    }

    @Test func productionLookupsDoNotWaitForAWriter() async throws {
        let f = try Self.populated()
        try await f.application.test(.router) { client in
            // A writer holds the index's write transaction (as a push's commit would) until the
            // lookups are answered, or 60 s. Had a lookup waited for it, the writer would time out.
            let started = DispatchSemaphore(value: 0)
            let lookupsDone = DispatchSemaphore(value: 0)
            let writerDone = DispatchSemaphore(value: 0)
            let timedOut = Mutex(false)
            let writer = Thread {
                try? f.registry.store.writeMetadata { _ in
                    started.signal()
                    let result = lookupsDone.wait(timeout: .now() + 60)
                    timedOut.withLock { $0 = result == .timedOut }
                }
                writerDone.signal()
            }
            writer.start()
            started.wait()
            for ref in ["production", "champion", "2", "latest", "production"] {
                try await client.execute(
                    uri: "/v1/models/llama/versions/\(ref)",
                    method: .get,
                    headers: bearer(f.reader)
                ) {
                    #expect($0.status == .ok)
                }
            }
            lookupsDone.signal()
            try await onThread { writerDone.wait() }
            let waited = timedOut.withLock { $0 }
            #expect(!waited, "a lookup waited for the writer")
        }
    }

    @Test func errorsAreJSONWithFittingStatuses() async throws {
        let f = try Self.populated()
        try await f.application.test(.router) { client in
            try await client.execute(uri: "/v1/models/nope/versions/1", method: .get, headers: bearer(f.reader)) {
                response in
                #expect(response.status == .notFound)
                #expect(errorCode(response) == "not_found")
                let body = try decode(ErrorBody.self, response)
                #expect(body.error.message.contains("nope"))
            }
            try await client.execute(uri: "/v1/models/Bad%20Name/versions/1", method: .get, headers: bearer(f.reader)) {
                response in
                #expect(response.status == .badRequest)
                #expect(errorCode(response) == "invalid_argument")
            }
            // Blanks around the token are ignored; a scheme without a token is refused.
            var padded = HTTPFields()
            padded[.authorization] = "Bearer \t \(f.reader)  "
            try await client.execute(uri: "/v1/models/llama/versions/1", method: .get, headers: padded) { response in
                #expect(response.status == .ok)
            }
            padded[.authorization] = "Bearer   "
            try await client.execute(uri: "/v1/models/llama/versions/1", method: .get, headers: padded) { response in
                #expect(response.status == .unauthorized)
            }
            try await client.execute(uri: "/v1/no/such/route", method: .get, headers: bearer(f.reader)) { response in
                #expect(response.status == .notFound)
                #expect(errorCode(response) == "not_found")
            }
            try await client.execute(uri: "/v1/models/llama/versions/1", method: .get) { response in
                #expect(response.status == .unauthorized)
                #expect(errorCode(response) == "unauthenticated")
            }
            try await client.execute(
                uri: "/v1/models/llama/versions/1",
                method: .get,
                headers: bearer(String(repeating: "0", count: 64))
            ) {
                #expect($0.status == .unauthorized)
            }
            // A gate that does not pass: 422 refused, nothing changes.
            try await client.execute(
                uri: "/v1/models/llama/versions/3/promote",
                method: .post,
                headers: bearer(f.approver),
                body: try json(StageChangeBody(to: .production, reason: "skip staging"))
            ) { response in
                #expect(response.status == .unprocessableContent)
                #expect(errorCode(response) == "refused")
            }
            try await client.execute(
                uri: "/v1/models/llama/versions/3/promote",
                method: .post,
                headers: bearer(f.approver),
                body: ByteBuffer(string: "{not json")
            ) { response in
                #expect(response.status == .badRequest)
            }
        }
    }

    /// Every code the server sends travels with the status ``ErrorCode/httpStatus`` gives it and
    /// as its `rawValue`: each provoked by a real request, except those no request can provoke on
    /// purpose (`io`, `internal`, `unreachable`), whose mapping is checked directly.
    @Test func everyErrorCodeTravelsWithItsStatus() async throws {
        let f = try Self.populated(maxBatchBytes: 1 << 20)
        let v3 = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "llama@3")))
        let seen = try await f.application.test(.router) { client in
            var seen: Set<ErrorCode> = []
            func expectError(
                _ code: ErrorCode,
                _ response: TestResponse,
                sourceLocation: SourceLocation = #_sourceLocation
            ) {
                #expect(Int(response.status.code) == code.httpStatus, "\(code)", sourceLocation: sourceLocation)
                #expect(errorCode(response) == code.rawValue, "\(code)", sourceLocation: sourceLocation)
                #expect(
                    response.headers[.contentType] == "application/json; charset=utf-8",
                    sourceLocation: sourceLocation
                )
                seen.insert(code)
            }
            func get(_ uri: String, _ headers: HTTPFields) async throws -> TestResponse {
                try await client.execute(uri: uri, method: .get, headers: headers) { $0 }
            }
            func post(_ uri: String, _ token: String, _ body: ByteBuffer) async throws -> TestResponse {
                try await client.execute(uri: uri, method: .post, headers: bearer(token), body: body) { $0 }
            }
            expectError(.notFound, try await get("/v1/models/nope/versions/1", bearer(f.reader)))
            expectError(.invalidArgument, try await get("/v1/models/Bad%20Name/versions/1", bearer(f.reader)))
            expectError(.unauthenticated, try await get("/v1/models", [:]))
            expectError(.forbidden, try await post("/v1/chunks/missing", f.reader, ByteBuffer()))
            var range = bearer(f.reader)
            range[.range] = "bytes=1000-"
            expectError(.rangeNotSatisfiable, try await get("/v1/models/llama/versions/1/files/config.json", range))
            expectError(
                .refused,
                try await post(
                    "/v1/models/llama/versions/3/promote",
                    f.approver,
                    try json(StageChangeBody(to: .production, reason: "skip staging"))
                )
            )
            // A bundle over the 1 MiB limit.
            let big = (0..<6).map { i -> (SHA256Digest, [UInt8]) in
                let data = FixtureData.bytes(count: 200_000, seed: UInt64(30 + i))
                return (SHA256Digest.hash(data), data)
            }
            expectError(.tooLarge, try await post("/v1/chunks", f.writer, ChunkProtocolTests.bundle(big)))
            // A chunk that does not hash to its id.
            let chunk = FixtureData.bytes(count: 10_000, seed: 40)
            expectError(
                .chunkMismatch,
                try await post("/v1/chunks", f.writer, ChunkProtocolTests.bundle([(SHA256Digest.hash([1]), chunk)]))
            )
            // A manifest that does not hash to the id sent with it.
            var mismatched = CreateVersionBody(
                request: PushRequest(model: "llama", actor: "x"),
                manifest: v3,
                newBytes: 0,
                storedBytes: 0
            )
            mismatched.manifestID = String(repeating: "ab", count: 32)
            expectError(.manifestMismatch, try await post("/v1/models/llama/versions", f.writer, try json(mismatched)))
            // A manifest naming a chunk the server lacks: `missing` lists it.
            let absent = FileEntry(
                path: "x",
                size: 10_000,
                sha256: SHA256Digest.hash(chunk),
                chunks: [ChunkRef(id: SHA256Digest.hash(chunk), length: 10_000)]
            )
            let incomplete = CreateVersionBody(
                request: PushRequest(model: "llama", actor: "x"),
                manifest: Manifest(files: [absent]),
                newBytes: 0,
                storedBytes: 0
            )
            let missing = try await post("/v1/models/llama/versions", f.writer, try json(incomplete))
            expectError(.missingChunks, missing)
            #expect(decoded(ErrorBody.self, missing)?.error.missing == [SHA256Digest.hash(chunk).hex])
            // One upload more than the server keeps open.
            var opened = 0
            var refusal: TestResponse?
            while refusal == nil, opened <= UploadTable.capacity {
                let response = try await post("/v1/uploads", f.writer, ByteBuffer())
                if response.status == .created { opened += 1 } else { refusal = response }
            }
            #expect(opened == UploadTable.capacity)
            expectError(.conflict, try #require(refusal))
            // Packs cut short: a fetch of their chunks finds the store damaged.
            for pack in FileBodyTests.packs(f) {
                let size = try FileManager.default.attributesOfItem(atPath: pack)[.size] as! Int
                #expect(truncate(pack, off_t(size / 2)) == 0)
            }
            let ids = v3.files.flatMap { $0.chunks.map(\.id) }
            expectError(
                .corruption,
                try await post("/v1/chunks/fetch", f.reader, ByteBuffer(bytes: ChunkIDList.encode(ids)))
            )
            return seen
        }
        let unprovoked: Set<ErrorCode> = [.io, .internal, .unreachable]
        #expect(seen == Set(ErrorCode.allCases).subtracting(unprovoked).subtracting([.badResponse]))
        for code in ErrorCode.allCases {
            let error = APIError.from(CairnStoreError(code, "x"))
            #expect(Int(error.status.code) == code.httpStatus && error.code == code, "\(code)")
        }
        // An error with no code of its own is `internal`.
        struct Unexpected: Error {}
        #expect(APIError.from(Unexpected()).code == .internal)
        #expect(Int(APIError.from(Unexpected()).status.code) == ErrorCode.internal.httpStatus)
    }

    @Test func roleBoundaries() async throws {
        let f = try Self.populated()
        try await f.application.test(.router) { client in
            // A reader cannot push: neither chunks nor versions.
            try await client.execute(
                uri: "/v1/chunks/missing",
                method: .post,
                headers: bearer(f.reader),
                body: ByteBuffer()
            ) {
                #expect($0.status == .forbidden)
                #expect(errorCode($0) == "forbidden")
            }
            try await client.execute(uri: "/v1/chunks", method: .post, headers: bearer(f.reader), body: ByteBuffer()) {
                #expect($0.status == .forbidden)
            }
            let manifest = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "llama@3")))
            let create = CreateVersionBody(
                request: PushRequest(model: "llama", actor: "x"),
                manifest: manifest,
                newBytes: 0,
                storedBytes: 0
            )
            try await client.execute(
                uri: "/v1/models/llama/versions",
                method: .post,
                headers: bearer(f.reader),
                body: try json(create)
            ) {
                #expect($0.status == .forbidden)
            }
            // A writer can push (a manifest whose chunks are all stored) …
            try await client.execute(
                uri: "/v1/models/llama/versions",
                method: .post,
                headers: bearer(f.writer),
                body: try json(create)
            ) {
                #expect($0.status == .created)
                #expect(decoded(PushResult.self, $0)?.version == 4)
            }
            // … tag an experimental version, but not a production one, and cannot promote.
            try await client.execute(
                uri: "/v1/models/llama/versions/4/tags",
                method: .post,
                headers: bearer(f.writer),
                body: try json(TagsBody(tags: ["run": "7"]))
            ) { #expect($0.status == .ok) }
            try await client.execute(
                uri: "/v1/models/llama/versions/production/tags",
                method: .post,
                headers: bearer(f.writer),
                body: try json(TagsBody(tags: ["run": "7"]))
            ) { #expect($0.status == .forbidden) }
            try await client.execute(
                uri: "/v1/models/llama/aliases/champion",
                method: .put,
                headers: bearer(f.writer),
                body: try json(AliasBody(version: 4, reason: nil))
            ) { #expect($0.status == .forbidden) }
            try await client.execute(
                uri: "/v1/models/llama/aliases/candidate",
                method: .put,
                headers: bearer(f.writer),
                body: try json(AliasBody(version: 4, reason: nil))
            ) { #expect($0.status == .ok) }
            try await client.execute(
                uri: "/v1/models/llama/versions/4/promote",
                method: .post,
                headers: bearer(f.writer),
                body: try json(StageChangeBody(to: .staging, reason: nil))
            ) { #expect($0.status == .forbidden) }
            // An approver can promote and roll back, but cannot delete or set policies.
            try await client.execute(
                uri: "/v1/models/llama/versions/4/promote",
                method: .post,
                headers: bearer(f.approver),
                body: try json(StageChangeBody(to: .staging, reason: "looks good"))
            ) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/models/llama/versions/3", method: .delete, headers: bearer(f.approver)) {
                #expect($0.status == .forbidden)
            }
            try await client.execute(
                uri: "/v1/models/llama/policy",
                method: .put,
                headers: bearer(f.approver),
                body: try json(PolicyBody(policy: Policy(), reason: nil))
            ) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/v1/tokens", method: .get, headers: bearer(f.approver)) {
                #expect($0.status == .forbidden)
            }
            // An admin can delete.
            try await client.execute(
                uri: "/v1/models/llama/versions/3?reason=cleanup",
                method: .delete,
                headers: bearer(f.admin)
            ) {
                #expect($0.status == .ok)
            }
            // Every write is audited with the token's user, whatever the client claims.
            let log = try f.registry.auditLog(model: "llama")
            #expect(log.first { $0.action == .push && $0.version == 4 }?.actor == "will")
            #expect(log.first { $0.action == .tag && $0.version == 4 }?.actor == "will")
            #expect(log.first { $0.action == .promote && $0.version == 4 }?.actor == "ann")
            #expect(log.first { $0.action == .delete }?.actor == "ada")
        }
    }

    @Test func gatesUseTheAuthenticatedUser() async throws {
        let f = try Self.populated()
        try f.registry.setPolicy(model: "llama", Policy(approvals: [.production: 1]), actor: "ada")
        try await f.application.test(.router) { client in
            // ann created nothing, bob approves: the approval counts for ann's promotion.
            let dir = try f.writeTree("v5", ["w.bin": FixtureData.bytes(count: 10_000, seed: 5)])
            try f.pushLocally(dir, model: "llama", actor: "ann")  // llama@4, created by ann
            try f.registry.promote(try Reference(parsing: "llama@4"), to: .staging, actor: "ann")
            // ann cannot approve her own version: four eyes.
            try await client.execute(
                uri: "/v1/models/llama/versions/4/approve",
                method: .post,
                headers: bearer(f.approver),
                body: try json(StageChangeBody(to: .production, reason: "mine"))
            ) {
                #expect($0.status == .unprocessableContent)
                #expect(errorCode($0) == "refused")
            }
            try await client.execute(
                uri: "/v1/models/llama/versions/4/promote",
                method: .post,
                headers: bearer(f.approver),
                body: try json(StageChangeBody(to: .production, reason: "ship"))
            ) { #expect($0.status == .unprocessableContent) }
            try await client.execute(
                uri: "/v1/models/llama/versions/4/approve",
                method: .post,
                headers: bearer(f.approver2),
                body: try json(StageChangeBody(to: .production, reason: "reviewed"))
            ) { #expect($0.status == .ok) }
            try await client.execute(
                uri: "/v1/models/llama/versions/4/promote",
                method: .post,
                headers: bearer(f.approver),
                body: try json(StageChangeBody(to: .production, reason: "ship"))
            ) { #expect($0.status == .ok) }
            #expect(try f.registry.resolve(try Reference(parsing: "llama@production")).version == 4)
            // Rollback by the approver.
            try await client.execute(
                uri: "/v1/models/llama/rollback",
                method: .post,
                headers: bearer(f.approver),
                body: try json(RollbackBody(to: nil, reason: "incident"))
            ) { #expect($0.status == .ok) }
            #expect(try f.registry.resolve(try Reference(parsing: "llama@production")).version == 1)
        }
    }

    @Test func publicReadAllowsReadsOnly() async throws {
        let f = try Self.populated(publicRead: true)
        try await f.application.test(.router) { client in
            try await client.execute(uri: "/v1/models/llama/versions/production", method: .get) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/v1/models/llama/versions/1/files/config.json", method: .get) {
                #expect($0.status == .ok)
            }
            try await client.execute(
                uri: "/v1/models/llama/rollback",
                method: .post,
                body: try json(RollbackBody(to: nil, reason: "x"))
            ) { #expect($0.status == .unauthorized) }
            try await client.execute(uri: "/v1/chunks/missing", method: .post, body: ByteBuffer()) {
                #expect($0.status == .unauthorized)
            }
            // A bad token is refused even where anonymous reads are allowed.
            try await client.execute(uri: "/v1/models", method: .get, headers: bearer("nope")) {
                #expect($0.status == .unauthorized)
            }
        }
    }

    @Test func listingsAuditAndTokens() async throws {
        let f = try Self.populated()
        try await f.application.test(.router) { client in
            try await client.execute(uri: "/v1/versions?stage=production", method: .get, headers: bearer(f.reader)) {
                response in
                let list =
                    try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as! [[String: Any]]
                #expect(list.count == 1 && list[0]["version"] as? Int == 1)
            }
            try await client.execute(uri: "/v1/models/llama/versions", method: .get, headers: bearer(f.reader)) {
                response in
                let list =
                    try JSONSerialization.jsonObject(with: Data(response.body.readableBytesView)) as! [[String: Any]]
                #expect(list.map { $0["version"] as! Int } == [1, 2, 3])
            }
            try await client.execute(uri: "/v1/audit?model=llama", method: .get, headers: bearer(f.reader)) {
                response in
                #expect((decoded([AuditEntry].self, response)?.count ?? 0) >= 6)
            }
            try await client.execute(uri: "/v1/audit/verify", method: .get, headers: bearer(f.reader)) {
                #expect(decoded(AuditVerification.self, $0)?.ok == true)
            }
            try await client.execute(uri: "/v1/diff?from=llama@1&to=llama@2", method: .get, headers: bearer(f.reader)) {
                response in
                #expect(response.status == .ok)
                #expect(String(buffer: response.body).contains("weights.bin"))
            }
            try await client.execute(uri: "/v1/stats", method: .get, headers: bearer(f.reader)) {
                #expect(decoded(RegistryStatistics.self, $0)?.versions == 3)
            }
            var created: NewToken?
            try await client.execute(
                uri: "/v1/tokens",
                method: .post,
                headers: bearer(f.admin),
                body: try json(TokenBody(user: "ci", role: .writer))
            ) {
                #expect($0.status == .created)
                created = try decode(NewToken.self, $0)
            }
            let token = try #require(created)
            try await client.execute(uri: "/v1/whoami", method: .get, headers: bearer(token.token)) {
                #expect(decoded(Identity.self, $0) == Identity(user: "ci", role: .writer, tokenID: token.record.id))
            }
            try await client.execute(uri: "/v1/tokens/\(token.record.id)", method: .delete, headers: bearer(f.admin)) {
                #expect($0.status == .ok)
            }
            try await client.execute(uri: "/v1/whoami", method: .get, headers: bearer(token.token)) {
                #expect($0.status == .unauthorized)
            }
            // Tokens are stored hashed: the table never holds the token itself.
            let tokens = try f.registry.listTokens()
            #expect(tokens.contains { $0.id == token.record.id && $0.isRevoked })
        }
    }
}
