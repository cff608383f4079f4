import CairnRegistry
import CairnStore
import Foundation
import Testing

@Suite struct RollbackTests {
    /// m@1, m@2, m@3 promoted to production in turn.
    func threeReleases() throws -> Fixture {
        let f = try Fixture()
        for n in 1...3 {
            try f.push("m", stage: .staging)
            try f.registry.promote(try f.ref("m@\(n)"), to: .production, actor: "alice")
        }
        return f
    }

    @Test func rollbackRestoresThePreviousProductionVersion() throws {
        let f = try threeReleases()
        let result = try f.registry.rollback(model: "m", actor: "oncall", reason: "error rate up")
        #expect(result.version == 2 && result.stage == .production)
        #expect(try f.version("m@production").version == 2)
        #expect(try f.stage("m@3") == .archived)
        #expect(result.audit.map(\.action) == [.rollback, .rollback])
        #expect(result.audit.map(\.target) == ["m@3", "m@2"])
        #expect(result.audit.map(\.before) == ["production", "archived"])
        #expect(result.audit.map(\.after) == ["archived", "production"])
        #expect(result.audit.allSatisfy { $0.reason == "error rate up" && $0.actor == "oncall" })
        // Again: the version before m@2, not the one just rolled back from.
        try f.registry.rollback(model: "m", actor: "oncall", reason: "still bad")
        #expect(try f.version("m@production").version == 1)
        #expect(try f.stage("m@2") == .archived)
        try f.expectRefusal(.refused, "model m has no production version before m@1 to roll back to") {
            try f.registry.rollback(model: "m", actor: "oncall", reason: "again")
        }
    }

    @Test func rollbackToAVersionThatWasInProduction() throws {
        let f = try threeReleases()
        try f.push("m", stage: .staging)
        try f.registry.rollback(model: "m", to: 1, actor: "oncall", reason: "back to the known good one")
        #expect(try f.version("m@production").version == 1)
        #expect(try f.stage("m@3") == .archived)
        #expect(try f.stage("m@2") == .archived)
        try f.expectRefusal(
            .refused,
            "m@4 has never been in production; rollback returns to a former production version"
        ) {
            try f.registry.rollback(model: "m", to: 4, actor: "oncall", reason: "x")
        }
        try f.expectRefusal(.refused, "m@1 is already in production") {
            try f.registry.rollback(model: "m", to: 1, actor: "oncall", reason: "x")
        }
        try f.expectRefusal(.notFound, "no version 9 of model m") {
            try f.registry.rollback(model: "m", to: 9, actor: "oncall", reason: "x")
        }
    }

    @Test func rollbackNeedsAReasonAndAFormerProductionVersion() throws {
        let f = try Fixture()
        try f.push("m", stage: .staging)
        try f.expectRefusal(.invalidArgument, "a rollback needs a reason") {
            try f.registry.rollback(model: "m", actor: "oncall", reason: "  ")
        }
        try f.expectRefusal(.refused, "model m has never had a version in production") {
            try f.registry.rollback(model: "m", actor: "oncall", reason: "x")
        }
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        try f.expectRefusal(.refused, "no production version before m@1") {
            try f.registry.rollback(model: "m", actor: "oncall", reason: "x")
        }
        try f.expectRefusal(.notFound, "no model named ghost") {
            try f.registry.rollback(model: "ghost", actor: "oncall", reason: "x")
        }
    }

    @Test func rollbackAfterTheProductionVersionWasArchivedRestoresIt() throws {
        let f = try threeReleases()
        try f.registry.archive(try f.ref("m@3"), actor: "alice")
        try f.registry.rollback(model: "m", actor: "oncall", reason: "archived by mistake")
        #expect(try f.version("m@production").version == 3)
    }

    @Test func rollbackIgnoresGatesAndTouchesNoChunk() throws {
        let f = try threeReleases()
        try f.policy("m", approvals: [.production: 3], require: ["eval_loss<=0"])
        let statsBefore = try f.store.statistics()
        let readBefore = f.store.bytesReadFromPacks
        try f.registry.rollback(model: "m", actor: "oncall", reason: "incident")
        #expect(try f.version("m@production").version == 2)
        let statsAfter = try f.store.statistics()
        #expect(statsAfter.chunkCount == statsBefore.chunkCount && statsAfter.storedBytes == statsBefore.storedBytes)
        #expect(statsAfter.manifestCount == statsBefore.manifestCount)
        #expect(f.store.bytesReadFromPacks == readBefore, "a rollback reads no pack data")
    }
    // Rollback time against model size is measured in Benchmarks/ (RegistryBenchmarks), not here:
    // rollbackIgnoresGatesAndTouchesNoChunk shows structurally that no chunk is read.
}
