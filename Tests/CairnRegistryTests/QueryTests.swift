import CairnRegistry
import CairnStore
import Foundation
import Testing

@Suite struct QueryTests {
    @Test func whatIsInProductionAcrossModels() throws {
        let f = try Fixture()
        try f.push("a", stage: .staging)
        try f.push("a", stage: .staging)
        try f.push("b", stage: .staging)
        try f.push("org/c")
        try f.registry.promote(try f.ref("a@2"), to: .production, actor: "alice")
        try f.registry.promote(try f.ref("b@1"), to: .production, actor: "alice")
        try f.registry.setAlias(model: "a", alias: "champion", version: 2, actor: "alice")
        let production = try f.registry.findVersions(VersionQuery(stage: .production))
        #expect(production.map(\.record.reference) == ["a@2", "b@1"])
        #expect(production[0].aliases == ["champion"])
        let models = try f.registry.listModels()
        #expect(models.map(\.model) == ["a", "b", "org/c"])
        #expect(models.map(\.production) == [2, 1, nil])
        #expect(models.map(\.versions) == [2, 1, 1])
    }

    @Test func filterByTagAndMetric() throws {
        let f = try Fixture()
        try f.push("m", metrics: ["eval_loss": 2.4], tags: ["dataset": "tickets-v6"])
        try f.push("m", metrics: ["eval_loss": 1.9], tags: ["dataset": "tickets-v7"])
        try f.push("m", metrics: ["eval_loss": 1.7], tags: ["dataset": "tickets-v7", "lr": "high"])
        try f.push("m", tags: ["dataset": "tickets-v7"])
        try f.push("n", metrics: ["eval_loss": 1.0])
        func refs(_ q: VersionQuery) throws -> [String] { try f.registry.findVersions(q).map(\.record.reference) }
        #expect(try refs(VersionQuery(model: "m", tags: ["dataset": "tickets-v7"])) == ["m@2", "m@3", "m@4"])
        #expect(try refs(VersionQuery(model: "m", tags: ["dataset": "tickets-v7", "lr": "high"])) == ["m@3"])
        #expect(
            try refs(VersionQuery(metrics: [try MetricCondition(parsing: "eval_loss<2")])) == ["m@2", "m@3", "n@1"]
        )
        #expect(
            try refs(VersionQuery(metrics: [try MetricCondition(parsing: "eval_loss<=1.9")])) == ["m@2", "m@3", "n@1"]
        )
        #expect(try refs(VersionQuery(metrics: [try MetricCondition(parsing: "eval_loss>1.9")])) == ["m@1"])
        #expect(try refs(VersionQuery(metrics: [try MetricCondition(parsing: "eval_loss>=1.9")])) == ["m@1", "m@2"])
        #expect(try refs(VersionQuery(metrics: [try MetricCondition(parsing: "eval_loss=1")])) == ["n@1"])
        #expect(
            try refs(
                VersionQuery(model: "m", stage: .experimental, metrics: [try MetricCondition(parsing: "eval_loss < 2")])
            ) == ["m@2", "m@3"]
        )
        #expect(throws: RegistryError.self) { try MetricCondition(parsing: "eval_loss") }
        #expect(throws: RegistryError.self) { try MetricCondition(parsing: "<2") }
        #expect(throws: RegistryError.self) { try f.registry.findVersions(VersionQuery(model: "ghost")) }
    }

    @Test func lineageWalksAncestorsAndDescendants() throws {
        let f = try Fixture()
        try f.push("base", datasets: ["pile-v1"])
        try f.push("base", parents: ["base@1"])
        try f.push("adapter", parents: ["base@2"], datasets: ["tickets-v7"])
        try f.push("adapter", parents: ["adapter@1", "base@1"])
        try f.push("merged", parents: ["adapter@2"])
        let mid = try f.registry.lineage(try f.ref("adapter@1"))
        #expect(mid.ancestors.map(\.reference) == ["base@2", "base@1"])
        #expect(mid.ancestors.map(\.depth) == [1, 2])
        #expect(mid.ancestors[1].datasets == ["pile-v1"])
        #expect(mid.descendants.map(\.reference) == ["adapter@2", "merged@1"])
        #expect(mid.descendants.map(\.depth) == [1, 2])
        #expect(mid.datasets == ["tickets-v7"])
        let root = try f.registry.lineage(try f.ref("base@1"))
        #expect(root.ancestors.isEmpty)
        #expect(Set(root.descendants.map(\.reference)) == ["base@2", "adapter@1", "adapter@2", "merged@1"])
        #expect(root.descendants.first { $0.reference == "adapter@2" }?.depth == 1)
        // Parents are recorded as resolved references.
        try f.registry.setAlias(model: "adapter", alias: "champion", version: 2, actor: "alice")
        try f.push("merged", parents: ["adapter@champion"])
        #expect(try f.version("merged@2").parents == ["adapter@2"])
    }
}
