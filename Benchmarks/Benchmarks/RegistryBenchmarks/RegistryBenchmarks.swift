import Benchmark
import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation

// Rollback is a pointer swap in one index transaction: its cost must not depend on the model's
// size. Two models are set up once, a 1 GB one and a 1 KB one, each with versions 1 and 2 that
// have both been in production; each iteration rolls production between them.

/// A store with one model of `bytes` bytes whose versions 1 and 2 have both been in production.
func makeRegistry(named model: String, bytes: Int) throws -> (Registry, String) {
    let root = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-rollback-\(model)-\(getpid())").path
    try? FileManager.default.removeItem(atPath: root)
    let store = try Store.create(at: root + "/store")
    let registry = try Registry(store: store)
    let source = root + "/model"
    try FileManager.default.createDirectory(atPath: source, withIntermediateDirectories: true)
    // 1 GB of pseudo-random bytes written in 64 MiB pieces (bounded memory).
    let handle = FileManager.default.createFile(atPath: source + "/weights.bin", contents: nil)
    precondition(handle)
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
        _ = try registry.push(directory: source, request: PushRequest(model: model, actor: "bench"))
    }
    try registry.promote(try Reference(parsing: "\(model)@1"), to: .production, actor: "bench")
    try registry.promote(try Reference(parsing: "\(model)@2"), to: .production, actor: "bench")
    try? FileManager.default.removeItem(atPath: source)
    return (registry, root)
}

let benchmarks: @Sendable () -> Void = {
    let config: Benchmark.Configuration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal], maxDuration: .seconds(3), maxIterations: 200)
    for (name, bytes) in [("1 KB", 1_000), ("1 GB", 1_000_000_000)] {
        Benchmark("Rollback, \(name) model", configuration: config) { benchmark in
            let model = "m\(bytes)"
            let (registry, root) = try makeRegistry(named: model, bytes: bytes)
            defer { try? FileManager.default.removeItem(atPath: root) }
            benchmark.startMeasurement()
            for i in benchmark.scaledIterations {
                blackHole(try registry.rollback(model: model, to: i % 2 == 0 ? 1 : 2, actor: "bench", reason: "benchmark"))
            }
        }
        Benchmark("Resolve MODEL@production, \(name) model", configuration: config) { benchmark in
            let model = "p\(bytes)"
            let (registry, root) = try makeRegistry(named: model, bytes: bytes)
            defer { try? FileManager.default.removeItem(atPath: root) }
            let reference = try Reference(parsing: "\(model)@production")
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                blackHole(try registry.resolve(reference).version)
            }
        }
    }
}
