import CairnStore
import Digest
import Foundation

/// What an audit entry records.
public enum AuditAction: String, Codable, Sendable, CaseIterable {
    case push, promote, approve, rollback, archive, delete, alias, tag, untag, policy
    /// A token was created or revoked: the entry's model is empty, its target names the token.
    case tokenCreate = "token-create"
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
    public var sequence: UInt64
    /// ISO 8601 UTC with milliseconds; never earlier than the previous entry's time.
    public var time: String
    public var actor: String
    public var action: AuditAction
    public var model: String
    /// The version acted on, if the action concerns one.
    public var version: Int?
    /// `model`, `model@N`, `model@ALIAS`, or `model@N tag K`.
    public var target: String
    /// State before and after: a stage, an alias's version, a tag's value, a policy; nil when absent.
    public var before: String?
    public var after: String?
    public var reason: String?
    /// Evidence supplied with a promotion (`--evidence K=V`).
    public var evidence: [String: String]
    /// Facts the registry adds (the manifest of a push, the approvers a promotion counted, …).
    public var details: [String: String]
    public var prevSHA256: String

    enum CodingKeys: String, CodingKey {
        case time, actor, action, model, version, target, before, after, reason, evidence, details
        case sequence = "seq"
        case prevSHA256 = "prev_sha256"
    }

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
        sequence: UInt64, time: String, actor: String, action: AuditAction, model: String, version: Int?,
        target: String, before: String?, after: String?, reason: String?, evidence: [String: String],
        details: [String: String], prevSHA256: String
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

    public init(ok: Bool, entries: Int, firstBroken: UInt64?, problem: String?, head: String? = nil) {
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

extension Registry {
    static let zeroHash = String(repeating: "0", count: 64)
    static let headKey = Array("head".utf8)

    static func auditKey(_ sequence: UInt64) -> [UInt8] { withUnsafeBytes(of: sequence.bigEndian) { Array($0) } }

    static func auditModelKey(_ model: String, _ sequence: UInt64) -> [UInt8] { versionPrefix(model) + auditKey(sequence) }

    static func sequence(ofKey key: [UInt8]) -> UInt64? {
        guard key.count == 8 else { return nil }
        return key.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The time of a change in `txn`: the clock, but never before the last audit entry (so the log's
    /// times never go backwards, whatever the system clock does).
    func changeTime(in txn: MetadataTransaction) throws -> String {
        let now = RecordCoding.format(clock())
        guard let last = try txn.scan(audit, reverse: true, limit: 1).first,
            let entry = try? JSONDecoder().decode(AuditEntry.self, from: Data(last.value))
        else { return now }
        return max(now, entry.time)
    }

    /// Appends `drafts` to the audit log in `txn` (the transaction of the change they record).
    @discardableResult
    func appendAudit(_ drafts: [AuditDraft], actor: String, time: String, in txn: MetadataTransaction) throws -> [AuditEntry] {
        var entries: [AuditEntry] = []
        for draft in drafts {
            var sequence: UInt64 = 1
            var prev = Self.zeroHash
            if let last = try txn.scan(audit, reverse: true, limit: 1).first {
                guard let lastSequence = Self.sequence(ofKey: last.key) else {
                    throw RegistryError(.corruption, "the audit log has a malformed key")
                }
                sequence = lastSequence + 1
                prev = SHA256Digest.hash(last.value).hex
            }
            let entry = AuditEntry(
                sequence: sequence, time: time, actor: actor, action: draft.action, model: draft.model,
                version: draft.version, target: draft.target, before: draft.before, after: draft.after,
                reason: draft.reason, evidence: draft.evidence, details: draft.details, prevSHA256: prev)
            let bytes = try RecordCoding.encode(entry)
            try txn.put(audit, Self.auditKey(sequence), bytes)
            // Entries of no model (tokens) are only in the log itself.
            if !draft.model.isEmpty { try txn.put(auditByModel, Self.auditModelKey(draft.model, sequence), []) }
            try txn.put(auditHead, Self.headKey, try RecordCoding.encode(AuditHead(sequence: sequence, sha256: SHA256Digest.hash(bytes).hex)))
            entries.append(entry)
        }
        return entries
    }

    // MARK: Reading

    /// Audit entries in order, optionally of one model and from a time on.
    public func auditLog(model: String? = nil, since: Date? = nil) throws -> [AuditEntry] {
        if let model { try ModelName.validate(model) }
        let sinceText = since.map(RecordCoding.format)
        return try storeCall {
            try store.readMetadata { txn in
                try auditEntries(model: model, in: txn).filter { entry in sinceText.map { entry.time >= $0 } ?? true }
            }
        }
    }

    func auditEntries(model: String?, in txn: MetadataTransaction) throws -> [AuditEntry] {
        if let model {
            return try txn.scan(auditByModel, prefix: Self.versionPrefix(model)).compactMap { item in
                let key = Array(item.key.suffix(8))
                guard let bytes = try txn.get(audit, key) else { return nil }
                let entry = try RecordCoding.decode(AuditEntry.self, bytes, what: "audit entry \(Self.sequence(ofKey: key) ?? 0)")
                return entry.model == model ? entry : nil
            }
        }
        return try txn.scan(audit).map { item in
            try RecordCoding.decode(AuditEntry.self, item.value, what: "audit entry \(Self.sequence(ofKey: item.key) ?? 0)")
        }
    }

    /// The stage and alias changes of one model, in order (pushes, promotions, archives, rollbacks,
    /// deletes, alias moves).
    public func history(of model: String) throws -> [AuditEntry] {
        try ModelName.validate(model)
        return try storeCall {
            try store.readMetadata { txn in
                guard try txn.get(models, Self.modelKey(model)) != nil else {
                    throw RegistryError(.notFound, "no model named \(model)")
                }
                return try auditEntries(model: model, in: txn).filter { $0.action.changesStage || $0.action == .alias }
            }
        }
    }

    /// Walks the audit chain from the first entry and reports the first broken one: a missing
    /// sequence number, an unreadable entry, or an entry whose SHA-256 differs from what the next
    /// entry (or, for the last one, the chain head) recorded.
    public func verifyAudit() throws -> AuditVerification {
        try storeCall {
            try store.readMetadata { txn in
                var expected: UInt64 = 1
                var previous: (sequence: UInt64, hash: String)?
                var count = 0
                func broken(_ sequence: UInt64, _ problem: String) -> AuditVerification {
                    // `count` entries passed their own checks; those from `sequence` on are not verified.
                    AuditVerification(ok: false, entries: min(count, Int(sequence) - 1), firstBroken: sequence, problem: problem)
                }
                for item in try txn.scan(audit) {
                    guard let sequence = Self.sequence(ofKey: item.key) else {
                        return broken(expected, "an entry after \(expected - 1) has a malformed key")
                    }
                    if sequence != expected {
                        return broken(expected, "entry \(expected) is missing (the next entry is \(sequence))")
                    }
                    guard let entry = try? JSONDecoder().decode(AuditEntry.self, from: Data(item.value)) else {
                        return broken(sequence, "entry \(sequence) is not a readable audit entry")
                    }
                    if entry.sequence != sequence {
                        return broken(sequence, "entry \(sequence) claims sequence number \(entry.sequence)")
                    }
                    let expectedPrev = previous?.hash ?? Self.zeroHash
                    if entry.prevSHA256 != expectedPrev {
                        if let previous {
                            return broken(
                                previous.sequence,
                                "entry \(previous.sequence) was altered: its SHA-256 is \(previous.hash), but entry \(sequence) recorded \(entry.prevSHA256)")
                        }
                        return broken(sequence, "entry 1 was altered: its prev_sha256 must be 64 zeros")
                    }
                    // `history` and `audit --model` read through the per-model index: it must list every entry.
                    if !entry.model.isEmpty, try txn.get(auditByModel, Self.auditModelKey(entry.model, sequence)) == nil {
                        return broken(sequence, "entry \(sequence) is missing from the per-model index of the audit log")
                    }
                    previous = (sequence, SHA256Digest.hash(item.value).hex)
                    expected = sequence + 1
                    count += 1
                }
                let head = try txn.get(auditHead, Self.headKey).flatMap { try? JSONDecoder().decode(AuditHead.self, from: Data($0)) }
                switch (head, previous) {
                case (nil, nil):
                    break
                case (nil, let last?):
                    return broken(last.sequence, "the chain head is missing or unreadable (the last entry is \(last.sequence))")
                case (let head?, nil):
                    return broken(1, "the log is empty but its head records \(head.sequence) entries")
                case (let head?, let last?):
                    if head.sequence > last.sequence {
                        return broken(last.sequence + 1, "entry \(last.sequence + 1) is missing (the head records \(head.sequence) entries)")
                    }
                    if head.sequence != last.sequence || head.sha256 != last.hash {
                        return broken(
                            last.sequence,
                            "entry \(last.sequence) was altered: its SHA-256 is \(last.hash), but the chain head recorded \(head.sha256) for entry \(head.sequence)")
                    }
                }
                return AuditVerification(ok: true, entries: count, firstBroken: nil, problem: nil, head: previous?.hash)
            }
        }
    }
}
