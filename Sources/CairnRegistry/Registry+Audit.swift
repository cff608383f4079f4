import CairnStore
import Digest
import Foundation

extension Registry {
    static let zeroHash = String(repeating: "0", count: 64)
    static let headKey = Array("head".utf8)

    static func auditKey(_ sequence: UInt64) -> [UInt8] { withUnsafeBytes(of: sequence.bigEndian) { Array($0) } }

    static func auditModelKey(_ model: String, _ sequence: UInt64) -> [UInt8] {
        modelKeyPrefix(model) + auditKey(sequence)
    }

    static func sequence(ofKey key: [UInt8]) -> UInt64? {
        guard key.count == 8 else { return nil }
        return key.reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The time of a change in `txn`: the clock, but never before the last audit entry (so the log's
    /// times never go backwards, whatever the system clock does).
    func changeTime(in txn: MetadataTransaction) throws -> String {
        let now = RegistryTime.format(clock())
        guard let last = try txn.scan(audit, reverse: true, limit: 1).first,
            let entry = try? JSONDecoder().decode(AuditEntry.self, from: Data(last.value))
        else { return now }
        return max(now, entry.time)
    }

    /// Appends `drafts` to the audit log in `txn` (the transaction of the change they record).
    @discardableResult
    func appendAudit(
        _ drafts: [AuditDraft],
        actor: String,
        time: String,
        in txn: MetadataTransaction
    ) throws -> [AuditEntry] {
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
                sequence: sequence,
                time: time,
                actor: actor,
                action: draft.action,
                model: draft.model,
                version: draft.version,
                target: draft.target,
                before: draft.before,
                after: draft.after,
                reason: draft.reason,
                evidence: draft.evidence,
                details: draft.details,
                prevSHA256: prev
            )
            let bytes = try RecordCoding.encode(entry)
            try txn.put(audit, Self.auditKey(sequence), bytes)
            // Entries of no model (tokens) are only in the log itself.
            if !draft.model.isEmpty { try txn.put(auditByModel, Self.auditModelKey(draft.model, sequence), []) }
            try txn.put(
                auditHead,
                Self.headKey,
                try RecordCoding.encode(AuditHead(sequence: sequence, sha256: SHA256Digest.hash(bytes).hex))
            )
            entries.append(entry)
        }
        return entries
    }

    // MARK: Reading

    /// Audit entries in order, optionally of one model and from a time on.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a malformed model name, `.corruption` for
    ///   an unreadable entry (``verifyAudit()`` says which).
    public func auditLog(model: String? = nil, since: Date? = nil) throws -> [AuditEntry] {
        if let model { try ModelName.validate(model) }
        let sinceText = since.map(RegistryTime.format)
        return try storeCall {
            try store.readMetadata { txn in
                try auditEntries(model: model, in: txn).filter { entry in sinceText.map { entry.time >= $0 } ?? true }
            }
        }
    }

    func auditEntries(model: String?, in txn: MetadataTransaction) throws -> [AuditEntry] {
        if let model {
            return try txn.scan(auditByModel, prefix: Self.modelKeyPrefix(model)).compactMap { item in
                let key = Array(item.key.suffix(8))
                guard let bytes = try txn.get(audit, key) else { return nil }
                let entry = try RecordCoding.decode(
                    AuditEntry.self,
                    bytes,
                    what: "audit entry \(Self.sequence(ofKey: key) ?? 0)"
                )
                return entry.model == model ? entry : nil
            }
        }
        return try txn.scan(audit).map { item in
            try RecordCoding.decode(
                AuditEntry.self,
                item.value,
                what: "audit entry \(Self.sequence(ofKey: item.key) ?? 0)"
            )
        }
    }

    /// The stage and alias changes of one model, in order (pushes, promotions, archives, rollbacks,
    /// deletes, alias moves).
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` for a malformed name, `.notFound` for a
    ///   missing model, `.corruption` for an unreadable entry.
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
    /// entry (or, for the last one, the chain head) recorded. A broken chain is reported, not thrown;
    /// an intact one comes with its head (the SHA-256 of its last entry).
    ///
    /// - Throws: ``RegistryError`` with `.io` when the index cannot be read.
    public func verifyAudit() throws -> AuditVerification {
        try storeCall {
            try store.readMetadata { txn in
                var expected: UInt64 = 1
                var previous: (sequence: UInt64, hash: String)?
                var count = 0
                func broken(_ sequence: UInt64, _ problem: String) -> AuditVerification {
                    // `count` entries passed their own checks; those from `sequence` on are not verified.
                    AuditVerification(
                        ok: false,
                        entries: min(count, Int(sequence) - 1),
                        firstBroken: sequence,
                        problem: problem
                    )
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
                                "entry \(previous.sequence) was altered: its SHA-256 is \(previous.hash), but entry \(sequence) recorded \(entry.prevSHA256)"
                            )
                        }
                        return broken(sequence, "entry 1 was altered: its prev_sha256 must be 64 zeros")
                    }
                    // `history` and `audit --model` read through the per-model index: it must list every entry.
                    if !entry.model.isEmpty, try txn.get(auditByModel, Self.auditModelKey(entry.model, sequence)) == nil
                    {
                        return broken(
                            sequence,
                            "entry \(sequence) is missing from the per-model index of the audit log"
                        )
                    }
                    previous = (sequence, SHA256Digest.hash(item.value).hex)
                    expected = sequence + 1
                    count += 1
                }
                let head = try txn.get(auditHead, Self.headKey).flatMap {
                    try? JSONDecoder().decode(AuditHead.self, from: Data($0))
                }
                switch (head, previous) {
                case (nil, nil):
                    break
                case (nil, let last?):
                    return broken(
                        last.sequence,
                        "the chain head is missing or unreadable (the last entry is \(last.sequence))"
                    )
                case (let head?, nil):
                    return broken(1, "the log is empty but its head records \(head.sequence) entries")
                case (let head?, let last?):
                    if head.sequence > last.sequence {
                        return broken(
                            last.sequence + 1,
                            "entry \(last.sequence + 1) is missing (the head records \(head.sequence) entries)"
                        )
                    }
                    if head.sequence != last.sequence || head.sha256 != last.hash {
                        return broken(
                            last.sequence,
                            "entry \(last.sequence) was altered: its SHA-256 is \(last.hash), but the chain head recorded \(head.sha256) for entry \(head.sequence)"
                        )
                    }
                }
                return AuditVerification(ok: true, entries: count, firstBroken: nil, problem: nil, head: previous?.hash)
            }
        }
    }
}
