import CairnStore
import Foundation

extension Registry {
    /// The version a reference names now: `MODEL@production` is one lookup (the model's production
    /// pointer); another stage is the highest version in it; an alias is the version it points at.
    ///
    /// - Throws: ``RegistryError`` with `.notFound` naming what is missing (the model, the version —
    ///   or that it was deleted —, the stage or the alias), `.corruption` for an alias pointing at
    ///   a missing version.
    public func resolve(_ reference: Reference) throws -> VersionRecord {
        try storeCall { try store.readMetadata { try resolve(reference, in: $0) } }
    }

    func resolve(_ reference: Reference, in txn: MetadataTransaction) throws -> VersionRecord {
        let model = try self.model(reference.model, in: txn)
        switch reference.selector {
        case .latest:
            guard
                let last = try txn.scan(versions, prefix: Self.modelKeyPrefix(model.name), reverse: true, limit: 1)
                    .first
            else {
                throw RegistryError(.notFound, "model \(model.name) has no versions")
            }
            return try RecordCoding.decode(VersionRecord.self, last.value, what: "\(model.name)@latest")
        case .number(let n):
            guard let record = try version(model.name, n, in: txn) else {
                if n <= model.latestVersion {
                    throw RegistryError(.notFound, "\(Reference.text(model: model.name, version: n)) was deleted")
                }
                throw RegistryError(
                    .notFound,
                    "no version \(n) of model \(model.name) (latest is \(model.latestVersion))"
                )
            }
            return record
        case .name(let name):
            if name == Stage.production.rawValue {
                // O(1): the model's production pointer.
                guard let n = model.production, let record = try version(model.name, n, in: txn) else {
                    throw RegistryError(.notFound, "model \(model.name) has no version in production")
                }
                return record
            }
            if let stage = Stage(rawValue: name) {
                let matching = try versions(of: model.name, in: txn).filter { $0.stage == stage }
                guard let found = matching.last else {
                    throw RegistryError(.notFound, "model \(model.name) has no version in stage \(stage.rawValue)")
                }
                return found
            }
            if let bytes = try txn.get(aliases, Self.aliasKey(model.name, name)) {
                let alias = try RecordCoding.decode(
                    AliasRecord.self,
                    bytes,
                    what: "alias \(Reference.text(model: model.name, name: name))"
                )
                guard let record = try version(model.name, alias.version, in: txn) else {
                    throw RegistryError(
                        .corruption,
                        "alias \(Reference.text(model: model.name, name: name)) points at missing version \(alias.version)"
                    )
                }
                return record
            }
            throw RegistryError(.notFound, "model \(model.name) has no alias or stage named \"\(name)\"")
        }
    }

    /// What `reference` named at `date`: `MODEL@production` is the version in production then.
    ///
    /// Answered by replaying the model's stage and alias changes in the audit log up to `date`.
    ///
    /// - Throws: ``RegistryError`` with `.notFound` when the model does not exist, when nothing
    ///   matched then (e.g. no version was in production), or when the version has since been deleted.
    public func resolve(_ reference: Reference, at date: Date) throws -> PastResolution {
        let at = RegistryTime.format(date)
        return try storeCall {
            try store.readMetadata { txn in
                let model = try self.model(reference.model, in: txn)
                var stages: [Int: Stage] = [:]
                var aliasMap: [String: Int] = [:]
                for entry in try auditEntries(model: model.name, in: txn) {
                    guard entry.time <= at else { break }
                    switch entry.action {
                    case .push, .promote, .archive, .rollback:
                        if let v = entry.version, let after = entry.after.flatMap(Stage.init(rawValue:)) {
                            stages[v] = after
                        }
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
                    guard let n = stages.keys.max() else {
                        throw RegistryError(.notFound, "model \(model.name) had no versions \(when)")
                    }
                    number = n
                case .number(let n):
                    guard stages[n] != nil else {
                        throw RegistryError(
                            .notFound,
                            "\(Reference.text(model: model.name, version: n)) did not exist \(when)"
                        )
                    }
                    number = n
                case .name(let name):
                    if let stage = Stage(rawValue: name) {
                        guard let n = stages.filter({ $0.value == stage }).keys.max() else {
                            throw RegistryError(
                                .notFound,
                                "model \(model.name) had no version in \(stage.rawValue) \(when)"
                            )
                        }
                        number = n
                    } else if let n = aliasMap[name] {
                        number = n
                    } else {
                        throw RegistryError(
                            .notFound,
                            "model \(model.name) had no alias or stage named \"\(name)\" \(when)"
                        )
                    }
                }
                guard let record = try version(model.name, number, in: txn) else {
                    throw RegistryError(
                        .notFound,
                        "\(Reference.text(model: model.name, version: number)) (\(stages[number]!.rawValue) \(when)) has since been deleted"
                    )
                }
                return PastResolution(
                    record: record,
                    stage: stages[number]!,
                    aliases: aliasMap.filter { $0.value == number }.keys.sorted(),
                    at: at
                )
            }
        }
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

    /// `version` (its record now) was in `stage` with `aliases` at `at` (as the registry answers it,
    /// or a client rebuilds it from the wire).
    package init(record version: VersionRecord, stage: Stage, aliases: [String], at: String) {
        self.version = version
        self.stage = stage
        self.aliases = aliases
        self.at = at
    }
}
