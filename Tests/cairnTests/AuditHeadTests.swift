import CairnFixtures
import CairnStore
import Digest
import Foundation
import Testing

/// `audit verify` prints the chain's head; `--expect-head` with a head recorded earlier detects a
/// history rewritten by someone who could write the index and recompute every later hash — which
/// the chain alone cannot.
@Suite(.serialized) struct AuditHeadTests {
    static func head(_ run: CrossProcessTests.Run) throws -> String {
        let text = String(decoding: run.stdout, as: UTF8.self)
        let head = try #require(
            text.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        )
        try #require(head.count == 64, "audit verify printed: \(text)")
        return head
    }

    /// Rewrites entry `sequence` with `edit`, then every later entry's `prev_sha256` and the head,
    /// as someone with write access to index.mdb could.
    static func forge(store path: String, sequence: UInt64, _ edit: (inout [String: Any]) -> Void) throws {
        let store = try Store.open(at: path)
        let audit = try store.table("audit")
        let head = try store.table("audit-head")
        try store.writeMetadata { txn in
            var previousHash: String?
            var sequenceNow = sequence
            var last: UInt64 = 0
            while let bytes = try txn.get(audit, withUnsafeBytes(of: sequenceNow.bigEndian) { Array($0) }) {
                var object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
                if sequenceNow == sequence { edit(&object) }
                if let previousHash { object["prev_sha256"] = previousHash }
                let forged = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
                try txn.put(audit, withUnsafeBytes(of: sequenceNow.bigEndian) { Array($0) }, forged)
                previousHash = SHA256Digest.hash(forged).hex
                last = sequenceNow
                sequenceNow += 1
            }
            let record = try JSONSerialization.data(
                withJSONObject: ["seq": last, "sha256": previousHash!],
                options: [.sortedKeys]
            )
            try txn.put(head, Array("head".utf8), Array(record))
        }
    }

    @Test func aRecordedHeadDetectsARewrittenHistory() throws {
        let w = try CrossProcessTests.Workspace()
        let store = ["--store", w.store, "--user", "alice"]
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try ExitCodeTests.expectExit(0, ["init"] + store)
        try ExitCodeTests.expectExit(0, ["push", w.dir("base").path, "--model", "m"] + store)
        try ExitCodeTests.expectExit(0, ["promote", "m@1", "--to", "staging", "--reason", "evals ok"] + store)
        let recorded = try Self.head(try ExitCodeTests.expectExit(0, ["audit", "verify"] + store))
        try ExitCodeTests.expectExit(0, ["audit", "verify", "--expect-head", recorded] + store)

        // The chain grows: it still leads to the recorded head.
        try ExitCodeTests.expectExit(0, ["tag", "m@1", "team=search"] + store)
        let grown = try Self.head(try ExitCodeTests.expectExit(0, ["audit", "verify"] + store))
        #expect(grown != recorded)
        try ExitCodeTests.expectExit(0, ["audit", "verify", "--expect-head", recorded] + store)
        try ExitCodeTests.expectExit(0, ["audit", "verify", "--expect-head", recorded.uppercased(), "--json"] + store)

        // Someone rewrites who promoted, and recomputes the chain: it verifies, but no longer leads
        // to the head recorded before.
        try Self.forge(store: w.store, sequence: 2) { $0["actor"] = "mallory" }
        try ExitCodeTests.expectExit(0, ["audit", "verify"] + store)
        try ExitCodeTests.expectExit(
            4,
            ["audit", "verify", "--expect-head", recorded] + store,
            mentioning: "does not lead to"
        )
        try ExitCodeTests.expectExit(
            4,
            ["audit", "verify", "--expect-head", grown, "--json"] + store,
            mentioning: "does not lead to"
        )
        try ExitCodeTests.expectExit(
            2,
            ["audit", "verify", "--expect-head", "abc"] + store,
            mentioning: "64 hex digits"
        )
    }
}
