import ArgumentParser
import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation

extension Cairn {
    struct Demo: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Generate a small model and variants, push them, and show what each one cost.",
            discussion: """
                Creates the store if it does not exist, generates a LLaMA-shaped bf16 model (two safetensors shards, config, tokenizer) with a fine-tune of two layers, a LoRA adapter and a re-sharded copy, pushes each one and prints the bytes each added. Then pulls one back and checks every file's SHA-256. Safe to run again: the same content adds nothing.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Option(help: "Seed of the generated model.") var seed: UInt64 = 1

        func run() throws {
            let path = global.storePath
            let store: Store
            if FileManager.default.fileExists(atPath: path + "/config.json") {
                store = try Store.open(at: path)
            } else {
                store = try Store.create(at: path)
                if !global.json { Output.line("created store \(path)") }
            }
            let registry = try Registry(store: store)
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-demo-\(getpid())")
            defer { try? FileManager.default.removeItem(at: work) }
            let shape = FixtureModels.Shape.small
            let base = work.appendingPathComponent("base")
            let finetune = work.appendingPathComponent("finetune")
            let lora = work.appendingPathComponent("lora")
            let resharded = work.appendingPathComponent("resharded")
            try FixtureModels.writeBase(to: base, shape: shape, seed: seed)
            try FixtureModels.writeVariant(
                to: finetune,
                shape: shape,
                seed: seed,
                changedLayers: [shape.layers - 2, shape.layers - 1],
                variantSeed: 7
            )
            try FixtureModels.writeLoRA(to: lora, shape: shape, seed: seed, variantSeed: 11)
            try FixtureModels.writeResharded(to: resharded, shape: shape, seed: seed)

            var steps: [DemoStep] = []
            func push(_ dir: URL, model: String, what: String, parent: String? = nil) throws -> PushResult {
                var request = PushRequest(model: model, actor: global.actor)
                request.message = what
                if let parent { request.parents = [parent] }
                let started = Date()
                let result = try registry.push(directory: dir.path, request: request)
                steps.append(DemoStep(what: what, result: result, seconds: Date().timeIntervalSince(started)))
                return result
            }
            let v1 = try push(base, model: "demo-llama", what: "base model")
            _ = try push(
                finetune,
                model: "demo-llama",
                what: "fine-tune of the last 2 layers",
                parent: "demo-llama@\(v1.version)"
            )
            _ = try push(lora, model: "demo-llama-lora", what: "LoRA adapter", parent: "demo-llama@\(v1.version)")
            _ = try push(resharded, model: "demo-llama", what: "same weights, re-sharded")
            _ = try push(base, model: "demo-llama", what: "base model again")

            // Pull one version back and check every file against the original.
            let pulled = work.appendingPathComponent("pulled")
            let version = try registry.resolve(try Reference(parsing: "demo-llama@\(v1.version)"))
            let files = try registry.pull(version, to: pulled.path)
            var allMatch = true
            for file in files {
                let original = try Data(contentsOf: base.appendingPathComponent(file.path))
                let copy = try Data(contentsOf: pulled.appendingPathComponent(file.path))
                if original != copy { allMatch = false }
            }
            let stats = try registry.statistics()
            if global.json {
                return try Output.json(DemoOutput(store: path, steps: steps, roundTrip: allMatch, stats: stats))
            }
            Output.table(
                ["PUSHED", "VERSION", "SIZE", "NEW", "STORED", "COST", "TIME"],
                steps.map { s in
                    [
                        s.what, "\(s.result.model)@\(s.result.version)", Output.bytes(s.result.logicalBytes),
                        Output.bytes(s.result.newBytes), Output.bytes(s.result.storedBytes),
                        String(
                            format: "%.1f%%",
                            100 * Double(s.result.storedBytes) / Double(max(s.result.logicalBytes, 1))
                        ),
                        String(format: "%.2fs", s.seconds),
                    ]
                }
            )
            Output.line("")
            Output.line(
                "pull of demo-llama@\(v1.version): \(files.count) files, "
                    + (allMatch ? "byte-identical to the original" : "MISMATCH")
            )
            Output.line(
                "store \(path): \(Output.bytes(stats.logicalBytes)) logical in \(stats.versions) versions, "
                    + "\(Output.bytes(stats.storedBytes)) on disk"
                    + String(format: " (%.2fx)", Double(stats.logicalBytes) / Double(max(stats.storedBytes, 1)))
            )
            Output.line("next: cairn ls demo-llama · cairn show demo-llama · cairn verify --deep")
            if !allMatch { throw ExitCode(4) }
        }
    }
}

struct DemoStep: Encodable {
    var what: String
    var result: PushResult
    var seconds: Double
}

struct DemoOutput: Encodable {
    var store: String
    var steps: [DemoStep]
    var roundTrip: Bool
    var stats: RegistryStatistics

    enum CodingKeys: String, CodingKey {
        case store, steps, stats
        case roundTrip = "round_trip"
    }
}
