import CairnRegistry
import CairnStore
import Digest
import Foundation
import Testing

@Suite struct AuditTests {
    /// A registry with one change of every kind.
    func everyKindOfChange() throws -> Fixture {
        let f = try Fixture()
        try f.push("m", by: "alice", metrics: ["eval_loss": 1.8], message: "first")  // push
        try f.push("m", by: "alice", stage: .staging)  // push
        try f.policy("m", approvals: [.production: 1])  // policy
        try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice", reason: "ready for eval")  // promote
        try f.registry.approve(try f.ref("m@1"), for: .production, actor: "bob", reason: "evals fine")  // approve
        // promote
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice", evidence: ["eval": "run-7"])
        try f.registry.approve(try f.ref("m@2"), for: .production, actor: "bob")  // approve
        try f.registry.promote(try f.ref("m@2"), to: .production, actor: "alice")  // promote + archive
        try f.registry.rollback(model: "m", actor: "oncall", reason: "latency")  // rollback ×2
        try f.registry.setAlias(model: "m", alias: "champion", version: 1, actor: "alice")  // alias
        try f.registry.tag(try f.ref("m@1"), ["dataset": "t7"], actor: "alice")  // tag
        try f.registry.untag(try f.ref("m@1"), ["dataset"], actor: "alice")  // untag
        try f.push("m", by: "alice")  // push
        try f.registry.archive(try f.ref("m@3"), actor: "alice")  // archive
        try f.push("m", by: "alice")  // push
        try f.registry.delete(try f.ref("m@4"), actor: "alice", reason: "broken run")  // delete
        let token = try f.registry.createToken(user: "rita", role: .reader, actor: "ops")  // token-create
        try f.registry.revokeToken(id: token.record.id, actor: "ops")  // token-revoke
        return f
    }

    @Test func everyChangeIsAppendedWithItsFields() throws {
        let f = try everyKindOfChange()
        let log = try f.registry.auditLog()
        #expect(
            log.map(\.action) == [
                .push, .push, .policy, .promote, .approve, .promote, .approve, .promote, .archive, .rollback, .rollback,
                .alias, .tag, .untag, .push, .archive, .push, .delete, .tokenCreate, .tokenRevoke,
            ]
        )
        #expect(log.map(\.sequence) == Array(1...UInt64(log.count)))
        #expect(Set(AuditAction.allCases).isSubset(of: Set(log.map(\.action))))
        #expect(zip(log, log.dropFirst()).allSatisfy { $0.time <= $1.time }, "times never go backwards")
        let push = log[0]
        #expect(
            push.actor == "alice" && push.target == "m@1" && push.version == 1 && push.before == nil
                && push.after == "experimental"
        )
        #expect(push.details["manifest"] == (try f.version("m@1").manifest))
        #expect(push.details["message"] == "first")
        #expect(push.prevSHA256 == String(repeating: "0", count: 64))
        let promote = log[5]
        #expect(promote.before == "staging" && promote.after == "production" && promote.evidence == ["eval": "run-7"])
        #expect(promote.details["approved_by"] == "bob")
        let approve = log[4]
        #expect(approve.actor == "bob" && approve.reason == "evals fine" && approve.after == "production")
        let delete = log[17]
        #expect(delete.before == "experimental" && delete.after == nil && delete.reason == "broken run")
        // Tokens: who created and revoked which token for whom; they belong to no model.
        let created = log[18]
        let revoked = log[19]
        #expect(created.actor == "ops" && created.model == "" && created.after == "rita (reader)")
        #expect(revoked.actor == "ops" && revoked.target == created.target && revoked.before == "rita (reader)")
        #expect(try f.registry.auditLog(model: "m").count == 18, "token entries are not in a model's history")
        let verified = try f.registry.verifyAudit()
        let head = try #require(verified.head)
        #expect(verified == AuditVerification(ok: true, entries: log.count, firstBroken: nil, problem: nil, head: head))
        #expect(head.count == 64 && head != log.last!.prevSHA256)
        // The head is the SHA-256 of the last entry: the next entry links to it.
        try f.registry.tag(try Reference(parsing: "m@1"), ["after": "head"], actor: "alice")
        #expect(try f.registry.auditLog().last?.prevSHA256 == head)
        #expect(try f.registry.verifyAudit().head != head)
    }

    @Test func eachEntryRecordsTheHashOfThePreviousStoredEntry() throws {
        let f = try everyKindOfChange()
        let table = try f.store.table("audit")
        let stored = try f.store.readMetadata { txn in try txn.scan(table) }
        #expect(stored.count == 20)
        for (previous, item) in zip(stored, stored.dropFirst()) {
            let entry = try JSONDecoder().decode(AuditEntry.self, from: Data(item.value))
            #expect(entry.prevSHA256 == SHA256Digest.hash(previous.value).hex)
            #expect(item.key == withUnsafeBytes(of: entry.sequence.bigEndian) { Array($0) })
        }
    }

    /// Rewrites entry `sequence` in the store's audit table (directly in the database, as far as the
    /// registry is concerned).
    func tamper(_ f: Fixture, _ sequence: UInt64, _ edit: (inout [String: Any]) -> Void) throws {
        let table = try f.store.table("audit")
        let key = withUnsafeBytes(of: sequence.bigEndian) { Array($0) }
        try f.store.writeMetadata { txn in
            let bytes = try #require(try txn.get(table, key))
            var object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
            edit(&object)
            try txn.put(table, key, Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])))
        }
    }

    @Test func anAlteredEntryFailsVerificationAtThatEntry() throws {
        let f = try everyKindOfChange()
        #expect(try f.registry.verifyAudit().ok)
        // Someone rewrites who approved the production release.
        try tamper(f, 5) { $0["actor"] = "mallory" }
        let result = try f.registry.verifyAudit()
        #expect(!result.ok)
        #expect(result.firstBroken == 5)
        #expect(result.problem?.contains("entry 5 was altered") == true)
        #expect(result.entries == 4, "entries 1-4 verified")
    }

    @Test func alteringTheFirstOrLastEntryIsDetected() throws {
        let f = try everyKindOfChange()
        try tamper(f, 18) { $0["reason"] = "routine cleanup" }
        var result = try f.registry.verifyAudit()
        #expect(result.firstBroken == 18)
        #expect(result.problem?.contains("entry 18 was altered") == true)

        let g = try everyKindOfChange()
        try tamper(g, 1) { $0["actor"] = "mallory" }
        result = try g.registry.verifyAudit()
        #expect(result.firstBroken == 1)
    }

    @Test func aRemovedEntryIsDetected() throws {
        let f = try everyKindOfChange()
        let table = try f.store.table("audit")
        _ = try f.store.writeMetadata { txn in
            try txn.delete(table, withUnsafeBytes(of: UInt64(7).bigEndian) { Array($0) })
        }
        let result = try f.registry.verifyAudit()
        #expect(result.firstBroken == 7)
        #expect(result.problem == "entry 7 is missing (the next entry is 8)")

        let g = try everyKindOfChange()
        let last = try g.store.table("audit")
        _ = try g.store.writeMetadata { txn in
            try txn.delete(last, withUnsafeBytes(of: UInt64(18).bigEndian) { Array($0) })
        }
        #expect(try g.registry.verifyAudit().firstBroken == 18)

        // `history` reads through the per-model index; a hole in it is reported too.
        let h = try everyKindOfChange()
        let index = try h.store.table("audit-by-model")
        _ = try h.store.writeMetadata { txn in
            try txn.delete(index, Array("m".utf8) + [0] + withUnsafeBytes(of: UInt64(3).bigEndian) { Array($0) })
        }
        let result3 = try h.registry.verifyAudit()
        #expect(result3.firstBroken == 3)
        #expect(result3.problem == "entry 3 is missing from the per-model index of the audit log")
    }

    @Test func aRewrittenEntryWithAForgedLinkIsStillCaught() throws {
        // Alter entry 5 and fix entry 6's prev_sha256 to match: entry 6 then no longer matches entry 7's link.
        let f = try everyKindOfChange()
        try tamper(f, 5) { $0["actor"] = "mallory" }
        let table = try f.store.table("audit")
        let newHash = try f.store.readMetadata { txn in
            SHA256Digest.hash(try #require(try txn.get(table, withUnsafeBytes(of: UInt64(5).bigEndian) { Array($0) })))
                .hex
        }
        try tamper(f, 6) { $0["prev_sha256"] = newHash }
        let result = try f.registry.verifyAudit()
        #expect(!result.ok && result.firstBroken == 6)
    }

    @Test func historyShowsStageAndAliasChangesOfOneModel() throws {
        let f = try everyKindOfChange()
        try f.push("other")
        let history = try f.registry.history(of: "m")
        #expect(history.allSatisfy { $0.model == "m" })
        #expect(
            history.map(\.action) == [
                .push, .push, .promote, .promote, .promote, .archive, .rollback, .rollback, .alias, .push, .archive,
                .push, .delete,
            ]
        )
        #expect(history.map(\.change).prefix(3) == ["→ experimental", "→ staging", "experimental → staging"])
        #expect(try f.registry.auditLog(model: "other").map(\.action) == [.push])
        #expect(throws: RegistryError.self) { try f.registry.history(of: "ghost") }
    }

    @Test func auditSinceFiltersByTime() throws {
        let f = try Fixture()
        try f.push("m")
        f.clock.advance(hours: 48)
        let cut = f.clock.now
        try f.push("m")
        try f.push("n")
        let since = try f.registry.auditLog(since: cut)
        #expect(since.map(\.target) == ["m@2", "n@1"])
        #expect(try f.registry.auditLog(model: "m", since: cut).map(\.target) == ["m@2"])
        #expect(try f.registry.auditLog(since: try RegistryTime.parse("2026-03-01", dateOnly: .startOfDay)).count == 3)
    }

    @Test func whatWasInProductionAtAGivenTime() throws {
        let f = try Fixture()  // the clock starts on Monday 2026-03-02, 09:00 UTC
        try f.push("m", stage: .staging)
        try f.push("m", stage: .staging)
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        f.clock.advance(hours: 24)  // Tuesday
        try f.registry.promote(try f.ref("m@2"), to: .production, actor: "alice")
        try f.registry.setAlias(model: "m", alias: "champion", version: 2, actor: "alice")
        f.clock.advance(hours: 24)  // Wednesday
        try f.registry.rollback(model: "m", actor: "oncall", reason: "bad")
        f.clock.advance(hours: 24)  // Thursday
        try f.registry.archive(try f.ref("m@1"), actor: "alice")

        func production(at text: String) throws -> Int {
            let time = try RegistryTime.parse(text, dateOnly: .endOfDay)
            return try f.registry.resolve(try f.ref("m@production"), at: time).version.version
        }
        #expect(try production(at: "2026-03-02") == 1)
        #expect(try production(at: "2026-03-03") == 2, "last Tuesday")
        #expect(try production(at: "2026-03-03T12:00:00Z") == 2)
        #expect(try production(at: "2026-03-04T12:00:00.000Z") == 1)
        #expect(throws: RegistryError.self) { try production(at: "2026-03-01") }
        #expect(throws: RegistryError.self) { try production(at: "2026-03-06") }
        let tuesday = try f.registry.resolve(
            try f.ref("m@champion"),
            at: try RegistryTime.parse("2026-03-03", dateOnly: .endOfDay)
        )
        #expect(tuesday.version.version == 2 && tuesday.stage == .production && tuesday.aliases == ["champion"])
        let past = try f.registry.resolve(
            try f.ref("m@2"),
            at: try RegistryTime.parse("2026-03-02T11:00:00+01:00", dateOnly: .endOfDay)
        )
        #expect(past.stage == .staging)
        #expect(throws: RegistryError.self) {
            try f.registry.resolve(
                try f.ref("m@2"),
                at: try RegistryTime.parse("2026-03-02T08:00:00Z", dateOnly: .endOfDay)
            )
        }
    }

    @Test func timesParse() throws {
        let iso = ISO8601DateFormatter()
        #expect(
            try RegistryTime.parse("2026-03-03T12:00:00Z", dateOnly: .endOfDay)
                == iso.date(from: "2026-03-03T12:00:00Z")
        )
        #expect(
            try RegistryTime.parse("2026-03-03T12:00:00", dateOnly: .endOfDay) == iso.date(from: "2026-03-03T12:00:00Z")
        )
        #expect(
            try RegistryTime.parse("2026-03-03T14:00:00+02:00", dateOnly: .endOfDay)
                == iso.date(from: "2026-03-03T12:00:00Z")
        )
        #expect(
            try RegistryTime.parse("2026-03-03T12:00:00.250Z", dateOnly: .endOfDay).timeIntervalSince1970
                == iso.date(from: "2026-03-03T12:00:00Z")!.timeIntervalSince1970 + 0.25
        )
        #expect(try RegistryTime.parse("2026-03-03", dateOnly: .startOfDay) == iso.date(from: "2026-03-03T00:00:00Z"))
        #expect(
            RegistryTime.format(try RegistryTime.parse("2026-03-03", dateOnly: .endOfDay)) == "2026-03-03T23:59:59.999Z"
        )
        for bad in ["yesterday", "2026-13-01", "2026-02-30", "2026-03-03T25:00:00Z", ""] {
            #expect(throws: RegistryError.self, "\(bad)") { try RegistryTime.parse(bad, dateOnly: .endOfDay) }
        }
    }
}
