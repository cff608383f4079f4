import CairnRegistry
import CairnStore
import Foundation
import Testing

@Suite struct LifecycleTests {
    @Test func pushStartsExperimentalAndMayStartInStaging() throws {
        let f = try Fixture()
        try f.push("m")
        try f.push("m", stage: .staging)
        #expect(try f.stage("m@1") == .experimental)
        #expect(try f.stage("m@2") == .staging)
        var request = PushRequest(model: "m", actor: "alice")
        request.stage = .production
        try f.expectRefusal(.invalidArgument, "use promote") {
            _ = try f.registry.push(directory: try f.tree("x", seed: 9), request: request)
        }
    }

    @Test func allowedMovesFollowTheStageGraph() throws {
        let f = try Fixture()
        try f.push("m")
        try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice")
        #expect(try f.stage("m@1") == .staging)
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        #expect(try f.stage("m@1") == .production)
        try f.registry.promote(try f.ref("m@1"), to: .archived, actor: "alice")
        #expect(try f.stage("m@1") == .archived)
        try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice")
        #expect(try f.stage("m@1") == .staging)
        // Any stage → archived.
        try f.push("m")
        try f.registry.archive(try f.ref("m@2"), actor: "alice")
        #expect(try f.stage("m@2") == .archived)
    }

    @Test func refusedMovesChangeNothing() throws {
        let f = try Fixture()
        try f.push("m")
        try f.expectRefusal(.refused, "cannot promote m@1 from experimental to production: promote it to staging first")
        {
            try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        }
        try f.expectRefusal(.invalidArgument, "cannot promote to experimental") {
            try f.registry.promote(try f.ref("m@1"), to: .experimental, actor: "alice")
        }
        try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice")
        try f.expectRefusal(.refused, "m@1 is already in staging") {
            try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice")
        }
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        try f.expectRefusal(.refused, "cannot promote m@1 from production to staging") {
            try f.registry.promote(try f.ref("m@1"), to: .staging, actor: "alice")
        }
        try f.registry.archive(try f.ref("m@1"), actor: "alice")
        try f.expectRefusal(
            .refused,
            "cannot promote m@1 from archived to production: promote it to staging first, or return it to production with a rollback of m to version 1"
        ) {
            try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        }
        try f.expectRefusal(.refused, "m@1 is already archived") {
            try f.registry.archive(try f.ref("m@1"), actor: "alice")
        }
        try f.expectRefusal(.notFound, "no version 7 of model m") {
            try f.registry.promote(try f.ref("m@7"), to: .staging, actor: "alice")
        }
        try f.expectRefusal(.notFound, "no model named nope") {
            try f.registry.promote(try f.ref("nope"), to: .staging, actor: "alice")
        }
    }

    @Test func promotingToProductionArchivesThePreviousOneInTheSameChange() throws {
        let f = try Fixture()
        try f.push("m", stage: .staging)
        try f.push("m", stage: .staging)
        try f.push("other", stage: .staging)
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        try f.registry.promote(try f.ref("other@1"), to: .production, actor: "alice")
        let result = try f.registry.promote(try f.ref("m@2"), to: .production, actor: "bob", reason: "better")
        #expect(try f.stage("m@1") == .archived)
        #expect(try f.stage("m@2") == .production)
        #expect(try f.stage("other@1") == .production, "other models are not touched")
        #expect(try f.version("m@production").version == 2)
        // One transaction, two audit entries with consecutive numbers.
        #expect(result.audit.map(\.action) == [.promote, .archive])
        #expect(result.audit[1].target == "m@1")
        #expect(result.audit[1].before == "production" && result.audit[1].after == "archived")
        #expect(result.audit[1].reason == "superseded by m@2")
        #expect(result.audit[1].sequence == result.audit[0].sequence + 1)
        // At most one production version per model.
        let production = try f.registry.findVersions(VersionQuery(model: "m", stage: .production))
        #expect(production.map(\.record.version) == [2])
        #expect(try f.version("m@1").everProduction)
    }

    @Test func archivingTheProductionVersionLeavesNone() throws {
        let f = try Fixture()
        try f.push("m", stage: .staging)
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        try f.registry.archive(try f.ref("m@production"), actor: "alice", reason: "retired")
        #expect(throws: RegistryError.self) { try f.version("m@production") }
        #expect(try f.registry.listModels().first?.production == nil)
        let entry = try #require(try f.registry.auditLog().last)
        #expect(
            entry.action == .archive && entry.before == "production" && entry.after == "archived"
                && entry.reason == "retired"
        )
    }

    @Test func productionIsAPointerNotAScan() throws {
        let f = try Fixture()
        for _ in 0..<3 { try f.push("m", stage: .staging) }
        try f.registry.promote(try f.ref("m@2"), to: .production, actor: "alice")
        let table = try f.store.table("models")
        let model = try f.store.readMetadata { txn in try txn.get(table, Array("m".utf8)) }
        let record = try JSONDecoder().decode(ModelRecord.self, from: Data(try #require(model)))
        #expect(record.production == 2)
        #expect(record.productionHistory == [2])
        #expect(try f.version("m@production").version == 2)
        #expect(try f.registry.listModels().first?.production == 2)
    }

    @Test func actorIsRecordedOnEveryEntry() throws {
        let f = try Fixture()
        try f.push("m", by: "alice", stage: .staging)
        try f.registry.approve(try f.ref("m@1"), for: .production, actor: "bob")
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "carol")
        #expect(try f.registry.auditLog().map(\.actor) == ["alice", "bob", "carol"])
        try f.expectRefusal(.invalidArgument, "acting user") {
            try f.registry.archive(try f.ref("m@1"), actor: "")
        }
    }

    @Test func concurrentPromotionsLeaveOneProductionVersionAndAnIntactChain() async throws {
        let f = try Fixture()
        for _ in 1...6 { try f.push("m", stage: .staging) }
        let registry = f.registry
        await withTaskGroup(of: Void.self) { group in
            for n in 1...6 {
                group.addTask {
                    _ = try? registry.promote(try Reference(parsing: "m@\(n)"), to: .production, actor: "user\(n)")
                    _ = try? registry.setAlias(model: "m", alias: "champion", version: n, actor: "user\(n)")
                }
            }
        }
        let production = try f.registry.findVersions(VersionQuery(model: "m", stage: .production))
        #expect(production.count == 1)
        #expect(try f.version("m@production").version == production.first?.record.version)
        #expect(try f.registry.listVersions(of: "m").allSatisfy { $0.everProduction })
        let log = try f.registry.auditLog()
        #expect(log.map(\.sequence) == Array(1...UInt64(log.count)))
        let expected = 23  // 6 pushes, 6 promotions, 5 archives of the previous production version, 6 alias moves
        #expect(log.count == expected)
        #expect(try f.registry.verifyAudit().ok)
    }
}
