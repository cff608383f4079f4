import CairnRegistry
import CairnStore
import Foundation
import Testing

@Suite struct DeleteGCTests {
    @Test func deleteRemovesTheVersionAndNeverReusesItsNumber() throws {
        let f = try Fixture()
        try f.push("m")
        try f.push("m")
        let result = try f.registry.delete(try f.ref("m@2"), actor: "alice", reason: "bad run")
        #expect(result.audit.map(\.action) == [.delete])
        #expect(result.audit[0].before == "experimental" && result.audit[0].after == nil)
        try f.expectRefusal(.notFound, "m@2 was deleted") { _ = try f.version("m@2") }
        #expect(try f.version("m").version == 1, "the latest live version")
        try f.push("m")
        #expect(try f.version("m").version == 3, "numbers are never reused")
        #expect(try f.registry.listVersions(of: "m").map(\.version) == [1, 3])
        #expect(try f.registry.statistics().versions == 2)
    }

    @Test func aVersionThatWasEverInProductionCannotBeDeleted() throws {
        let f = try Fixture()
        try f.push("m", stage: .staging)
        try f.push("m", stage: .staging)
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        try f.expectRefusal(.refused, "m@1 has been in production and cannot be deleted; archive it instead") {
            try f.registry.delete(try f.ref("m@1"), actor: "alice")
        }
        try f.registry.promote(try f.ref("m@2"), to: .production, actor: "alice")
        #expect(try f.stage("m@1") == .archived)
        try f.expectRefusal(.refused, "m@1 has been in production and cannot be deleted") {
            try f.registry.delete(try f.ref("m@1"), actor: "alice")
        }
        try f.registry.rollback(model: "m", actor: "oncall", reason: "x")
        try f.expectRefusal(.refused, "m@2 has been in production") {
            try f.registry.delete(try f.ref("m@2"), actor: "alice")
        }
    }

    @Test func deleteIsRefusedWhileAnAliasPointsAtTheVersion() throws {
        let f = try Fixture()
        try f.push("base")
        try f.push("adapter", parents: ["base@1"])
        try f.push("m")
        try f.registry.setAlias(model: "m", alias: "canary", version: 1, actor: "alice")
        try f.expectRefusal(.refused, "m@1 is the target of alias canary; move or remove it first") {
            try f.registry.delete(try f.ref("m@1"), actor: "alice")
        }
        try f.registry.removeAlias(model: "m", alias: "canary", actor: "alice")
        try f.registry.delete(try f.ref("m@1"), actor: "alice")
        // A parent can go: the child's lineage keeps the reference, marked as gone (no stage).
        try f.registry.delete(try f.ref("base@1"), actor: "alice")
        let lineage = try f.registry.lineage(try f.ref("adapter@1"))
        #expect(lineage.ancestors.map(\.reference) == ["base@1"] && lineage.ancestors[0].stage == nil)
        try f.registry.delete(try f.ref("adapter@1"), actor: "alice")
        #expect(try f.registry.statistics().versions == 0)
    }

    @Test func gcReclaimsTheBytesOfDeletedVersionsOnly() throws {
        let f = try Fixture()
        try f.push("m", seed: 1, size: 512 << 10, stage: .staging)
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        let experiment = try f.push("m", seed: 2, size: 512 << 10)
        let shared = try f.push("m", seed: 1, size: 512 << 10)  // same bytes as m@1: adds nothing
        #expect(shared.newBytes == 0)
        let before = try f.registry.statistics()
        let sizes = try (1...3).map { try f.version("m@\($0)").logicalBytes }
        #expect(before.logicalBytes == sizes.reduce(0, +))

        try f.registry.delete(try f.ref("m@2"), actor: "alice")
        try f.registry.delete(try f.ref("m@3"), actor: "alice")
        let deleted = try f.registry.statistics()
        #expect(deleted.logicalBytes == sizes[0], "logical bytes count live versions only")
        #expect(deleted.storedBytes == before.storedBytes, "nothing is reclaimed before gc")

        let report = try f.registry.collectGarbage(gracePeriod: 0)
        #expect(report.removedManifests == 1, "m@3 shares m@1's manifest, which stays")
        #expect(report.removedChunkBytes == experiment.newBytes, "exactly the chunks only m@2 used")
        let after = try f.registry.statistics()
        #expect(after.storedBytes < before.storedBytes - (400 << 10))
        #expect(after.uniqueBytes == before.uniqueBytes - report.removedChunkBytes)
        #expect(after.logicalBytes == deleted.logicalBytes)

        // The live versions read back intact.
        let out = f.dir.sub("pulled")
        try f.registry.pull(try f.version("m@production"), to: out)
        #expect(try Data(contentsOf: URL(fileURLWithPath: out + "/weights.bin")).count == 512 << 10)
        #expect(try f.store.verify(deep: true).isHealthy)
        // gc is not an audited change, and the audit chain is intact.
        #expect(try f.registry.verifyAudit().ok)
    }
}
