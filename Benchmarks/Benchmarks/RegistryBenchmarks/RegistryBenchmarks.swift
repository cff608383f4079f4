import Benchmark
import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation
import Synchronization

// Rollback is a pointer swap in one index transaction: its cost must not depend on the model's
// size. Two stores are set up once per benchmark (in `setup`, not timed), one with a 1 GB model and
// one with a 1 KB model, each with versions 1 and 2 that have both been in production; each
// iteration rolls production between them, or resolves MODEL@production.

/// A store with one model of `bytes` bytes whose versions 1 and 2 have both been in production.
final class RollbackFixture: Sendable {
    let registry: Registry
    let root: String
    let model: String

    init(model: String, bytes: Int) throws {
        self.model = model
        root = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-rollback-\(model)-\(getpid())").path
        try? FileManager.default.removeItem(atPath: root)
        registry = try Registry(store: try Store.create(at: root + "/store"))
        let source = root + "/model"
        try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
        // Pseudo-random bytes written in 64 MiB pieces (bounded memory).
        FileManager.default.createFile(atPath: source + "/weights.bin", contents: nil)
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: source + "/weights.bin"))
        var written = 0
        var seed: UInt64 = 1
        while written < bytes {
            let n = min(64 << 20, bytes - written)
            try file.write(contentsOf: Data(FixtureData.bytes(count: n, seed: seed)))
            written += n
            seed += 1
        }
        try file.close()
        for _ in 0..<2 {
            var request = PushRequest(model: model, actor: "bench")
            request.stage = .staging
            _ = try registry.push(directory: source, request: request)
        }
        try registry.promote(try Reference(parsing: "\(model)@1"), to: .production, actor: "bench")
        try registry.promote(try Reference(parsing: "\(model)@2"), to: .production, actor: "bench")
        try? FileManager.default.removeItem(atPath: source)
    }

    func remove() { try? FileManager.default.removeItem(atPath: root) }
}

let fixtures = Mutex<[String: RollbackFixture]>([:])

let benchmarks: @Sendable () -> Void = {
    let config: Benchmark.Configuration = .init(
        metrics: [.wallClock, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(3),
        maxIterations: 50
    )
    for (name, bytes) in [("1 KB", 1_000), ("1 GB", 1_000_000_000)] {
        let model = "m\(bytes)"
        let setup: Benchmark.BenchmarkSetupHook = {
            let fixture = try RollbackFixture(model: model, bytes: bytes)
            fixtures.withLock { $0[model] = fixture }
        }
        let teardown: Benchmark.BenchmarkTeardownHook = {
            fixtures.withLock { $0.removeValue(forKey: model) }?.remove()
        }
        Benchmark(
            "Rollback (per 1000), \(name) model",
            configuration: config,
            closure: { benchmark in
                guard let f = fixtures.withLock({ $0[model] }) else { return }
                for i in benchmark.scaledIterations {
                    blackHole(
                        try? f.registry.rollback(
                            model: model,
                            to: i % 2 == 0 ? 1 : 2,
                            actor: "bench",
                            reason: "benchmark"
                        )
                    )
                }
            },
            setup: setup,
            teardown: teardown
        )
        Benchmark(
            "Resolve MODEL@production (per 1000), \(name) model",
            configuration: config,
            closure: { benchmark in
                guard let f = fixtures.withLock({ $0[model] }),
                    let reference = try? Reference(parsing: "\(model)@production")
                else { return }
                for _ in benchmark.scaledIterations {
                    blackHole(try? f.registry.resolve(reference).version)
                }
            },
            setup: setup,
            teardown: teardown
        )
    }
}
