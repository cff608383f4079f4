import ArgumentParser
import CairnFixtures
import Foundation
import Testing

@testable import cairn

@Suite struct TensorCommandTests {
    @Test func tensorOptionsAndDiffParse() throws {
        let pull = try #require(
            try Cairn.parseAsRoot([
                "pull", "m@2", "--out", "o", "--tensor", "model.layers.0.*", "--tensor", "lm_head.weight", "--include",
                "*.safetensors",
            ])
                as? Cairn.Pull
        )
        #expect(pull.tensor == ["model.layers.0.*", "lm_head.weight"] && pull.include == ["*.safetensors"])
        let show = try #require(try Cairn.parseAsRoot(["show", "m", "--tensors", "--json"]) as? Cairn.Show)
        #expect(show.tensors && show.global.json)
        let diff = try #require(try Cairn.parseAsRoot(["diff", "m@4", "m@5", "--json"]) as? Cairn.Diff)
        #expect(diff.from == "m@4" && diff.to == "m@5")
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["diff", "m@4"]) }
    }

    @Test func tensorCommandsRunAndMalformedFilesExitTwo() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "cairn-cli-tensors-\(UUID().uuidString)"
        ).path
        defer { try? FileManager.default.removeItem(atPath: root) }
        let store = root + "/store"
        func run(_ args: [String]) -> Int32 {
            Cairn.executeBlocking(args + ["--store", store, "--user", "alice"])
        }
        try FixtureModels.writeBase(to: URL(fileURLWithPath: root + "/base"), shape: .tiny, seed: 1)
        try FixtureModels.writeVariant(
            to: URL(fileURLWithPath: root + "/ft"),
            shape: .tiny,
            seed: 1,
            changedLayers: [4],
            variantSeed: 2
        )
        try FileManager.default.createDirectory(atPath: root + "/bad", withIntermediateDirectories: true)
        try Data([200, 0, 0, 0, 0, 0, 0, 0, 0x7B]).write(to: URL(fileURLWithPath: root + "/bad/model.safetensors"))

        #expect(run(["init"]) == 0)
        #expect(run(["push", root + "/base", "--model", "m", "--metric", "eval_loss=2"]) == 0)
        #expect(run(["push", root + "/ft", "--model", "m", "--metric", "eval_loss=1.9", "--parent", "m@1"]) == 0)
        #expect(run(["push", root + "/bad", "--model", "bad"]) == 0, "a malformed file is stored as a plain file")

        #expect(run(["pull", "m@2", "--out", root + "/out", "--tensor", "model.layers.4.*", "--json"]) == 0)
        #expect(FileManager.default.fileExists(atPath: root + "/out/" + FixtureModels.baseShardFiles[1]))
        #expect(!FileManager.default.fileExists(atPath: root + "/out/" + FixtureModels.baseShardFiles[0]))
        #expect(run(["pull", "m@2", "--out", root + "/none", "--tensor", "nope"]) == 3)
        #expect(run(["show", "m@1", "--tensors"]) == 0)
        #expect(run(["show", "m@1", "--tensors", "--json"]) == 0)
        #expect(run(["diff", "m@1", "m@2"]) == 0)
        #expect(run(["diff", "m@1", "m@2", "--json"]) == 0)

        #expect(run(["pull", "bad", "--out", root + "/plain"]) == 0)
        #expect(run(["pull", "bad", "--out", root + "/t", "--tensor", "*"]) == 2)
        #expect(run(["show", "bad", "--tensors"]) == 2)
        #expect(run(["diff", "m@1", "bad@1"]) == 2)
    }
}
