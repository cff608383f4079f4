import CairnRegistry
import CairnStore
import Foundation

/// A version as the API returns it (`GET /v1/models/{model}/versions/{ref}`, the `show --json`
/// fields): the version record, its aliases, and with a manifest its files (path, size, SHA-256).
///
/// Encoded by hand, flat: the record's fields, `aliases`, then `files` (with a manifest), `tensors`
/// and the point-in-time fields `at`, `stage_at`, `aliases_at` when present. ``decode(_:)`` reads
/// the record, its aliases and the point-in-time fields back.
public struct VersionDocument: Encodable, Sendable {
    /// The version's record and aliases.
    public var info: VersionInfo
    /// Its files, when the document lists them.
    public var manifest: Manifest?
    /// Per file: bytes its distinct chunks take on disk (`stored_bytes` of each file, when known).
    public var stored: [String: Int64]
    /// What the reference named at a past time (`?at=TIME`), if asked.
    public var past: PastResolution?
    /// The version's tensors (`show --tensors`).
    public var tensors: [TensorInfo]?

    /// The document of `info`, with its files, their stored bytes, a past resolution and tensors
    /// when given.
    public init(
        info: VersionInfo,
        manifest: Manifest? = nil,
        stored: [String: Int64] = [:],
        past: PastResolution? = nil,
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

    /// Encodes the document flat (see the type's description).
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
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
                        path: $0.path,
                        size: $0.size,
                        sha256: $0.sha256.hex,
                        chunks: $0.chunks.count,
                        storedBytes: stored[$0.path]
                    )
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
    ///
    /// - Throws: `DecodingError` when `data` is not a version document.
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
