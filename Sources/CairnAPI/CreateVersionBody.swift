import CairnRegistry
import CairnStore
import Digest
import Foundation

/// `POST /v1/models/{model}/versions`: a push's metadata and its manifest (base64 of the binary
/// encoding; its id is the SHA-256 of those bytes). Every chunk it references must be stored.
///
/// Every field but `manifest` may be left out (defaults: empty, nil, 0).
public struct CreateVersionBody: Codable, Sendable {
    /// ``PushRequest/message``.
    public var message: String
    /// ``PushRequest/metrics``.
    public var metrics: [String: Double]
    /// ``PushRequest/params``.
    public var params: [String: String]
    /// ``PushRequest/tags``.
    public var tags: [String: String]
    /// ``PushRequest/parents``.
    public var parents: [String]
    /// ``PushRequest/datasets``.
    public var datasets: [String]
    /// ``PushRequest/source``.
    public var source: String?
    /// ``PushRequest/stage``.
    public var stage: Stage?
    /// ``PushRequest/allowEmpty`` (absent: false).
    public var allowEmpty: Bool?
    /// Base64 of ``Manifest/encoded()``.
    public var manifest: String
    /// The manifest's id (hex SHA-256 of its bytes); the server checks it.
    public var manifestID: String?
    /// The upload (`POST /v1/uploads`) holding this push's chunks, committed with the version.
    public var upload: String?
    /// What this push's chunk uploads added (as the server reported them; ignored with `upload`).
    public var newBytes: Int64
    /// See ``newBytes``.
    public var storedBytes: Int64

    /// The body of a push of `request` with `manifest` (encoded and hashed here), reporting what its
    /// chunk uploads added.
    public init(request: PushRequest, manifest: Manifest, newBytes: Int64, storedBytes: Int64) {
        message = request.message
        metrics = request.metrics
        params = request.params
        tags = request.tags
        parents = request.parents
        datasets = request.datasets
        source = request.source
        stage = request.stage
        allowEmpty = request.allowEmpty ? true : nil
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
        r.allowEmpty = allowEmpty ?? false
        return r
    }

    enum CodingKeys: String, CodingKey {
        case message, metrics, params, tags, parents, datasets, source, stage, manifest
        case upload
        case allowEmpty = "allow_empty"
        case manifestID = "manifest_id"
        case newBytes = "new_bytes"
        case storedBytes = "stored_bytes"
    }

    /// Decodes a body; only `manifest` is required.
    ///
    /// - Throws: `DecodingError` when `manifest` is missing or a field has the wrong type.
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
        allowEmpty = try c.decodeIfPresent(Bool.self, forKey: .allowEmpty)
        manifest = try c.decode(String.self, forKey: .manifest)
        manifestID = try c.decodeIfPresent(String.self, forKey: .manifestID)
        upload = try c.decodeIfPresent(String.self, forKey: .upload)
        newBytes = try c.decodeIfPresent(Int64.self, forKey: .newBytes) ?? 0
        storedBytes = try c.decodeIfPresent(Int64.self, forKey: .storedBytes) ?? 0
    }
}
