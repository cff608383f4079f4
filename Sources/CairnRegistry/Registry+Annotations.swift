import CairnStore
import Foundation

/// Aliases, tags and policies: named pointers and labels that change without new versions.
extension Registry {
    // MARK: Aliases

    /// The aliases of `model`, sorted by name.
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` for a malformed model name.
    public func aliases(of model: String) throws -> [AliasRecord] {
        try ModelName.validate(model)
        return try storeCall { try store.readMetadata { try aliases(of: model, in: $0) } }
    }

    /// Points `alias` of `model` at `version`, creating it or moving it atomically (an alias names
    /// one version of its model).
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a bad alias, `.notFound` for a missing
    ///   model or version.
    @discardableResult
    public func setAlias(
        model name: String,
        alias: String,
        version number: Int,
        actor: String,
        reason: String? = nil
    ) throws
        -> ChangeResult
    {
        try ModelName.validate(name)
        try Names.validateAlias(alias)
        try Names.validateActor(actor)
        let reason = Self.normalizedReason(reason)
        return try write { txn in
            _ = try self.model(name, in: txn)
            guard let version = try version(name, number, in: txn) else {
                throw RegistryError(.notFound, "no version \(number) of model \(name)")
            }
            let key = Self.aliasKey(name, alias)
            let old = try txn.get(aliases, key).map {
                try RecordCoding.decode(AliasRecord.self, $0, what: "alias \(Reference.text(model: name, name: alias))")
            }
            if old?.version == number {
                return ChangeResult(model: name, version: number, stage: version.stage, changed: false, audit: [])
            }
            let time = try changeTime(in: txn)
            try txn.put(
                aliases,
                key,
                try RecordCoding.encode(
                    AliasRecord(model: name, alias: alias, version: number, updatedBy: actor, updatedAt: time)
                )
            )
            let entries = try appendAudit(
                [
                    AuditDraft(
                        action: .alias,
                        model: name,
                        version: number,
                        target: Reference.text(model: name, name: alias),
                        before: old.map { Reference.text(model: name, version: $0.version) },
                        after: version.reference,
                        reason: reason
                    )
                ],
                actor: actor,
                time: time,
                in: txn
            )
            return ChangeResult(model: name, version: number, stage: version.stage, changed: true, audit: entries)
        }
    }

    /// Removes `alias` of `model`.
    ///
    /// - Throws: ``RegistryError`` with `.notFound` if there is no such model or alias.
    @discardableResult
    public func removeAlias(
        model name: String,
        alias: String,
        actor: String,
        reason: String? = nil
    ) throws -> ChangeResult {
        try ModelName.validate(name)
        try Names.validateActor(actor)
        let reason = Self.normalizedReason(reason)
        return try write { txn in
            _ = try self.model(name, in: txn)
            let key = Self.aliasKey(name, alias)
            guard let bytes = try txn.get(aliases, key) else {
                throw RegistryError(.notFound, "model \(name) has no alias \(alias)")
            }
            let old = try RecordCoding.decode(
                AliasRecord.self,
                bytes,
                what: "alias \(Reference.text(model: name, name: alias))"
            )
            let time = try changeTime(in: txn)
            try txn.delete(aliases, key)
            let entries = try appendAudit(
                [
                    AuditDraft(
                        action: .alias,
                        model: name,
                        version: old.version,
                        target: Reference.text(model: name, name: alias),
                        before: Reference.text(model: name, version: old.version),
                        after: nil,
                        reason: reason
                    )
                ],
                actor: actor,
                time: time,
                in: txn
            )
            return ChangeResult(model: name, version: old.version, stage: nil, changed: true, audit: entries)
        }
    }

    // MARK: Tags

    /// Sets tags on a version (one audit entry per changed tag).
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a bad name or value or an empty set,
    ///   `.notFound` as ``resolve(_:)``.
    @discardableResult
    public func tag(_ reference: Reference, _ tags: [String: String], actor: String) throws -> ChangeResult {
        try Names.validateActor(actor)
        guard !tags.isEmpty else { throw RegistryError(.invalidArgument, "give at least one tag as K=V") }
        for (key, value) in tags {
            try Names.validateKey(key, kind: "tag")
            guard value.utf8.count <= 1024, !value.contains(where: { $0.isNewline }) else {
                throw RegistryError(.invalidArgument, "the value of tag \(key) must be one line of at most 1024 bytes")
            }
        }
        return try write { txn in
            var version = try resolve(reference, in: txn)
            var drafts: [AuditDraft] = []
            for (key, value) in tags.sorted(by: { $0.key < $1.key }) where version.tags[key] != value {
                drafts.append(
                    AuditDraft(
                        action: .tag,
                        model: version.model,
                        version: version.version,
                        target: version.reference,
                        before: version.tags[key].map { "\(key)=\($0)" },
                        after: "\(key)=\(value)"
                    )
                )
                version.tags[key] = value
            }
            guard !drafts.isEmpty else {
                return ChangeResult(
                    model: version.model,
                    version: version.version,
                    stage: version.stage,
                    changed: false,
                    audit: []
                )
            }
            let time = try changeTime(in: txn)
            try put(version, in: txn)
            let entries = try appendAudit(drafts, actor: actor, time: time, in: txn)
            return ChangeResult(
                model: version.model,
                version: version.version,
                stage: version.stage,
                changed: true,
                audit: entries
            )
        }
    }

    /// Removes tags from a version.
    ///
    /// - Throws: ``RegistryError`` with `.notFound` naming a tag the version does not have (then
    ///   nothing is removed).
    @discardableResult
    public func untag(_ reference: Reference, _ keys: [String], actor: String) throws -> ChangeResult {
        try Names.validateActor(actor)
        guard !keys.isEmpty else { throw RegistryError(.invalidArgument, "give at least one tag name") }
        return try write { txn in
            var version = try resolve(reference, in: txn)
            var drafts: [AuditDraft] = []
            for key in Array(Set(keys)).sorted() {
                guard let old = version.tags[key] else {
                    throw RegistryError(.notFound, "\(version.reference) has no tag \(key)")
                }
                drafts.append(
                    AuditDraft(
                        action: .untag,
                        model: version.model,
                        version: version.version,
                        target: version.reference,
                        before: "\(key)=\(old)",
                        after: nil
                    )
                )
                version.tags[key] = nil
            }
            let time = try changeTime(in: txn)
            try put(version, in: txn)
            let entries = try appendAudit(drafts, actor: actor, time: time, in: txn)
            return ChangeResult(
                model: version.model,
                version: version.version,
                stage: version.stage,
                changed: true,
                audit: entries
            )
        }
    }

    // MARK: Policy

    /// The promotion policy of `model` (empty when none was set).
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a malformed name, `.notFound` for a
    ///   missing model.
    public func policy(of model: String) throws -> Policy {
        try ModelName.validate(model)
        return try storeCall {
            try store.readMetadata { txn in
                _ = try self.model(model, in: txn)
                return try policy(of: model, in: txn)
            }
        }
    }

    /// Replaces the whole policy of `model`; an empty policy clears it.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a bad policy, `.notFound` for a missing model.
    @discardableResult
    public func setPolicy(
        model name: String,
        _ policy: Policy,
        actor: String,
        reason: String? = nil
    ) throws -> ChangeResult {
        try ModelName.validate(name)
        try Names.validateActor(actor)
        try policy.validate()
        var policy = policy
        policy.approvals = policy.approvals.filter { $0.value > 0 }
        let reason = Self.normalizedReason(reason)
        return try write { txn in
            _ = try self.model(name, in: txn)
            let old = try self.policy(of: name, in: txn)
            if old == policy {
                return ChangeResult(model: name, version: nil, stage: nil, changed: false, audit: [])
            }
            let time = try changeTime(in: txn)
            if policy.isEmpty {
                try txn.delete(policies, Self.modelKey(name))
            } else {
                try txn.put(policies, Self.modelKey(name), try RecordCoding.encode(policy))
            }
            let entries = try appendAudit(
                [
                    AuditDraft(
                        action: .policy,
                        model: name,
                        target: name,
                        before: old.isEmpty ? nil : old.description,
                        after: policy.isEmpty ? nil : policy.description,
                        reason: reason
                    )
                ],
                actor: actor,
                time: time,
                in: txn
            )
            return ChangeResult(model: name, version: nil, stage: nil, changed: true, audit: entries)
        }
    }
}
