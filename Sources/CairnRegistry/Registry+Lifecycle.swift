import CairnStore
import Foundation

/// What a registry change did: the version it concerns, its stage afterwards, and the audit entries
/// it appended (none when the request changed nothing).
public struct ChangeResult: Codable, Sendable, Equatable {
    /// The model changed.
    public var model: String
    /// The version the change concerns (nil for a model-wide change such as a policy).
    public var version: Int?
    /// That version's stage afterwards (nil after a delete, and for model-wide changes).
    public var stage: Stage?
    /// False when the request asked for the state that already held (nothing was written).
    public var changed: Bool
    /// The audit entries the change appended, in order.
    public var audit: [AuditEntry]

    /// Encodes every field, absent optionals as null.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(version, forKey: .version)
        try c.encode(stage, forKey: .stage)
        try c.encode(changed, forKey: .changed)
        try c.encode(audit, forKey: .audit)
    }
}

extension Registry {
    // MARK: Promote

    /// Moves a version to `target` (staging or production; archived is ``archive(_:actor:reason:evidence:)``).
    ///
    /// Allowed moves: experimental → staging → production, archived → staging, any → archived. The
    /// model's policy must pass for `target` (approvals from users other than the creator, metric
    /// thresholds). Promoting to production archives the previous production version in the same
    /// transaction.
    ///
    /// - Throws: ``RegistryError``: `.refused` naming what is missing (nothing changes), `.notFound`,
    ///   `.invalidArgument`.
    @discardableResult
    public func promote(
        _ reference: Reference,
        to target: Stage,
        actor: String,
        reason: String? = nil,
        evidence: [String: String] = [:]
    ) throws -> ChangeResult {
        try Names.validateActor(actor)
        for key in evidence.keys { try Names.validateKey(key, kind: "evidence") }
        if target == .archived { return try archive(reference, actor: actor, reason: reason, evidence: evidence) }
        guard target.isGated else {
            throw RegistryError(
                .invalidArgument,
                "cannot promote to \(target.rawValue): versions start there; promote to staging, production or archived"
            )
        }
        let reason = Self.normalizedReason(reason)
        return try write { txn in
            var version = try resolve(reference, in: txn)
            var model = try self.model(version.model, in: txn)
            let ref = version.reference
            if version.stage == target {
                throw RegistryError(.refused, "\(ref) is already in \(target.rawValue)")
            }
            guard version.stage.canMove(to: target) else {
                var hint =
                    "allowed moves are experimental → staging → production, archived → staging, and any stage → archived"
                if version.stage == .experimental && target == .production { hint = "promote it to staging first" }
                if version.stage == .archived && target == .production {
                    hint =
                        "promote it to staging first"
                        + (version.everProduction
                            ? ", or return it to production with a rollback of \(model.name) to version \(version.version)"
                            : "")
                }
                throw RegistryError(
                    .refused,
                    "cannot promote \(ref) from \(version.stage.rawValue) to \(target.rawValue): \(hint)"
                )
            }
            let policy = try policy(of: model.name, in: txn)
            let missing = policy.unmet(by: version, for: target)
            if !missing.isEmpty {
                throw RegistryError(
                    .refused,
                    "cannot promote \(ref) to \(target.rawValue): \(missing.joined(separator: "; "))"
                )
            }
            let time = try changeTime(in: txn)
            var details: [String: String] = [:]
            let approvers = version.approvers(for: target)
            if !approvers.isEmpty { details["approved_by"] = approvers.joined(separator: ",") }
            if !policy.isEmpty { details["policy"] = policy.description }
            var drafts = [
                AuditDraft(
                    action: .promote,
                    model: model.name,
                    version: version.version,
                    target: ref,
                    before: version.stage.rawValue,
                    after: target.rawValue,
                    reason: reason,
                    evidence: evidence,
                    details: details
                )
            ]
            if target == .production {
                if let current = model.production, current != version.version,
                    var previous = try self.version(model.name, current, in: txn)
                {
                    drafts.append(
                        AuditDraft(
                            action: .archive,
                            model: model.name,
                            version: previous.version,
                            target: previous.reference,
                            before: previous.stage.rawValue,
                            after: Stage.archived.rawValue,
                            reason: "superseded by \(ref)"
                        )
                    )
                    previous.stage = .archived
                    previous.stageChangedAt = time
                    try put(previous, in: txn)
                }
                model.production = version.version
                model.productionHistory.removeAll { $0 == version.version }
                model.productionHistory.append(version.version)
                version.everProduction = true
                try put(model, in: txn)
            }
            version.stage = target
            version.stageChangedAt = time
            try put(version, in: txn)
            let entries = try appendAudit(drafts, actor: actor, time: time, in: txn)
            return ChangeResult(
                model: model.name,
                version: version.version,
                stage: target,
                changed: true,
                audit: entries
            )
        }
    }

    // MARK: Approve

    /// Records `actor`'s approval of a version for `stage` (staging or production).
    ///
    /// - Throws: ``RegistryError`` with `.refused` for an approval by the version's creator (it would
    ///   not count), a second approval by the same user, or a version already in `stage`.
    @discardableResult
    public func approve(
        _ reference: Reference,
        for stage: Stage,
        actor: String,
        reason: String? = nil
    ) throws -> ChangeResult {
        try Names.validateActor(actor)
        guard stage.isGated else {
            throw RegistryError(.invalidArgument, "approvals are for staging or production, not \(stage.rawValue)")
        }
        let reason = Self.normalizedReason(reason)
        return try write { txn in
            var version = try resolve(reference, in: txn)
            let ref = version.reference
            if version.createdBy == actor {
                throw RegistryError(
                    .refused,
                    "\(actor) created \(ref): approvals by a version's creator do not count; ask someone else"
                )
            }
            if version.approvals.contains(where: { $0.stage == stage && $0.user == actor }) {
                throw RegistryError(.refused, "\(actor) has already approved \(ref) for \(stage.rawValue)")
            }
            if version.stage == stage {
                throw RegistryError(.refused, "\(ref) is already in \(stage.rawValue)")
            }
            let time = try changeTime(in: txn)
            version.approvals.append(Approval(stage: stage, user: actor, time: time, reason: reason))
            try put(version, in: txn)
            let required = try policy(of: version.model, in: txn).approvals[stage] ?? 0
            let count = version.approvers(for: stage).count
            let entries = try appendAudit(
                [
                    AuditDraft(
                        action: .approve,
                        model: version.model,
                        version: version.version,
                        target: ref,
                        after: stage.rawValue,
                        reason: reason,
                        details: ["approvals": "\(count)", "required": "\(required)", "stage": stage.rawValue]
                    )
                ],
                actor: actor,
                time: time,
                in: txn
            )
            return ChangeResult(
                model: version.model,
                version: version.version,
                stage: version.stage,
                changed: true,
                audit: entries
            )
        }
    }

    // MARK: Rollback

    /// Makes the previous production version of `model` (or version `to`, which must have been in
    /// production before) production again and archives the current one.
    ///
    /// A pointer swap in one index transaction: it reads and writes three small records whatever
    /// the model's size, and touches no chunk.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` without a reason, `.refused` when there is no
    ///   former production version to return to, `.notFound`.
    @discardableResult
    public func rollback(
        model name: String,
        to target: Int? = nil,
        actor: String,
        reason: String
    ) throws -> ChangeResult {
        try ModelName.validate(name)
        try Names.validateActor(actor)
        guard let reason = Self.normalizedReason(reason) else {
            throw RegistryError(.invalidArgument, "a rollback needs a reason")
        }
        return try write { txn in
            var model = try self.model(name, in: txn)
            let current = model.production
            let number: Int
            if let target {
                guard let candidate = try version(name, target, in: txn) else {
                    throw RegistryError(.notFound, "no version \(target) of model \(name)")
                }
                if candidate.version == current {
                    throw RegistryError(.refused, "\(candidate.reference) is already in production")
                }
                guard candidate.everProduction else {
                    throw RegistryError(
                        .refused,
                        "\(candidate.reference) has never been in production; rollback returns to a former production version (promote it instead)"
                    )
                }
                number = target
            } else {
                let earlier = model.productionHistory.filter { $0 != current }
                guard let last = earlier.last else {
                    throw RegistryError(
                        .refused,
                        current.map {
                            "model \(name) has no production version before \(Reference.text(model: name, version: $0)) to roll back to"
                        }
                            ?? "model \(name) has never had a version in production"
                    )
                }
                number = last
            }
            guard var restored = try version(name, number, in: txn) else {
                throw RegistryError(
                    .corruption,
                    "\(Reference.text(model: name, version: number)) is in the production history but has no record"
                )
            }
            let time = try changeTime(in: txn)
            var drafts: [AuditDraft] = []
            if let current, var previous = try version(name, current, in: txn) {
                drafts.append(
                    AuditDraft(
                        action: .rollback,
                        model: name,
                        version: current,
                        target: previous.reference,
                        before: previous.stage.rawValue,
                        after: Stage.archived.rawValue,
                        reason: reason,
                        details: ["rolled_back_to": restored.reference]
                    )
                )
                previous.stage = .archived
                previous.stageChangedAt = time
                try put(previous, in: txn)
                model.productionHistory.removeAll { $0 == current }
            }
            var details = ["restored": restored.reference]
            if let current { details["rolled_back_from"] = Reference.text(model: name, version: current) }
            drafts.append(
                AuditDraft(
                    action: .rollback,
                    model: name,
                    version: number,
                    target: restored.reference,
                    before: restored.stage.rawValue,
                    after: Stage.production.rawValue,
                    reason: reason,
                    details: details
                )
            )
            restored.stage = .production
            restored.stageChangedAt = time
            restored.everProduction = true
            try put(restored, in: txn)
            model.production = number
            model.productionHistory.removeAll { $0 == number }
            model.productionHistory.append(number)
            try put(model, in: txn)
            let entries = try appendAudit(drafts, actor: actor, time: time, in: txn)
            return ChangeResult(model: name, version: number, stage: .production, changed: true, audit: entries)
        }
    }

    // MARK: Archive and delete

    /// Moves a version (from any stage) to `archived`; archiving the production version leaves the
    /// model without one.
    ///
    /// - Throws: ``RegistryError`` with `.refused` if it is already archived.
    @discardableResult
    public func archive(
        _ reference: Reference,
        actor: String,
        reason: String? = nil,
        evidence: [String: String] = [:]
    ) throws
        -> ChangeResult
    {
        try Names.validateActor(actor)
        for key in evidence.keys { try Names.validateKey(key, kind: "evidence") }
        let reason = Self.normalizedReason(reason)
        return try write { txn in
            var version = try resolve(reference, in: txn)
            guard version.stage != .archived else {
                throw RegistryError(.refused, "\(version.reference) is already archived")
            }
            let time = try changeTime(in: txn)
            var model = try self.model(version.model, in: txn)
            if model.production == version.version {
                model.production = nil
                try put(model, in: txn)
            }
            let draft = AuditDraft(
                action: .archive,
                model: version.model,
                version: version.version,
                target: version.reference,
                before: version.stage.rawValue,
                after: Stage.archived.rawValue,
                reason: reason,
                evidence: evidence
            )
            version.stage = .archived
            version.stageChangedAt = time
            try put(version, in: txn)
            let entries = try appendAudit([draft], actor: actor, time: time, in: txn)
            return ChangeResult(
                model: version.model,
                version: version.version,
                stage: .archived,
                changed: true,
                audit: entries
            )
        }
    }

    /// Removes a version: it no longer resolves, its number is never reused, and ``collectGarbage(gracePeriod:)``
    /// reclaims the bytes no other version uses.
    ///
    /// A version that others name as their parent can be deleted: their lineage keeps its reference
    /// (shown as deleted), and their bytes stay readable — chunks they share or store as deltas
    /// against it are kept by GC.
    ///
    /// - Throws: ``RegistryError`` with `.refused` for a version that has ever been in production
    ///   (archive it instead) or one an alias points at.
    @discardableResult
    public func delete(_ reference: Reference, actor: String, reason: String? = nil) throws -> ChangeResult {
        try Names.validateActor(actor)
        let reason = Self.normalizedReason(reason)
        return try write { txn in
            let version = try resolve(reference, in: txn)
            let ref = version.reference
            if version.everProduction {
                throw RegistryError(
                    .refused,
                    "\(ref) has been in production and cannot be deleted; archive it instead"
                )
            }
            let pointing = try aliases(of: version.model, in: txn).filter { $0.version == version.version }.map(\.alias)
            if !pointing.isEmpty {
                throw RegistryError(
                    .refused,
                    "\(ref) is the target of alias \(pointing.joined(separator: ", ")); move or remove it first"
                )
            }
            let time = try changeTime(in: txn)
            try txn.delete(versions, Self.versionKey(version.model, version.version))
            let entries = try appendAudit(
                [
                    AuditDraft(
                        action: .delete,
                        model: version.model,
                        version: version.version,
                        target: ref,
                        before: version.stage.rawValue,
                        after: nil,
                        reason: reason,
                        details: ["manifest": version.manifest, "logical_bytes": "\(version.logicalBytes)"]
                    )
                ],
                actor: actor,
                time: time,
                in: txn
            )
            return ChangeResult(
                model: version.model,
                version: version.version,
                stage: nil,
                changed: true,
                audit: entries
            )
        }
    }
}
