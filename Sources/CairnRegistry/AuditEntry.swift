/// What an audit entry records.
public enum AuditAction: String, Codable, Sendable, CaseIterable {
    /// A version was pushed (`after`: its initial stage).
    case push
    /// A version moved to another stage (`before` → `after`).
    case promote
    /// A version was approved for a stage (`after`).
    case approve
    /// Production went back to an earlier version (one entry archives the current version, one
    /// restores the earlier one).
    case rollback
    /// A version was archived.
    case archive
    /// A version was deleted (`before`: its stage).
    case delete
    /// An alias was set, moved or removed (`before`/`after`: `model@N`).
    case alias
    /// A tag was set or changed (`before`/`after`: `K=V`).
    case tag
    /// A tag was removed (`before`: `K=V`).
    case untag
    /// A model's policy was set or cleared (`before`/`after`: the policy).
    case policy
    /// A token was created: the entry's model is empty, its target names the token.
    case tokenCreate = "token-create"
    /// A token was revoked: the entry's model is empty, its target names the token.
    case tokenRevoke = "token-revoke"

    /// Actions whose `before`/`after` are stages of the entry's version.
    public var changesStage: Bool {
        switch self {
        case .push, .promote, .rollback, .archive, .delete: true
        default: false
        }
    }
}

/// One entry of the append-only audit log.
///
/// Entries are keyed by their sequence number (1, 2, 3 …, big-endian) and chained: `prevSHA256` is
/// the SHA-256 of the previous entry's stored bytes (64 zeros for the first), so an edit or removal
/// breaks the chain at that entry (``Registry/verifyAudit()``).
public struct AuditEntry: Codable, Sendable, Equatable {
    /// The entry's number: 1, 2, 3 … with no gaps.
    public var sequence: UInt64
    /// ISO 8601 UTC with milliseconds; never earlier than the previous entry's time.
    public var time: String
    /// Who made the change.
    public var actor: String
    /// What the change was.
    public var action: AuditAction
    /// The model changed (empty for token entries).
    public var model: String
    /// The version acted on, if the action concerns one.
    public var version: Int?
    /// `model`, `model@N`, `model@ALIAS`, or `model@N tag K`.
    public var target: String
    /// State before and after: a stage, an alias's version, a tag's value, a policy; nil when absent.
    public var before: String?
    /// See ``before``.
    public var after: String?
    /// Why, as the actor said it.
    public var reason: String?
    /// Evidence supplied with a promotion (`--evidence K=V`).
    public var evidence: [String: String]
    /// Facts the registry adds (the manifest of a push, the approvers a promotion counted, …).
    public var details: [String: String]
    /// Hex SHA-256 of the previous entry's stored bytes (64 zeros for the first entry).
    public var prevSHA256: String

    enum CodingKeys: String, CodingKey {
        case time, actor, action, model, version, target, before, after, reason, evidence, details
        case sequence = "seq"
        case prevSHA256 = "prev_sha256"
    }

    /// Decodes an entry; `evidence` and `details` default to empty.
    ///
    /// - Throws: `DecodingError` when a required field is missing or a field has the wrong type.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sequence = try c.decode(UInt64.self, forKey: .sequence)
        time = try c.decode(String.self, forKey: .time)
        actor = try c.decode(String.self, forKey: .actor)
        action = try c.decode(AuditAction.self, forKey: .action)
        model = try c.decode(String.self, forKey: .model)
        version = try c.decodeIfPresent(Int.self, forKey: .version)
        target = try c.decode(String.self, forKey: .target)
        before = try c.decodeIfPresent(String.self, forKey: .before)
        after = try c.decodeIfPresent(String.self, forKey: .after)
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        evidence = try c.decodeIfPresent([String: String].self, forKey: .evidence) ?? [:]
        details = try c.decodeIfPresent([String: String].self, forKey: .details) ?? [:]
        prevSHA256 = try c.decode(String.self, forKey: .prevSHA256)
    }

    init(
        sequence: UInt64,
        time: String,
        actor: String,
        action: AuditAction,
        model: String,
        version: Int?,
        target: String,
        before: String?,
        after: String?,
        reason: String?,
        evidence: [String: String],
        details: [String: String],
        prevSHA256: String
    ) {
        self.sequence = sequence
        self.time = time
        self.actor = actor
        self.action = action
        self.model = model
        self.version = version
        self.target = target
        self.before = before
        self.after = after
        self.reason = reason
        self.evidence = evidence
        self.details = details
        self.prevSHA256 = prevSHA256
    }

    /// Encodes every field, absent optionals as null (the stored bytes the chain hashes).
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sequence, forKey: .sequence)
        try c.encode(time, forKey: .time)
        try c.encode(actor, forKey: .actor)
        try c.encode(action, forKey: .action)
        try c.encode(model, forKey: .model)
        try c.encode(version, forKey: .version)
        try c.encode(target, forKey: .target)
        try c.encode(before, forKey: .before)
        try c.encode(after, forKey: .after)
        try c.encode(reason, forKey: .reason)
        try c.encode(evidence, forKey: .evidence)
        try c.encode(details, forKey: .details)
        try c.encode(prevSHA256, forKey: .prevSHA256)
    }

    /// `before → after` for display.
    public var change: String {
        switch (before, after) {
        case (nil, nil): ""
        case (nil, let a?): "→ \(a)"
        case (let b?, nil): "\(b) →"
        case (let b?, let a?): "\(b) → \(a)"
        }
    }
}

/// The result of walking the audit chain.
public struct AuditVerification: Codable, Sendable, Equatable {
    /// Whether every entry is present, readable and linked to its predecessor.
    public var ok: Bool
    /// Entries checked.
    public var entries: Int
    /// Sequence number of the first broken entry.
    public var firstBroken: UInt64?
    /// What is wrong with it.
    public var problem: String?
    /// For an intact chain: the SHA-256 of its last entry, which every earlier entry leads to.
    /// Recorded elsewhere (daily, say), it lets `audit verify --expect-head` detect a history
    /// rewritten by someone able to recompute every later hash. Nil for an empty log.
    public var head: String?

    /// A verification result (as ``Registry/verifyAudit()`` reports it).
    package init(ok: Bool, entries: Int, firstBroken: UInt64?, problem: String?, head: String? = nil) {
        self.ok = ok
        self.entries = entries
        self.firstBroken = firstBroken
        self.problem = problem
        self.head = head
    }

    enum CodingKeys: String, CodingKey {
        case ok, entries, problem, head
        case firstBroken = "first_broken"
    }

    /// Encodes every field, absent optionals as null.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(ok, forKey: .ok)
        try c.encode(entries, forKey: .entries)
        try c.encode(firstBroken, forKey: .firstBroken)
        try c.encode(problem, forKey: .problem)
        try c.encode(head, forKey: .head)
    }
}

/// The chain head: sequence number and SHA-256 of the last entry (detects removing or editing it).
struct AuditHead: Codable {
    var sequence: UInt64
    var sha256: String

    enum CodingKeys: String, CodingKey {
        case sha256
        case sequence = "seq"
    }
}

/// A change to append, before it gets its sequence number, time and chain link.
struct AuditDraft {
    var action: AuditAction
    var model: String
    var version: Int? = nil
    var target: String
    var before: String? = nil
    var after: String? = nil
    var reason: String? = nil
    var evidence: [String: String] = [:]
    var details: [String: String] = [:]
}
