import CairnRegistry
import CairnStore
import Foundation
import Testing

@Suite struct GateTests {
    @Test func approvalsFromTheCreatorDoNotCount() throws {
        let f = try Fixture()
        try f.push("m", by: "alice", stage: .staging)
        try f.policy("m", approvals: [.production: 1])
        try f.expectRefusal(
            .refused,
            "cannot promote m@1 to production: needs 1 more approval for production from someone other than alice"
        ) {
            try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        }
        try f.expectRefusal(.refused, "alice created m@1: approvals by a version's creator do not count") {
            try f.registry.approve(try f.ref("m@1"), for: .production, actor: "alice")
        }
        try f.registry.approve(try f.ref("m@1"), for: .production, actor: "bob", reason: "looked at the evals")
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        #expect(try f.stage("m@1") == .production)
        let promote = try #require(try f.registry.auditLog().last)
        #expect(promote.details["approved_by"] == "bob")
    }

    @Test func eachUserCountsOnce() throws {
        let f = try Fixture()
        try f.push("m", by: "alice", stage: .staging)
        try f.policy("m", approvals: [.production: 2])
        try f.registry.approve(try f.ref("m@1"), for: .production, actor: "bob")
        try f.expectRefusal(.refused, "bob has already approved m@1 for production") {
            try f.registry.approve(try f.ref("m@1"), for: .production, actor: "bob")
        }
        try f.expectRefusal(
            .refused,
            "needs 1 more approval for production from someone other than alice (approved by bob)"
        ) {
            try f.registry.promote(try f.ref("m@1"), to: .production, actor: "bob")
        }
        // An approval for another stage does not count for production.
        try f.push("m", by: "alice")
        try f.registry.approve(try f.ref("m@2"), for: .staging, actor: "carol")
        #expect(try f.version("m@2").approvers(for: .production).isEmpty)
        try f.registry.approve(try f.ref("m@1"), for: .production, actor: "carol")
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "bob")
        #expect(try f.stage("m@1") == .production)
    }

    @Test func approvalsOnlyForStagingOrProduction() throws {
        let f = try Fixture()
        try f.push("m")
        try f.expectRefusal(.invalidArgument, "approvals are for staging or production") {
            try f.registry.approve(try f.ref("m@1"), for: .archived, actor: "bob")
        }
        try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice")
        try f.expectRefusal(.refused, "m@1 is already in staging") {
            try f.registry.approve(try f.ref("m@1"), for: .staging, actor: "bob")
        }
    }

    @Test func metricThresholdsSayWhatFails() throws {
        let f = try Fixture()
        try f.push("m", by: "alice", metrics: ["eval_loss": 2.1, "accuracy": 0.8], stage: .staging)
        try f.policy("m", approvals: [.production: 1], require: ["eval_loss<=1.9", "accuracy>=0.9", "latency_ms<=50"])
        let error = try f.expectRefusal(.refused) {
            try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        }
        #expect(
            error?.message
                == "cannot promote m@1 to production: needs 1 more approval for production from someone other than alice; eval_loss 2.1 > 1.9; accuracy 0.8 < 0.9; metric latency_ms is not recorded (the policy requires latency_ms<=50 for production)"
        )
        try f.push("m", by: "alice", metrics: ["eval_loss": 1.83, "accuracy": 0.93, "latency_ms": 40], stage: .staging)
        try f.registry.approve(try f.ref("m@2"), for: .production, actor: "bob")
        try f.registry.promote(
            try f.ref("m@2"),
            to: .production,
            actor: "alice",
            evidence: ["eval_run": "s3://runs/42"]
        )
        #expect(try f.stage("m@2") == .production)
        #expect(try f.registry.auditLog().last?.evidence == ["eval_run": "s3://runs/42"])
    }

    @Test func stagingGateAppliesToPromotionAndToPushIntoStaging() throws {
        let f = try Fixture()
        try f.push("m")
        try f.policy("m", approvals: [.staging: 1], require: ["staging:eval_loss<=3"])
        var request = PushRequest(model: "m", actor: "alice")
        request.stage = .staging
        request.metrics = ["eval_loss": 2]
        let tree = try f.tree("s", seed: 77)
        try f.expectRefusal(
            .refused,
            "cannot push a new version of m into staging: needs 1 more approval for staging from someone other than alice"
        ) {
            _ = try f.registry.push(directory: tree, request: request)
        }
        try f.expectRefusal(.refused, "metric eval_loss is not recorded (the policy requires eval_loss<=3 for staging)")
        {
            try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice")
        }
        // Production thresholds are not checked for staging.
        try f.policy("m", require: ["eval_loss<=1"])
        try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice")
        #expect(try f.stage("m@1") == .staging)
    }

    @Test func policySetReplacesTheWholePolicyAndEmptyClearsIt() throws {
        let f = try Fixture()
        try f.push("m", stage: .staging)
        try f.policy("m", approvals: [.production: 2], require: ["eval_loss<=1.9"])
        #expect(try f.registry.policy(of: "m").approvals == [.production: 2])
        try f.policy("m", require: ["accuracy>=0.5"])
        let replaced = try f.registry.policy(of: "m")
        #expect(replaced.approvals.isEmpty)
        #expect(replaced.requirements.map(\.description) == ["accuracy>=0.5"])
        try f.policy("m")
        #expect(try f.registry.policy(of: "m").isEmpty)
        let entries = try f.registry.auditLog().filter { $0.action == .policy }
        #expect(
            entries.map(\.before) == [nil, "approvals production=2, require eval_loss<=1.9", "require accuracy>=0.5"]
        )
        #expect(
            entries.map(\.after) == ["approvals production=2, require eval_loss<=1.9", "require accuracy>=0.5", nil]
        )
        // Setting the same policy again changes nothing and logs nothing.
        let unchanged = try f.registry.setPolicy(model: "m", Policy(), actor: "lead")
        #expect(!unchanged.changed && unchanged.audit.isEmpty)
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
    }

    @Test func badPoliciesAreRefused() throws {
        let f = try Fixture()
        try f.push("m")
        try f.expectRefusal(.invalidArgument, "approvals can be required for staging or production") {
            try f.registry.setPolicy(model: "m", Policy(approvals: [.archived: 1]), actor: "lead")
        }
        try f.expectRefusal(.invalidArgument, "between 0 and 100") {
            try f.registry.setPolicy(model: "m", Policy(approvals: [.production: -1]), actor: "lead")
        }
        try f.expectRefusal(.notFound, "no model named ghost") {
            try f.registry.setPolicy(model: "ghost", Policy(approvals: [.production: 1]), actor: "lead")
        }
        #expect(throws: RegistryError.self) { try Policy.Requirement(parsing: "eval_loss~2") }
        #expect(throws: RegistryError.self) { try Policy.Requirement(parsing: "eval_loss<=abc") }
        #expect(throws: RegistryError.self) { try Policy.Requirement(parsing: "archived:eval_loss<=2") }
        let r = try Policy.Requirement(parsing: "staging:eval_loss <= 2.5")
        #expect(
            r.stage == .staging
                && r.condition == MetricCondition(metric: "eval_loss", comparison: .lessOrEqual, value: 2.5)
        )
    }
}
