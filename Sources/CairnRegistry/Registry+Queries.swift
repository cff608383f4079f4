import CairnStore

extension Registry {
    /// Every model, sorted by name, with its version count, latest and production version.
    ///
    /// - Throws: ``RegistryError`` with `.corruption` for a damaged record, `.io`.
    public func listModels() throws -> [ModelSummary] {
        try storeCall {
            try store.readMetadata { txn in
                try txn.scan(models).map { entry in
                    let model = try RecordCoding.decode(ModelRecord.self, entry.value, what: "a model")
                    let all = try versions(of: model.name, in: txn)
                    return ModelSummary(
                        model: model.name,
                        versions: all.count,
                        latest: all.last?.version,
                        production: model.production,
                        logicalBytes: all.reduce(0) { $0 + $1.logicalBytes },
                        updatedAt: all.last?.createdAt ?? model.createdAt
                    )
                }
            }
        }
    }

    /// The versions of `model`, oldest first.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a malformed name, `.notFound` when there is
    ///   no such model.
    public func listVersions(of model: String) throws -> [VersionRecord] {
        try ModelName.validate(model)
        return try storeCall {
            try store.readMetadata { txn in
                guard try txn.get(models, Self.modelKey(model)) != nil else {
                    throw RegistryError(.notFound, "no model named \(model)")
                }
                return try versions(of: model, in: txn)
            }
        }
    }

    /// The version a reference names, with its aliases.
    ///
    /// - Throws: ``RegistryError`` as ``resolve(_:)``.
    public func info(_ reference: Reference) throws -> VersionInfo {
        try storeCall {
            try store.readMetadata { txn in
                let record = try resolve(reference, in: txn)
                let names = try aliases(of: record.model, in: txn).filter { $0.version == record.version }.map(\.alias)
                return VersionInfo(record: record, aliases: names.sorted())
            }
        }
    }

    /// Versions matching `query`, by model name then version number.
    ///
    /// `stage: .production` without other filters reads only the models' production pointers.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a malformed model name, `.notFound` for a
    ///   model that does not exist.
    public func findVersions(_ query: VersionQuery) throws -> [VersionInfo] {
        if let model = query.model { try ModelName.validate(model) }
        return try storeCall {
            try store.readMetadata { txn in
                var records: [VersionRecord]
                if let model = query.model {
                    _ = try self.model(model, in: txn)
                    records = try versions(of: model, in: txn)
                } else if query.stage == .production {
                    records = try txn.scan(models).compactMap { item in
                        let model = try RecordCoding.decode(ModelRecord.self, item.value, what: "a model")
                        return try model.production.flatMap { try version(model.name, $0, in: txn) }
                    }
                } else {
                    records = try txn.scan(versions).map {
                        try RecordCoding.decode(VersionRecord.self, $0.value, what: "a version")
                    }
                }
                records = records.filter(query.matches)
                var aliasCache: [String: [Int: [String]]] = [:]
                return try records.map { record in
                    if aliasCache[record.model] == nil {
                        aliasCache[record.model] = Dictionary(
                            grouping: try aliases(of: record.model, in: txn),
                            by: \.version
                        )
                        .mapValues { $0.map(\.alias).sorted() }
                    }
                    return VersionInfo(record: record, aliases: aliasCache[record.model]?[record.version] ?? [])
                }
            }
        }
    }
}

/// One line of `ls`: a model with its version count, latest and production version.
public struct ModelSummary: Codable, Sendable, Equatable {
    /// The model's name.
    public var model: String
    /// How many versions it has (deleted ones not counted).
    public var versions: Int
    /// Its highest live version, if any.
    public var latest: Int?
    /// Its version in production, if any.
    public var production: Int?
    /// The sum of the file sizes of its versions.
    public var logicalBytes: Int64
    /// When its latest version was pushed (ISO 8601 UTC; the model's creation time when it has none).
    public var updatedAt: String

    enum CodingKeys: String, CodingKey {
        case model, versions, latest, production
        case logicalBytes = "logical_bytes"
        case updatedAt = "updated_at"
    }
}

/// Which versions `ls` lists: all conditions must hold.
public struct VersionQuery: Sendable, Equatable {
    /// Only versions of this model.
    public var model: String?
    /// Only versions in this stage.
    public var stage: Stage?
    /// Tags the version must carry with exactly these values.
    public var tags: [String: String]
    /// Metric conditions (`eval_loss<2`); a version without the metric does not match.
    public var metrics: [MetricCondition]

    /// A query for the versions that meet every condition given (all versions without any).
    public init(
        model: String? = nil,
        stage: Stage? = nil,
        tags: [String: String] = [:],
        metrics: [MetricCondition] = []
    ) {
        self.model = model
        self.stage = stage
        self.tags = tags
        self.metrics = metrics
    }

    func matches(_ version: VersionRecord) -> Bool {
        if let stage, version.stage != stage { return false }
        for (k, v) in tags where version.tags[k] != v { return false }
        return metrics.allSatisfy { $0.matches(version.metrics) }
    }
}

/// A version with the aliases that point at it.
public struct VersionInfo: Sendable, Equatable {
    /// The version's record.
    public var record: VersionRecord
    /// Alias names, sorted.
    public var aliases: [String]

    /// `record` with the `aliases` that point at it (as the registry answers it, or a client
    /// rebuilds it from the wire).
    package init(record: VersionRecord, aliases: [String]) {
        self.record = record
        self.aliases = aliases
    }
}
