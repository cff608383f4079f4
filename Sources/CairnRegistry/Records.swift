import Foundation

/// Lifecycle stage of a version.
///
/// `experimental` (on push) → `staging` → `production` → `archived`; `archived` → `staging`; any stage
/// → `archived`. At most one version of a model is in `production`.
public enum Stage: String, Codable, Sendable, CaseIterable, CodingKeyRepresentable {
    case experimental, staging, production, archived

    /// Whether a version may move from `self` to `target` by promotion (rollback has its own rule).
    public func canMove(to target: Stage) -> Bool {
        switch (self, target) {
        case (.experimental, .staging), (.staging, .production), (.archived, .staging): true
        case (_, .archived): self != .archived
        default: false
        }
    }
}

/// A model: a name, the counter of its versions and its production pointer.
public struct ModelRecord: Codable, Sendable, Equatable {
    public var name: String
    public var createdAt: String
    public var createdBy: String
    /// The highest version number ever given (numbers are never reused, even after a delete).
    public var latestVersion: Int
    /// The version in production, if any (kept in the same transaction as the versions' stages, so
    /// `MODEL@production` is one lookup).
    public var production: Int?
    /// Versions that were made production (by promotion or rollback), oldest first, each once; a
    /// rollback drops the version it rolls back from. Rollback's default target is the entry before
    /// the current production version.
    public var productionHistory: [Int]

    public init(name: String, createdAt: String, createdBy: String, latestVersion: Int = 0) {
        self.name = name
        self.createdAt = createdAt
        self.createdBy = createdBy
        self.latestVersion = latestVersion
        production = nil
        productionHistory = []
    }

    enum CodingKeys: String, CodingKey {
        case name, production
        case createdAt = "created_at"
        case createdBy = "created_by"
        case latestVersion = "latest_version"
        case productionHistory = "production_history"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        createdAt = try c.decode(String.self, forKey: .createdAt)
        createdBy = try c.decode(String.self, forKey: .createdBy)
        latestVersion = try c.decode(Int.self, forKey: .latestVersion)
        production = try c.decodeIfPresent(Int.self, forKey: .production)
        productionHistory = try c.decodeIfPresent([Int].self, forKey: .productionHistory) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(name, forKey: .name)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(createdBy, forKey: .createdBy)
        try c.encode(latestVersion, forKey: .latestVersion)
        try c.encode(production, forKey: .production)
        try c.encode(productionHistory, forKey: .productionHistory)
    }
}

/// An approval of a version for a stage.
public struct Approval: Codable, Sendable, Equatable {
    public var stage: Stage
    public var user: String
    public var time: String
    public var reason: String?

    public init(stage: Stage, user: String, time: String, reason: String?) {
        self.stage = stage
        self.user = user
        self.time = time
        self.reason = reason
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(stage, forKey: .stage)
        try c.encode(user, forKey: .user)
        try c.encode(time, forKey: .time)
        try c.encode(reason, forKey: .reason)
    }
}

/// One version of a model: what was pushed, by whom, when, with which metadata, and where it stands.
public struct VersionRecord: Codable, Sendable, Equatable {
    public var model: String
    public var version: Int
    /// Hex SHA-256 id of the version's manifest (its files).
    public var manifest: String
    public var stage: Stage
    public var createdBy: String
    public var createdAt: String
    public var message: String
    public var metrics: [String: Double]
    public var params: [String: String]
    public var tags: [String: String]
    /// Lineage: the versions this one derives from, as `model@N`.
    public var parents: [String]
    public var datasets: [String]
    public var source: String?
    public var fileCount: Int
    /// Sum of the version's file sizes.
    public var logicalBytes: Int64
    /// Raw bytes of the chunks this version's push added to the store.
    public var newBytes: Int64
    /// Bytes on disk of the packs this version's push added.
    public var storedBytes: Int64
    /// Whether the version has ever been in production (it then cannot be deleted, and rollback may
    /// return to it).
    public var everProduction: Bool = false
    /// Approvals recorded for this version, oldest first.
    public var approvals: [Approval] = []
    /// When the stage last changed (the push time until then).
    public var stageChangedAt: String?

    enum CodingKeys: String, CodingKey {
        case model, version, manifest, stage, message, metrics, params, tags, parents, datasets, source, approvals
        case createdBy = "created_by"
        case createdAt = "created_at"
        case fileCount = "file_count"
        case logicalBytes = "logical_bytes"
        case newBytes = "new_bytes"
        case storedBytes = "stored_bytes"
        case everProduction = "ever_production"
        case stageChangedAt = "stage_changed_at"
    }

    init(
        model: String, version: Int, manifest: String, stage: Stage, createdBy: String, createdAt: String,
        message: String, metrics: [String: Double], params: [String: String], tags: [String: String],
        parents: [String], datasets: [String], source: String?, fileCount: Int, logicalBytes: Int64,
        newBytes: Int64, storedBytes: Int64
    ) {
        self.model = model
        self.version = version
        self.manifest = manifest
        self.stage = stage
        self.createdBy = createdBy
        self.createdAt = createdAt
        self.message = message
        self.metrics = metrics
        self.params = params
        self.tags = tags
        self.parents = parents
        self.datasets = datasets
        self.source = source
        self.fileCount = fileCount
        self.logicalBytes = logicalBytes
        self.newBytes = newBytes
        self.storedBytes = storedBytes
        self.stageChangedAt = createdAt
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        model = try c.decode(String.self, forKey: .model)
        version = try c.decode(Int.self, forKey: .version)
        manifest = try c.decode(String.self, forKey: .manifest)
        stage = try c.decode(Stage.self, forKey: .stage)
        createdBy = try c.decode(String.self, forKey: .createdBy)
        createdAt = try c.decode(String.self, forKey: .createdAt)
        message = try c.decode(String.self, forKey: .message)
        metrics = try c.decode([String: Double].self, forKey: .metrics)
        params = try c.decode([String: String].self, forKey: .params)
        tags = try c.decode([String: String].self, forKey: .tags)
        parents = try c.decode([String].self, forKey: .parents)
        datasets = try c.decode([String].self, forKey: .datasets)
        source = try c.decodeIfPresent(String.self, forKey: .source)
        fileCount = try c.decode(Int.self, forKey: .fileCount)
        logicalBytes = try c.decode(Int64.self, forKey: .logicalBytes)
        newBytes = try c.decode(Int64.self, forKey: .newBytes)
        storedBytes = try c.decode(Int64.self, forKey: .storedBytes)
        // Fields added with the lifecycle; records written before it lack them.
        everProduction = try c.decodeIfPresent(Bool.self, forKey: .everProduction) ?? (stage == .production)
        approvals = try c.decodeIfPresent([Approval].self, forKey: .approvals) ?? []
        stageChangedAt = try c.decodeIfPresent(String.self, forKey: .stageChangedAt)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(version, forKey: .version)
        try c.encode(manifest, forKey: .manifest)
        try c.encode(stage, forKey: .stage)
        try c.encode(createdBy, forKey: .createdBy)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(message, forKey: .message)
        try c.encode(metrics, forKey: .metrics)
        try c.encode(params, forKey: .params)
        try c.encode(tags, forKey: .tags)
        try c.encode(parents, forKey: .parents)
        try c.encode(datasets, forKey: .datasets)
        try c.encode(source, forKey: .source)
        try c.encode(fileCount, forKey: .fileCount)
        try c.encode(logicalBytes, forKey: .logicalBytes)
        try c.encode(newBytes, forKey: .newBytes)
        try c.encode(storedBytes, forKey: .storedBytes)
        try c.encode(everProduction, forKey: .everProduction)
        try c.encode(approvals, forKey: .approvals)
        try c.encode(stageChangedAt, forKey: .stageChangedAt)
    }

    /// `model@N`.
    public var reference: String { "\(model)@\(version)" }

    /// Distinct users other than the creator who approved this version for `stage`, in order.
    public func approvers(for stage: Stage) -> [String] {
        var seen = Set<String>()
        return approvals.compactMap { a in
            guard a.stage == stage, a.user != createdBy, seen.insert(a.user).inserted else { return nil }
            return a.user
        }
    }
}

/// A named pointer to a version of a model (`champion`, `challenger`, `canary`).
public struct AliasRecord: Codable, Sendable, Equatable {
    public var model: String
    public var alias: String
    public var version: Int
    public var updatedBy: String
    public var updatedAt: String

    enum CodingKeys: String, CodingKey {
        case model, alias, version
        case updatedBy = "updated_by"
        case updatedAt = "updated_at"
    }

    /// `model@alias`.
    public var reference: String { "\(model)@\(alias)" }
}

enum RecordCoding {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw RegistryError(.corruption, "the stored record of \(what) is damaged: \(error)")
        }
    }

    /// The current time as ISO 8601 UTC with milliseconds, e.g. `2026-11-29T13:34:13.123Z`.
    static func now() -> String { format(Date()) }

    /// `date` as ISO 8601 UTC with milliseconds. Strings in this form sort like the times they name.
    static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}
