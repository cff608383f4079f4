import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Foundation
import Testing

/// Round trips of the API bodies whose coding is written by hand, and the binary and path
/// encodings of the wire.
@Suite struct WireBodyTests {
    // MARK: Fixtures

    /// A version record as the registry stores it (records are only made by the registry: decoded here).
    static func record(model: String = "org/llama", version: Int = 3, stage: Stage = .staging) throws -> VersionRecord {
        let json = """
            {"model":"\(model)","version":\(version),"manifest":"\(String(repeating: "ab", count: 32))",
             "stage":"\(stage.rawValue)","created_by":"alice","created_at":"2026-03-10T14:05:00.250Z",
             "message":"fine-tune","metrics":{"eval_loss":1.83},"params":{"lr":"3e-4"},
             "tags":{"dataset":"tickets-v7"},"parents":["llama-base@2"],"datasets":["tickets-v7"],
             "source":"runs:/42","file_count":1,"logical_bytes":5,"new_bytes":5,"stored_bytes":4,
             "ever_production":true,"approvals":[{"stage":"production","user":"bob","time":"2026-03-11T09:00:00.000Z","reason":null}],
             "stage_changed_at":"2026-03-11T10:00:00.000Z"}
            """
        return try JSONDecoder().decode(VersionRecord.self, from: Data(json.utf8))
    }

    static func manifest() -> Manifest {
        let chunk = ChunkRef(id: SHA256Digest.hash(Array("hello".utf8)), length: 5)
        return Manifest(files: [
            FileEntry(
                path: "dir name/model.safetensors",
                size: 5,
                sha256: SHA256Digest.hash(Array("hello".utf8)),
                chunks: [chunk]
            )
        ])
    }

    static func object(_ data: Data) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    // MARK: VersionDocument

    @Test func versionDocumentRoundTripsRecordAliasesAndPastResolution() throws {
        let record = try Self.record()
        let info = VersionInfo(record: record, aliases: ["champion", "canary"])
        let past = PastResolution(
            record: record,
            stage: .production,
            aliases: ["champion"],
            at: "2026-03-12T00:00:00.000Z"
        )
        let document = VersionDocument(
            info: info,
            manifest: Self.manifest(),
            stored: ["dir name/model.safetensors": 4],
            past: past
        )
        let data = try JSONEncoder().encode(document)

        let decoded = try VersionDocument.decode(data)
        #expect(decoded.info == info)
        #expect(decoded.past == past)

        // Flat and snake_case, as docs/http-api.md shows it.
        let json = try Self.object(data)
        #expect(json["model"] as? String == "org/llama")
        #expect(json["reference"] as? String == "org/llama@3")
        #expect(json["created_by"] as? String == "alice")
        #expect(json["stage_at"] as? String == "production")
        #expect(json["aliases_at"] as? [String] == ["champion"])
        #expect(json["at"] as? String == "2026-03-12T00:00:00.000Z")
        let files = try #require(json["files"] as? [[String: Any]])
        #expect(files.count == 1)
        #expect(files.first?["path"] as? String == "dir name/model.safetensors")
        #expect(files.first?["sha256"] as? String == SHA256Digest.hash(Array("hello".utf8)).hex)
        #expect(files.first?["chunks"] as? Int == 1)
        #expect(files.first?["stored_bytes"] as? Int == 4)
        #expect(json["tensors"] == nil)
    }

    @Test func versionDocumentWithoutPastOrManifest() throws {
        let info = VersionInfo(record: try Self.record(), aliases: [])
        let data = try JSONEncoder().encode(VersionDocument(info: info))
        let decoded = try VersionDocument.decode(data)
        #expect(decoded.info == info)
        #expect(decoded.past == nil)
        let json = try Self.object(data)
        #expect(json["files"] == nil)
        #expect(json["at"] == nil)
        #expect(json["stage_at"] == nil)
    }

    @Test func versionDocumentWithoutAliasesDecodesToNone() throws {
        // A bare version record (what an older server might send): no aliases, no point in time.
        let record = try Self.record()
        let decoded = try VersionDocument.decode(try JSONEncoder().encode(record))
        #expect(decoded.info == VersionInfo(record: record, aliases: []))
        #expect(decoded.past == nil)
    }

    @Test func versionDocumentThatIsNotOneFailsToDecode() {
        #expect(throws: DecodingError.self) { try VersionDocument.decode(Data("{\"model\":\"m\"}".utf8)) }
        #expect(throws: (any Error).self) { try VersionDocument.decode(Data("not json".utf8)) }
    }

    // MARK: CreateVersionBody

    @Test func createVersionBodyRoundTripsAPush() throws {
        var request = PushRequest(model: "org/llama", actor: "alice")
        request.message = "fine-tune"
        request.metrics = ["eval_loss": 1.83]
        request.params = ["lr": "3e-4"]
        request.tags = ["dataset": "tickets-v7"]
        request.parents = ["llama-base@2"]
        request.datasets = ["tickets-v7"]
        request.source = "runs:/42"
        request.stage = .staging
        let manifest = Self.manifest()
        var body = CreateVersionBody(request: request, manifest: manifest, newBytes: 5, storedBytes: 4)
        body.upload = "u1"

        // The manifest travels as base64 of its binary encoding, with its id.
        #expect(Data(base64Encoded: body.manifest).map(Array.init) == manifest.encoded())
        #expect(body.manifestID == SHA256Digest.hash(manifest.encoded()).hex)

        let data = try JSONEncoder().encode(body)
        let json = try Self.object(data)
        #expect(json["manifest_id"] as? String == body.manifestID)
        #expect(json["new_bytes"] as? Int == 5)
        #expect(json["stored_bytes"] as? Int == 4)
        #expect(json["upload"] as? String == "u1")

        let decoded = try JSONDecoder().decode(CreateVersionBody.self, from: data)
        #expect(decoded.message == body.message)
        #expect(decoded.metrics == body.metrics)
        #expect(decoded.params == body.params)
        #expect(decoded.tags == body.tags)
        #expect(decoded.parents == body.parents)
        #expect(decoded.datasets == body.datasets)
        #expect(decoded.source == body.source)
        #expect(decoded.stage == body.stage)
        #expect(decoded.manifest == body.manifest)
        #expect(decoded.manifestID == body.manifestID)
        #expect(decoded.upload == "u1")
        #expect(decoded.newBytes == 5)
        #expect(decoded.storedBytes == 4)

        // The server makes the request its own, with the authenticated user as the actor.
        let server = decoded.request(model: "org/llama", actor: "token-user")
        #expect(server.model == "org/llama")
        #expect(server.actor == "token-user")
        #expect(server.message == request.message)
        #expect(server.metrics == request.metrics)
        #expect(server.params == request.params)
        #expect(server.tags == request.tags)
        #expect(server.parents == request.parents)
        #expect(server.datasets == request.datasets)
        #expect(server.source == request.source)
        #expect(server.stage == request.stage)
    }

    @Test func createVersionBodyNeedsOnlyItsManifest() throws {
        let decoded = try JSONDecoder().decode(CreateVersionBody.self, from: Data(#"{"manifest":"AAAA"}"#.utf8))
        #expect(decoded.manifest == "AAAA")
        #expect(decoded.message == "")
        #expect(decoded.metrics.isEmpty && decoded.params.isEmpty && decoded.tags.isEmpty)
        #expect(decoded.parents.isEmpty && decoded.datasets.isEmpty)
        #expect(decoded.source == nil && decoded.stage == nil && decoded.manifestID == nil && decoded.upload == nil)
        #expect(decoded.newBytes == 0 && decoded.storedBytes == 0)

        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(CreateVersionBody.self, from: Data(#"{"message":"no manifest"}"#.utf8))
        }
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(CreateVersionBody.self, from: Data(#"{"manifest":"AAAA","stage":"nowhere"}"#.utf8))
        }
    }

    // MARK: ChunkIDList

    @Test func chunkIDListRoundTrips() throws {
        let ids = (0..<5).map { SHA256Digest.hash(Array("chunk \($0)".utf8)) }
        let bytes = ChunkIDList.encode(ids)
        #expect(bytes.count == 5 * 32)
        #expect(Array(bytes[32..<64]) == ids[1].bytes)
        #expect(bytes.withUnsafeBytes { ChunkIDList.decode($0) } == ids)
        #expect(ChunkIDList.encode([]).isEmpty)
        #expect([UInt8]().withUnsafeBytes { ChunkIDList.decode($0) } == [])
    }

    @Test(arguments: [1, 31, 33, 63, 65, 5 * 32 - 1])
    func chunkIDListOfABadLengthIsRefused(_ count: Int) {
        let bytes = [UInt8](repeating: 0xAB, count: count)
        #expect(bytes.withUnsafeBytes { ChunkIDList.decode($0) } == nil)
    }

    // MARK: PathSegment

    @Test func pathSegmentEncodesAnOrganizationsModelAsOneSegment() {
        #expect(PathSegment.encode("org/name") == "org%2Fname")
        #expect(PathSegment.encode("llama-support") == "llama-support")
        #expect(PathSegment.encode("a.b_c~d") == "a.b_c~d")
    }

    @Test func pathSegmentEncodesSpacesAndPercent() {
        #expect(PathSegment.encode("my model 100%") == "my%20model%20100%25")
        #expect(PathSegment.encode("%2F") == "%252F")
        #expect(PathSegment.encode("é?#&=+") == "%C3%A9%3F%23%26%3D%2B")
    }

    @Test func pathSegmentEncodesAFilePathComponentByComponent() {
        #expect(PathSegment.encodePath("dir name/file 50%.bin") == "dir%20name/file%2050%25.bin")
        #expect(PathSegment.encodePath("model-00001-of-00002.safetensors") == "model-00001-of-00002.safetensors")
        #expect(PathSegment.encodePath("a//b/") == "a//b/")
    }
}
