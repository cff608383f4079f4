import CairnRegistry
import CairnStore
import Foundation
import Testing

@Suite struct AliasTagTests {
    @Test func aliasesResolveAndMoveAtomically() throws {
        let f = try Fixture()
        try f.push("m")
        try f.push("m")
        try f.push("n")
        try f.registry.setAlias(model: "m", alias: "champion", version: 1, actor: "alice")
        try f.registry.setAlias(model: "m", alias: "challenger", version: 2, actor: "alice")
        try f.registry.setAlias(model: "n", alias: "champion", version: 1, actor: "alice")
        #expect(try f.version("m@champion").version == 1)
        #expect(try f.version("m@challenger").version == 2)
        #expect(try f.registry.info(try f.ref("m@1")).aliases == ["champion"])
        // Move: the alias names exactly one version of its model at any time.
        let moved = try f.registry.setAlias(
            model: "m",
            alias: "champion",
            version: 2,
            actor: "bob",
            reason: "won the A/B test"
        )
        #expect(moved.audit.count == 1)
        #expect(
            moved.audit[0].before == "m@1" && moved.audit[0].after == "m@2" && moved.audit[0].target == "m@champion"
        )
        #expect(try f.version("m@champion").version == 2)
        #expect(try f.registry.info(try f.ref("m@1")).aliases == [])
        #expect(try f.registry.info(try f.ref("m@2")).aliases == ["challenger", "champion"])
        #expect(try f.version("n@champion").version == 1, "aliases are per model")
        // Same target: nothing to do, nothing logged.
        let same = try f.registry.setAlias(model: "m", alias: "champion", version: 2, actor: "bob")
        #expect(!same.changed && same.audit.isEmpty)
        try f.registry.removeAlias(model: "m", alias: "challenger", actor: "bob")
        #expect(throws: RegistryError.self) { try f.version("m@challenger") }
        #expect(try f.registry.aliases(of: "m").map(\.alias) == ["champion"])
        let last = try #require(try f.registry.auditLog().last)
        #expect(last.action == .alias && last.before == "m@2" && last.after == nil)
    }

    @Test func aliasRefusals() throws {
        let f = try Fixture()
        try f.push("m")
        for bad in ["production", "latest", "12", "Champion", "-x", "a@b", ""] {
            try f.expectRefusal(.invalidArgument, "invalid alias") {
                try f.registry.setAlias(model: "m", alias: bad, version: 1, actor: "alice")
            }
        }
        try f.expectRefusal(.notFound, "no version 5 of model m") {
            try f.registry.setAlias(model: "m", alias: "champion", version: 5, actor: "alice")
        }
        try f.expectRefusal(.notFound, "no model named ghost") {
            try f.registry.setAlias(model: "ghost", alias: "champion", version: 1, actor: "alice")
        }
        try f.expectRefusal(.notFound, "model m has no alias champion") {
            try f.registry.removeAlias(model: "m", alias: "champion", actor: "alice")
        }
        try f.expectRefusal(.notFound, "model m has no alias or stage named \"canary\"") {
            _ = try f.version("m@canary")
        }
    }

    @Test func stageReferencesResolve() throws {
        let f = try Fixture()
        try f.push("m", stage: .staging)
        try f.push("m", stage: .staging)
        try f.push("m")
        try f.registry.promote(try f.ref("m@1"), to: .production, actor: "alice")
        #expect(try f.version("m@production").version == 1)
        #expect(try f.version("m@staging").version == 2)
        #expect(try f.version("m@experimental").version == 3)
        #expect(try f.version("m").version == 3)
        #expect(try f.version("m@latest").version == 3)
        try f.expectRefusal(.notFound, "model m has no version in stage archived") { _ = try f.version("m@archived") }
    }

    @Test func tagsAreSetChangedAndRemoved() throws {
        let f = try Fixture()
        try f.push("m", tags: ["dataset": "tickets-v6"])
        let set = try f.registry.tag(try f.ref("m@1"), ["dataset": "tickets-v7", "owner": "search"], actor: "bob")
        #expect(try f.version("m@1").tags == ["dataset": "tickets-v7", "owner": "search"])
        #expect(set.audit.map(\.action) == [.tag, .tag])
        #expect(set.audit.map(\.before) == ["dataset=tickets-v6", nil])
        #expect(set.audit.map(\.after) == ["dataset=tickets-v7", "owner=search"])
        let same = try f.registry.tag(try f.ref("m@1"), ["owner": "search"], actor: "bob")
        #expect(!same.changed)
        let removed = try f.registry.untag(try f.ref("m@1"), ["owner"], actor: "bob")
        #expect(removed.audit.map(\.before) == ["owner=search"] && removed.audit[0].after == nil)
        #expect(try f.version("m@1").tags == ["dataset": "tickets-v7"])
    }

    @Test func tagRefusals() throws {
        let f = try Fixture()
        try f.push("m", tags: ["dataset": "x"])
        try f.expectRefusal(.notFound, "m@1 has no tag owner") {
            try f.registry.untag(try f.ref("m@1"), ["dataset", "owner"], actor: "bob")
        }
        try f.expectRefusal(.invalidArgument, "invalid tag name") {
            try f.registry.tag(try f.ref("m@1"), ["a b": "x"], actor: "bob")
        }
        try f.expectRefusal(.invalidArgument, "at least one tag") {
            try f.registry.tag(try f.ref("m@1"), [:], actor: "bob")
        }
        #expect(try f.version("m@1").tags == ["dataset": "x"])
    }
}
