import Foundation

/// Lifecycle stage of a version.
///
/// `experimental` (on push) → `staging` → `production` → `archived`; `archived` → `staging`; any stage
/// → `archived`. At most one version of a model is in `production`.
public enum Stage: String, Codable, Sendable, CaseIterable, CodingKeyRepresentable {
    /// Where every push starts (unless it asks for staging).
    case experimental
    /// Candidates for production.
    case staging
    /// The version serving: at most one per model.
    case production
    /// Retired, kept (a former production version can return by rollback).
    case archived

    /// The stages a policy can gate and a promotion can target: staging and production.
    var isGated: Bool { self == .staging || self == .production }

    /// Whether a version may move from `self` to `target` by promotion (rollback has its own rule).
    public func canMove(to target: Stage) -> Bool {
        switch (self, target) {
        case (.experimental, .staging), (.staging, .production), (.archived, .staging): true
        case (_, .archived): self != .archived
        default: false
        }
    }
}

/// A model as stored: a name, the counter of its versions and its production pointer.
package struct ModelRecord: Codable, Sendable, Equatable {
    /// The model's name.
    package var name: String
    /// When its first version was pushed (ISO 8601 UTC).
    package var createdAt: String
    /// Who pushed its first version.
    package var createdBy: String
    /// The highest version number ever given (numbers are never reused, even after a delete).
    package var latestVersion: Int
    /// The version in production, if any (kept in the same transaction as the versions' stages, so
    /// `MODEL@production` is one lookup).
    package var production: Int?
    /// Versions that were made production (by promotion or rollback), oldest first, each once; a
    /// rollback drops the version it rolls back from. Rollback's default target is the entry before
    /// the current production version.
    package var productionHistory: [Int]

    init(name: String, createdAt: String, createdBy: String, latestVersion: Int = 0) {
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

    package init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        createdAt = try c.decode(String.self, forKey: .createdAt)
        createdBy = try c.decode(String.self, forKey: .createdBy)
        latestVersion = try c.decode(Int.self, forKey: .latestVersion)
        production = try c.decodeIfPresent(Int.self, forKey: .production)
        productionHistory = try c.decodeIfPresent([Int].self, forKey: .productionHistory) ?? []
    }

    package func encode(to encoder: any Encoder) throws {
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
    /// The stage the version is approved for (staging or production).
    public var stage: Stage
    /// Who approved it.
    public var user: String
    /// When (ISO 8601 UTC).
    public var time: String
    /// Why, as they said it.
    public var reason: String?

    init(stage: Stage, user: String, time: String, reason: String?) {
        self.stage = stage
        self.user = user
        self.time = time
        self.reason = reason
    }

    /// Encodes every field, `reason` as null when absent.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
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
    /// The model's name.
    public var model: String
    /// The version's number (1, 2, 3 … per model; never reused).
    public var version: Int
    /// Hex SHA-256 id of the version's manifest (its files).
    public var manifest: String
    /// Where the version stands now.
    public var stage: Stage
    /// Who pushed it.
    public var createdBy: String
    /// When it was pushed (ISO 8601 UTC).
    public var createdAt: String
    /// The push's message (empty when none was given).
    public var message: String
    /// Metrics recorded with the push (`--metric eval_loss=1.83`).
    public var metrics: [String: Double]
    /// Parameters recorded with the push (`--param lr=3e-4`).
    public var params: [String: String]
    /// Tags (`dataset=tickets-v7`): set at push, changed by ``Registry/tag(_:_:actor:)``.
    public var tags: [String: String]
    /// Lineage: the versions this one derives from, as `model@N`.
    public var parents: [String]
    /// Ids of the datasets it was trained on.
    public var datasets: [String]
    /// The run that produced it (a URI), if given.
    public var source: String?
    /// How many files the version has.
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
        model: String,
        version: Int,
        manifest: String,
        stage: Stage,
        createdBy: String,
        createdAt: String,
        message: String,
        metrics: [String: Double],
        params: [String: String],
        tags: [String: String],
        parents: [String],
        datasets: [String],
        source: String?,
        fileCount: Int,
        logicalBytes: Int64,
        newBytes: Int64,
        storedBytes: Int64
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

    /// Decodes a record; records written before the lifecycle fields existed get their defaults.
    ///
    /// - Throws: `DecodingError` when a required field is missing or a field has the wrong type.
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

    /// Encodes every field, absent optionals as null.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
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
    public var reference: String { Reference.text(model: model, version: version) }

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
    /// The model's name.
    public var model: String
    /// The alias's name.
    public var alias: String
    /// The version it points at.
    public var version: Int
    /// Who last set it.
    public var updatedBy: String
    /// When it was last set (ISO 8601 UTC).
    public var updatedAt: String

    enum CodingKeys: String, CodingKey {
        case model, alias, version
        case updatedBy = "updated_by"
        case updatedAt = "updated_at"
    }

    /// `model@alias`.
    public var reference: String { Reference.text(model: model, name: alias) }
}
