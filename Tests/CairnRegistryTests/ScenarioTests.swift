import CairnRegistry
import CairnStore
import Foundation
import Testing

/// A release as a team lives it: push, staging, a gated production release, a bad release, a
/// rollback, and an auditor's questions afterwards.
@Suite struct ScenarioTests {
    @Test func pushStagingGatedProductionBadReleaseRollbackAndAudit() throws {
        let f = try Fixture()
        let r = f.registry

        // The release manager sets the gate.
        try f.push(
            "llama-support",
            by: "alice",
            metrics: ["eval_loss": 1.83],
            tags: ["dataset": "tickets-v7"],
            datasets: ["tickets-v7"]
        )
        try r.setPolicy(
            model: "llama-support",
            Policy(approvals: [.production: 1], requirements: [try Policy.Requirement(parsing: "eval_loss<=1.9")]),
            actor: "lead",
            reason: "release process v2"
        )

        // v1: staging, approved by a reviewer, released.
        try r.promote(try f.ref("llama-support@1"), to: .staging, actor: "alice", reason: "candidate")
        try f.expectRefusal(.refused, "needs 1 more approval for production from someone other than alice") {
            try r.promote(try f.ref("llama-support@1"), to: .production, actor: "alice")
        }
        try r.approve(try f.ref("llama-support@1"), for: .production, actor: "bob", reason: "offline evals ok")
        f.clock.advance(hours: 1)
        try r.promote(
            try f.ref("llama-support@1"),
            to: .production,
            actor: "alice",
            reason: "weekly release",
            evidence: ["eval": "run-41"]
        )
        try r.setAlias(model: "llama-support", alias: "champion", version: 1, actor: "alice")
        let v1Released = f.clock.now

        // v2 fails the metric gate at first: a bad run is refused.
        try f.push("llama-support", by: "carol", metrics: ["eval_loss": 2.1], parents: ["llama-support@1"])
        try r.promote(try f.ref("llama-support@2"), to: .staging, actor: "carol")
        try r.approve(try f.ref("llama-support@2"), for: .production, actor: "bob")
        try f.expectRefusal(.refused, "eval_loss 2.1 > 1.9") {
            try r.promote(try f.ref("llama-support@2"), to: .production, actor: "carol")
        }
        // v3 passes the gate but turns out bad in production.
        try f.push("llama-support", by: "carol", metrics: ["eval_loss": 1.79], parents: ["llama-support@1"])
        try r.promote(try f.ref("llama-support@3"), to: .staging, actor: "carol")
        try r.approve(try f.ref("llama-support@3"), for: .production, actor: "dave", reason: "looks good")
        f.clock.advance(hours: 24)
        try r.promote(try f.ref("llama-support@3"), to: .production, actor: "carol", reason: "weekly release")
        #expect(try f.version("llama-support@production").version == 3)
        #expect(try f.stage("llama-support@1") == .archived)
        let badReleaseLive = f.clock.now

        // Incident: the on-call rolls back.
        f.clock.advance(hours: 2)
        try r.rollback(model: "llama-support", actor: "oncall", reason: "hallucinations in ticket summaries (INC-77)")
        #expect(try f.version("llama-support@production").version == 1)
        #expect(try f.stage("llama-support@3") == .archived)
        try f.expectRefusal(.refused, "has been in production and cannot be deleted") {
            try r.delete(try f.ref("llama-support@3"), actor: "carol")
        }
        // v2 never shipped: it can go.
        try r.delete(try f.ref("llama-support@2"), actor: "carol", reason: "superseded")

        // The auditor's questions.
        let production = try r.info(try f.ref("llama-support@production"))
        #expect(production.record.version == 1)
        #expect(production.aliases == ["champion"])
        #expect(production.record.approvers(for: .production) == ["bob"], "who approved it")
        #expect(production.record.datasets == ["tickets-v7"], "trained on what data")
        let releaseEntry = try #require(
            try r.auditLog(model: "llama-support").first { $0.action == .promote && $0.after == "production" }
        )
        #expect(releaseEntry.evidence == ["eval": "run-41"], "on what evidence")
        #expect(releaseEntry.reason == "weekly release")
        #expect(
            try r.resolve(try f.ref("llama-support@production"), at: badReleaseLive).version.version == 3,
            "what was in production then"
        )
        #expect(try r.resolve(try f.ref("llama-support@production"), at: v1Released).version.version == 1)
        let history = try r.history(of: "llama-support").map { "\($0.action.rawValue) \($0.target) \($0.change)" }
        #expect(
            history == [
                "push llama-support@1 → experimental",
                "promote llama-support@1 experimental → staging",
                "promote llama-support@1 staging → production",
                "alias llama-support@champion → llama-support@1",
                "push llama-support@2 → experimental",
                "promote llama-support@2 experimental → staging",
                "push llama-support@3 → experimental",
                "promote llama-support@3 experimental → staging",
                "promote llama-support@3 staging → production",
                "archive llama-support@1 production → archived",
                "rollback llama-support@3 production → archived",
                "rollback llama-support@1 archived → production",
                "delete llama-support@2 staging →",
            ]
        )
        let verification = try r.verifyAudit()
        #expect(verification.ok)
        #expect(verification.entries == (try r.auditLog().count))
    }
}
