import ArgumentParser
import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation
import Testing

@testable import cairn

@Suite struct RegistryCommandParsingTests {
    @Test func lifecycleCommandsParse() throws {
        let promote = try #require(
            try Cairn.parseAsRoot([
                "promote", "m@3", "--to", "production", "--reason", "weekly", "--evidence", "eval=run-7", "--evidence",
                "dash=x",
                "--store", "/s", "--user", "alice", "--json",
            ]) as? Cairn.Promote
        )
        #expect(
            promote.ref == "m@3" && (try? promote.to.value(for: "--to")) == .production && promote.reason == "weekly"
        )
        #expect(promote.evidence == ["eval=run-7", "dash=x"])
        #expect(promote.global.store == "/s" && promote.global.user == "alice" && promote.global.json)

        let approve = try #require(
            try Cairn.parseAsRoot(["approve", "m@3", "--to", "production", "--reason", "ok"]) as? Cairn.Approve
        )
        #expect((try? approve.to.value(for: "--to")) == .production && approve.reason == "ok")

        let rollback = try #require(
            try Cairn.parseAsRoot(["rollback", "m", "--to", "2", "--reason", "incident"]) as? Cairn.Rollback
        )
        #expect(rollback.model == "m" && rollback.to == 2 && rollback.reason == "incident")
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["rollback", "m"]) }

        #expect(try Cairn.parseAsRoot(["archive", "m@2", "--reason", "old"]) is Cairn.Archive)
        #expect(try Cairn.parseAsRoot(["delete", "m@2"]) is Cairn.Delete)
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["delete", "m"]) }
        let gc = try #require(try Cairn.parseAsRoot(["gc", "--grace-period", "0"]) as? Cairn.GC)
        #expect(gc.gracePeriod == 0)
    }

    @Test func aliasTagAndPolicyCommandsParse() throws {
        let set = try #require(try Cairn.parseAsRoot(["alias", "set", "m", "champion", "3"]) as? Cairn.Alias.Set)
        #expect(set.model == "m" && set.alias == "champion" && set.version == 3)
        #expect(try Cairn.parseAsRoot(["alias", "rm", "m", "champion"]) is Cairn.Alias.Remove)
        #expect(try Cairn.parseAsRoot(["alias", "ls", "m"]) is Cairn.Alias.List)
        let tag = try #require(try Cairn.parseAsRoot(["tag", "m@1", "dataset=x", "owner=y"]) as? Cairn.Tag)
        #expect(tag.tags == ["dataset=x", "owner=y"])
        let untag = try #require(try Cairn.parseAsRoot(["untag", "m@1", "dataset", "owner"]) as? Cairn.Untag)
        #expect(untag.keys == ["dataset", "owner"])
        let policy = try #require(
            try Cairn.parseAsRoot([
                "policy", "set", "m", "--approvals", "production=2", "--approvals", "staging=1", "--require",
                "eval_loss<=1.9",
            ]) as? Cairn.PolicyCommand.Set
        )
        #expect(policy.approvals == ["production=2", "staging=1"] && policy.require == ["eval_loss<=1.9"])
        let clear = try #require(try Cairn.parseAsRoot(["policy", "set", "m"]) as? Cairn.PolicyCommand.Set)
        #expect(clear.approvals.isEmpty && clear.require.isEmpty)
        #expect(try Cairn.parseAsRoot(["policy", "show", "m"]) is Cairn.PolicyCommand.Show)
    }

    @Test func queryAndAuditCommandsParse() throws {
        let ls = try #require(
            try Cairn.parseAsRoot(["ls", "m", "--tag", "dataset=x", "--metric", "eval_loss<2", "--stage", "staging"])
                as? Cairn.List
        )
        #expect(
            ls.model == "m" && ls.tag == ["dataset=x"] && ls.metric == ["eval_loss<2"]
                && (try? ls.stage?.value(for: "--stage")) == .staging
        )
        let show = try #require(try Cairn.parseAsRoot(["show", "m@production", "--at", "2026-03-03"]) as? Cairn.Show)
        #expect(show.at == "2026-03-03")
        #expect(try Cairn.parseAsRoot(["lineage", "m@1"]) is Cairn.LineageCommand)
        #expect(try Cairn.parseAsRoot(["history", "m"]) is Cairn.History)
        let audit = try #require(
            try Cairn.parseAsRoot(["audit", "--model", "m", "--since", "2026-03-01"]) as? Cairn.Audit.List
        )
        #expect(audit.model == "m" && audit.since == "2026-03-01")
        #expect(try Cairn.parseAsRoot(["audit"]) is Cairn.Audit.List)
        #expect(try Cairn.parseAsRoot(["audit", "verify", "--json"]) is Cairn.Audit.Verify)
    }
}

/// Runs commands in-process against a temporary store and checks their exit codes.
@Suite struct RegistryCommandRunTests {
    final class Workspace {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-cli-\(UUID().uuidString)").path
        var store: String { root + "/store" }

        init() throws {
            try FileManager.default.createDirectory(atPath: root + "/tree", withIntermediateDirectories: true)
            try Data(FixtureData.bytes(count: 40_000, seed: 3)).write(
                to: URL(fileURLWithPath: root + "/tree/weights.bin")
            )
        }

        deinit { try? FileManager.default.removeItem(atPath: root) }

        /// The exit code of `cairn ARGS --store … --user USER`.
        func run(_ args: [String], user: String = "alice") -> Int32 {
            Cairn.executeBlocking(args + ["--store", store, "--user", user])
        }
    }

    @Test func refusalsExitFiveAndChangeNothing() throws {
        let w = try Workspace()
        #expect(w.run(["init"]) == 0)
        #expect(w.run(["push", w.root + "/tree", "--model", "m", "--metric", "eval_loss=2.1"]) == 0)
        #expect(
            w.run(["policy", "set", "m", "--approvals", "production=1", "--require", "eval_loss<=1.9"], user: "lead")
                == 0
        )
        #expect(w.run(["promote", "m@1", "--to", "staging"]) == 0)
        let registry = try Registry(store: try Store.open(at: w.store))
        let before = try registry.auditLog().count
        #expect(w.run(["promote", "m@1", "--to", "production"]) == 5)
        #expect(w.run(["approve", "m@1", "--to", "production"]) == 5, "the creator's approval")
        #expect(w.run(["rollback", "m", "--reason", "x"]) == 5)
        #expect(w.run(["promote", "m@1", "--to", "nowhere"]) == 2)
        #expect(w.run(["show", "m@9"]) == 3)
        #expect(try registry.auditLog().count == before)
        #expect(try registry.resolve(try Reference(parsing: "m@1")).stage == .staging)
        #expect(w.run(["approve", "m@1", "--to", "production"], user: "bob") == 0)
        #expect(w.run(["policy", "set", "m"], user: "lead") == 0)
        #expect(w.run(["promote", "m@1", "--to", "production", "--json"]) == 0)
        #expect(w.run(["alias", "set", "m", "champion", "1"]) == 0)
        #expect(w.run(["show", "m@champion", "--json"]) == 0)
        #expect(w.run(["show", "m@production", "--at", "2999-01-01"]) == 0)
        #expect(w.run(["ls", "--stage", "production"]) == 0)
        #expect(w.run(["ls", "m", "--metric", "eval_loss<3"]) == 0)
        #expect(w.run(["history", "m"]) == 0)
        #expect(w.run(["audit", "--model", "m"]) == 0)
        #expect(w.run(["audit", "verify"]) == 0)
        #expect(w.run(["delete", "m@1"]) == 5)
        #expect(w.run(["lineage", "m@1", "--json"]) == 0)
        #expect(w.run(["gc", "--json"]) == 0)
        #expect(try registry.resolve(try Reference(parsing: "m@production")).version == 1)
    }
}
