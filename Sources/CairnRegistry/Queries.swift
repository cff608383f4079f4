import CairnStore
import Foundation

/// Which versions `ls` lists: all conditions must hold.
public struct VersionQuery: Sendable, Equatable {
    /// Only versions of this model.
    public var model: String?
    public var stage: Stage?
    /// Tags the version must carry with exactly these values.
    public var tags: [String: String]
    /// Metric conditions (`eval_loss<2`); a version without the metric does not match.
    public var metrics: [MetricCondition]

    public init(model: String? = nil, stage: Stage? = nil, tags: [String: String] = [:], metrics: [MetricCondition] = []) {
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
    public var record: VersionRecord
    /// Alias names, sorted.
    public var aliases: [String]

    public init(record: VersionRecord, aliases: [String]) {
        self.record = record
        self.aliases = aliases
    }
}

/// A version in a lineage walk.
public struct LineageNode: Codable, Sendable, Equatable {
    /// `model@N`.
    public var reference: String
    /// 1 for direct parents or children, 2 for theirs, …
    public var depth: Int
    /// The version's stage now; nil if it has been deleted.
    public var stage: Stage?
    /// Its own parents (for ancestors) or the version it derives from on the walk (for descendants).
    public var parents: [String]
    public var datasets: [String]

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(reference, forKey: .reference)
        try c.encode(depth, forKey: .depth)
        try c.encode(stage, forKey: .stage)
        try c.encode(parents, forKey: .parents)
        try c.encode(datasets, forKey: .datasets)
    }
}

/// Ancestors and descendants of a version.
public struct Lineage: Codable, Sendable, Equatable {
    public var reference: String
    public var parents: [String]
    public var datasets: [String]
    public var source: String?
    /// Nearest first.
    public var ancestors: [LineageNode]
    /// Nearest first.
    public var descendants: [LineageNode]

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(reference, forKey: .reference)
        try c.encode(parents, forKey: .parents)
        try c.encode(datasets, forKey: .datasets)
        try c.encode(source, forKey: .source)
        try c.encode(ancestors, forKey: .ancestors)
        try c.encode(descendants, forKey: .descendants)
    }
}

/// What a reference named at a past time, answered from the audit log.
public struct PastResolution: Sendable, Equatable {
    /// The version's record as it is now.
    public var version: VersionRecord
    /// Its stage at that time.
    public var stage: Stage
    /// Aliases that pointed at it at that time.
    public var aliases: [String]
    /// The time asked about (ISO 8601 UTC).
    public var at: String
}

extension Registry {
    /// The version a reference names, with its aliases.
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
                    records = try txn.scan(versions).map { try RecordCoding.decode(VersionRecord.self, $0.value, what: "a version") }
                }
                records = records.filter(query.matches)
                var aliasCache: [String: [Int: [String]]] = [:]
                return try records.map { record in
                    if aliasCache[record.model] == nil {
                        aliasCache[record.model] = Dictionary(grouping: try aliases(of: record.model, in: txn), by: \.version)
                            .mapValues { $0.map(\.alias).sorted() }
                    }
                    return VersionInfo(record: record, aliases: aliasCache[record.model]?[record.version] ?? [])
                }
            }
        }
    }

    /// The ancestors (following `parents`) and descendants (versions naming it, transitively, as a
    /// parent) of a version.
    public func lineage(_ reference: Reference) throws -> Lineage {
        try storeCall {
            try store.readMetadata { txn in
                let root = try resolve(reference, in: txn)
                func lookup(_ ref: String) throws -> VersionRecord? {
                    guard let parsed = try? Reference(parsing: ref), case .number(let n) = parsed.selector else { return nil }
                    return try version(parsed.model, n, in: txn)
                }
                var ancestors: [LineageNode] = []
                var seen: Set<String> = [root.reference]
                var frontier = root.parents
                var depth = 1
                while !frontier.isEmpty {
                    var next: [String] = []
                    for ref in frontier where seen.insert(ref).inserted {
                        let record = try lookup(ref)
                        ancestors.append(
                            LineageNode(
                                reference: ref, depth: depth, stage: record?.stage, parents: record?.parents ?? [],
                                datasets: record?.datasets ?? []))
                        next += record?.parents ?? []
                    }
                    frontier = next
                    depth += 1
                }
                var children: [String: [VersionRecord]] = [:]
                for item in try txn.scan(versions) {
                    let record = try RecordCoding.decode(VersionRecord.self, item.value, what: "a version")
                    for parent in record.parents { children[parent, default: []].append(record) }
                }
                var descendants: [LineageNode] = []
                seen = [root.reference]
                var level = [root.reference]
                depth = 1
                while !level.isEmpty {
                    var next: [String] = []
                    for ref in level {
                        for child in children[ref] ?? [] where seen.insert(child.reference).inserted {
                            descendants.append(
                                LineageNode(reference: child.reference, depth: depth, stage: child.stage, parents: child.parents, datasets: child.datasets))
                            next.append(child.reference)
                        }
                    }
                    level = next
                    depth += 1
                }
                return Lineage(
                    reference: root.reference, parents: root.parents, datasets: root.datasets, source: root.source,
                    ancestors: ancestors, descendants: descendants)
            }
        }
    }

    /// What `reference` named at `date`: `MODEL@production` is the version in production then.
    ///
    /// Answered by replaying the model's stage and alias changes in the audit log up to `date`.
    ///
    /// - Throws: ``RegistryError`` with `.notFound` when nothing matched then (e.g. no version was in
    ///   production), or when the version has since been deleted.
    public func resolve(_ reference: Reference, at date: Date) throws -> PastResolution {
        let at = RecordCoding.format(date)
        return try storeCall {
            try store.readMetadata { txn in
                let model = try self.model(reference.model, in: txn)
                var stages: [Int: Stage] = [:]
                var aliasMap: [String: Int] = [:]
                for entry in try auditEntries(model: model.name, in: txn) {
                    guard entry.time <= at else { break }
                    switch entry.action {
                    case .push, .promote, .archive, .rollback:
                        if let v = entry.version, let after = entry.after.flatMap(Stage.init(rawValue:)) { stages[v] = after }
                    case .delete:
                        if let v = entry.version { stages[v] = nil }
                    case .alias:
                        guard let sign = entry.target.lastIndex(of: "@") else { continue }
                        let name = String(entry.target[entry.target.index(after: sign)...])
                        aliasMap[name] = entry.after == nil ? nil : entry.version
                    default:
                        continue
                    }
                }
                let when = "at \(at)"
                let number: Int
                switch reference.selector {
                case .latest:
                    guard let n = stages.keys.max() else { throw RegistryError(.notFound, "model \(model.name) had no versions \(when)") }
                    number = n
                case .number(let n):
                    guard stages[n] != nil else { throw RegistryError(.notFound, "\(model.name)@\(n) did not exist \(when)") }
                    number = n
                case .name(let name):
                    if let stage = Stage(rawValue: name) {
                        guard let n = stages.filter({ $0.value == stage }).keys.max() else {
                            throw RegistryError(.notFound, "model \(model.name) had no version in \(stage.rawValue) \(when)")
                        }
                        number = n
                    } else if let n = aliasMap[name] {
                        number = n
                    } else {
                        throw RegistryError(.notFound, "model \(model.name) had no alias or stage named \"\(name)\" \(when)")
                    }
                }
                guard let record = try version(model.name, number, in: txn) else {
                    throw RegistryError(.notFound, "\(model.name)@\(number) (\(stages[number]!.rawValue) \(when)) has since been deleted")
                }
                return PastResolution(
                    version: record, stage: stages[number]!, aliases: aliasMap.filter { $0.value == number }.keys.sorted(), at: at)
            }
        }
    }
}
