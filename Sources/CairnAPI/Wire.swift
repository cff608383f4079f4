import CairnRegistry
import CairnStore
import Digest
import Foundation

// The JSON bodies of the server's API (docs/http-api.md), shared by the server and the client.
// Field names are snake_case and stable.

/// `GET /v1/config`: what a client needs to chunk like the server and size its batches.
public struct ServerConfig: Codable, Sendable, Equatable {
    public var chunker: ChunkerParameters
    public var compressionLevel: Int
    /// Largest request body of `POST /v1/chunks` and largest bundle `POST /v1/chunks/fetch` returns.
    public var maxBatchBytes: Int
    /// Largest number of ids in one `POST /v1/chunks/missing` or `POST /v1/chunks/fetch`.
    public var maxBatchIDs: Int
    public var version: String
    /// Whether `POST /v1/chunks?upload=ID&assign_ids=1` takes chunks without ids (all zeros) and
    /// answers with the ids it computed (nil from older servers, which do not).
    public var assignsChunkIDs: Bool?
    /// Whether `POST /v1/chunks/fetch?deltas=1` sends chunks stored as deltas as stored, for a
    /// client that holds their references (nil from older servers, which decode them always).
    public var sendsDeltas: Bool?

    public init(
        chunker: ChunkerParameters,
        compressionLevel: Int,
        maxBatchBytes: Int,
        maxBatchIDs: Int,
        version: String,
        assignsChunkIDs: Bool? = true,
        sendsDeltas: Bool? = true
    ) {
        self.chunker = chunker
        self.compressionLevel = compressionLevel
        self.maxBatchBytes = maxBatchBytes
        self.maxBatchIDs = maxBatchIDs
        self.version = version
        self.assignsChunkIDs = assignsChunkIDs
        self.sendsDeltas = sendsDeltas
    }

    enum CodingKeys: String, CodingKey {
        case chunker, version
        case compressionLevel = "compression_level"
        case maxBatchBytes = "max_batch_bytes"
        case maxBatchIDs = "max_batch_ids"
        case assignsChunkIDs = "assigns_chunk_ids"
        case sendsDeltas = "sends_deltas"
    }
}

/// The error body of every failed request: `{"error":{"code":…,"message":…}}`, plus the ids of
/// missing chunks for `missing_chunks`.
public struct ErrorBody: Codable, Sendable {
    public struct Detail: Codable, Sendable {
        public var code: String
        public var message: String
        public var missing: [String]?

        public init(code: String, message: String, missing: [String]? = nil) {
            self.code = code
            self.message = message
            self.missing = missing
        }
    }

    public var error: Detail

    public init(code: String, message: String, missing: [String]? = nil) {
        error = Detail(code: code, message: message, missing: missing)
    }
}

/// A version as the API returns it (`GET /v1/models/{model}/versions/{ref}`, the `show --json`
/// fields): the version record, its aliases, and with a manifest its files (path, size, SHA-256).
public struct VersionDocument: Encodable, Sendable {
    public var info: VersionInfo
    public var manifest: Manifest?
    /// Per file: bytes its distinct chunks take on disk (`stored_bytes` of each file, when known).
    public var stored: [String: Int64]
    public var past: PastResolution?
    /// The version's tensors (`show --tensors`).
    public var tensors: [TensorInfo]?

    public init(
        info: VersionInfo, manifest: Manifest? = nil, stored: [String: Int64] = [:], past: PastResolution? = nil,
        tensors: [TensorInfo]? = nil
    ) {
        self.info = info
        self.manifest = manifest
        self.stored = stored
        self.past = past
        self.tensors = tensors
    }

    struct FileView: Codable {
        var path: String
        var size: Int64
        var sha256: String
        var chunks: Int
        var storedBytes: Int64?

        enum CodingKeys: String, CodingKey {
            case path, size, sha256, chunks
            case storedBytes = "stored_bytes"
        }
    }

    enum CodingKeys: String, CodingKey {
        case model, version, reference, manifest, stage, aliases, message, metrics, params, tags, parents, datasets,
            source
        case files, approvals, at, tensors
        case createdBy = "created_by"
        case createdAt = "created_at"
        case logicalBytes = "logical_bytes"
        case newBytes = "new_bytes"
        case storedBytes = "stored_bytes"
        case fileCount = "file_count"
        case everProduction = "ever_production"
        case stageChangedAt = "stage_changed_at"
        case stageAt = "stage_at"
        case aliasesAt = "aliases_at"
    }

    public func encode(to encoder: any Encoder) throws {
        let version = info.record
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version.model, forKey: .model)
        try c.encode(version.version, forKey: .version)
        try c.encode(version.reference, forKey: .reference)
        try c.encode(version.manifest, forKey: .manifest)
        try c.encode(version.stage, forKey: .stage)
        try c.encode(info.aliases, forKey: .aliases)
        try c.encode(version.createdBy, forKey: .createdBy)
        try c.encode(version.createdAt, forKey: .createdAt)
        try c.encode(version.message, forKey: .message)
        try c.encode(version.metrics, forKey: .metrics)
        try c.encode(version.params, forKey: .params)
        try c.encode(version.tags, forKey: .tags)
        try c.encode(version.parents, forKey: .parents)
        try c.encode(version.datasets, forKey: .datasets)
        try c.encode(version.source, forKey: .source)
        try c.encode(version.fileCount, forKey: .fileCount)
        try c.encode(version.logicalBytes, forKey: .logicalBytes)
        try c.encode(version.newBytes, forKey: .newBytes)
        try c.encode(version.storedBytes, forKey: .storedBytes)
        try c.encode(version.everProduction, forKey: .everProduction)
        try c.encode(version.approvals, forKey: .approvals)
        try c.encode(version.stageChangedAt, forKey: .stageChangedAt)
        if let manifest {
            try c.encode(
                manifest.files.map {
                    FileView(
                        path: $0.path, size: $0.size, sha256: $0.sha256.hex, chunks: $0.chunks.count,
                        storedBytes: stored[$0.path])
                },
                forKey: .files
            )
        }
        if let tensors { try c.encode(tensors, forKey: .tensors) }
        if let past {
            try c.encode(past.at, forKey: .at)
            try c.encode(past.stage, forKey: .stageAt)
            try c.encode(past.aliases, forKey: .aliasesAt)
        }
    }

    /// Decodes a version document: the record, its aliases, and the point-in-time fields if present.
    public static func decode(_ data: Data) throws -> (info: VersionInfo, past: PastResolution?) {
        let record = try JSONDecoder().decode(VersionRecord.self, from: data)
        let extra = try JSONDecoder().decode(Extra.self, from: data)
        let info = VersionInfo(record: record, aliases: extra.aliases ?? [])
        var past: PastResolution?
        if let at = extra.at, let stage = extra.stageAt {
            past = PastResolution(record: record, stage: stage, aliases: extra.aliasesAt ?? [], at: at)
        }
        return (info, past)
    }

    private struct Extra: Decodable {
        var aliases: [String]?
        var at: String?
        var stageAt: Stage?
        var aliasesAt: [String]?

        enum CodingKeys: String, CodingKey {
            case aliases, at
            case stageAt = "stage_at"
            case aliasesAt = "aliases_at"
        }
    }
}

/// `POST /v1/models/{model}/versions`: a push's metadata and its manifest (base64 of the binary
/// encoding; its id is the SHA-256 of those bytes). Every chunk it references must be stored.
public struct CreateVersionBody: Codable, Sendable {
    public var message: String
    public var metrics: [String: Double]
    public var params: [String: String]
    public var tags: [String: String]
    public var parents: [String]
    public var datasets: [String]
    public var source: String?
    public var stage: Stage?
    /// Base64 of ``Manifest/encoded()``.
    public var manifest: String
    /// The manifest's id (hex SHA-256 of its bytes); the server checks it.
    public var manifestID: String?
    /// The upload (`POST /v1/uploads`) holding this push's chunks, committed with the version.
    public var upload: String?
    /// What this push's chunk uploads added (as the server reported them; ignored with `upload`).
    public var newBytes: Int64
    public var storedBytes: Int64

    public init(request: PushRequest, manifest: Manifest, newBytes: Int64, storedBytes: Int64) {
        message = request.message
        metrics = request.metrics
        params = request.params
        tags = request.tags
        parents = request.parents
        datasets = request.datasets
        source = request.source
        stage = request.stage
        let bytes = manifest.encoded()
        self.manifest = Data(bytes).base64EncodedString()
        manifestID = SHA256Digest.hash(bytes).hex
        self.newBytes = newBytes
        self.storedBytes = storedBytes
    }

    /// The push request with `actor` as its author (the authenticated user, never the client's claim).
    public func request(model: String, actor: String) -> PushRequest {
        var r = PushRequest(model: model, actor: actor)
        r.message = message
        r.metrics = metrics
        r.params = params
        r.tags = tags
        r.parents = parents
        r.datasets = datasets
        r.source = source
        r.stage = stage
        return r
    }

    enum CodingKeys: String, CodingKey {
        case message, metrics, params, tags, parents, datasets, source, stage, manifest
        case upload
        case manifestID = "manifest_id"
        case newBytes = "new_bytes"
        case storedBytes = "stored_bytes"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        message = try c.decodeIfPresent(String.self, forKey: .message) ?? ""
        metrics = try c.decodeIfPresent([String: Double].self, forKey: .metrics) ?? [:]
        params = try c.decodeIfPresent([String: String].self, forKey: .params) ?? [:]
        tags = try c.decodeIfPresent([String: String].self, forKey: .tags) ?? [:]
        parents = try c.decodeIfPresent([String].self, forKey: .parents) ?? []
        datasets = try c.decodeIfPresent([String].self, forKey: .datasets) ?? []
        source = try c.decodeIfPresent(String.self, forKey: .source)
        stage = try c.decodeIfPresent(Stage.self, forKey: .stage)
        manifest = try c.decode(String.self, forKey: .manifest)
        manifestID = try c.decodeIfPresent(String.self, forKey: .manifestID)
        upload = try c.decodeIfPresent(String.self, forKey: .upload)
        newBytes = try c.decodeIfPresent(Int64.self, forKey: .newBytes) ?? 0
        storedBytes = try c.decodeIfPresent(Int64.self, forKey: .storedBytes) ?? 0
    }
}

/// `POST …/promote`, `…/approve`: the target stage, a reason and evidence.
public struct StageChangeBody: Codable, Sendable {
    public var to: Stage
    public var reason: String?
    public var evidence: [String: String]?

    public init(to: Stage, reason: String?, evidence: [String: String]? = nil) {
        self.to = to
        self.reason = reason
        self.evidence = evidence
    }
}

/// `POST /v1/models/{model}/rollback`.
public struct RollbackBody: Codable, Sendable {
    public var to: Int?
    public var reason: String

    public init(to: Int?, reason: String) {
        self.to = to
        self.reason = reason
    }
}

/// `POST …/archive`, `DELETE …/versions/{ref}` (as a query), alias removal: a reason.
public struct ReasonBody: Codable, Sendable {
    public var reason: String?
    public var evidence: [String: String]?

    public init(reason: String?, evidence: [String: String]? = nil) {
        self.reason = reason
        self.evidence = evidence
    }
}

/// `PUT /v1/models/{model}/aliases/{alias}`.
public struct AliasBody: Codable, Sendable {
    public var version: Int
    public var reason: String?

    public init(version: Int, reason: String?) {
        self.version = version
        self.reason = reason
    }
}

/// `POST …/tags` (`tags`) and `POST …/untag` (`keys`).
public struct TagsBody: Codable, Sendable {
    public var tags: [String: String]?
    public var keys: [String]?

    public init(tags: [String: String]? = nil, keys: [String]? = nil) {
        self.tags = tags
        self.keys = keys
    }
}

/// `PUT /v1/models/{model}/policy`: the whole policy and a reason.
public struct PolicyBody: Codable, Sendable {
    public var policy: Policy
    public var reason: String?

    public init(policy: Policy, reason: String?) {
        self.policy = policy
        self.reason = reason
    }
}

/// `GET /v1/models/{model}/policy`.
public struct PolicyDocument: Codable, Sendable {
    public var model: String
    public var policy: Policy

    public init(model: String, policy: Policy) {
        self.model = model
        self.policy = policy
    }
}

/// `POST /v1/tokens`.
public struct TokenBody: Codable, Sendable {
    public var user: String
    public var role: Role

    public init(user: String, role: Role) {
        self.user = user
        self.role = role
    }
}

/// `GET /v1/whoami`.
public struct Identity: Codable, Sendable, Equatable {
    public var user: String?
    public var role: Role?
    public var tokenID: String?

    public init(user: String?, role: Role?, tokenID: String?) {
        self.user = user
        self.role = role
        self.tokenID = tokenID
    }

    enum CodingKeys: String, CodingKey {
        case user, role
        case tokenID = "token_id"
    }
}

/// Binary lists of chunk ids (`POST /v1/chunks/missing`, `POST /v1/chunks/fetch`): 32 bytes each.
public enum ChunkIDList {
    public static func encode(_ ids: [SHA256Digest]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: ids.count * 32)
        out.withUnsafeMutableBytes { raw in
            for (i, id) in ids.enumerated() { id.store(to: raw.baseAddress! + i * 32) }
        }
        return out
    }

    /// Decodes a list; nil when its length is not a multiple of 32.
    public static func decode(_ b: UnsafeRawBufferPointer) -> [SHA256Digest]? {
        guard b.count % 32 == 0 else { return nil }
        return (0..<b.count / 32).map {
            SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[$0 * 32..<$0 * 32 + 32]))
        }
    }
}

/// Percent-encoding of path segments (a model `org/name` travels as `org%2Fname`).
public enum PathSegment {
    static let unreserved = CharacterSet(
        charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
    )

    public static func encode(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: unreserved) ?? segment
    }

    /// A file path: each component encoded, `/` kept.
    public static func encodePath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(separator: "/")
    }
}

/// `POST /v1/uploads`: an upload that stages chunks until a version commits them.
public struct UploadCreated: Codable, Sendable {
    public var upload: String

    public init(upload: String) { self.upload = upload }
}
