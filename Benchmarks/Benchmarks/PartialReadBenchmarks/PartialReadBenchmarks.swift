import Benchmark
import CairnFixtures
import CairnFormats
import CairnRegistry
import CairnStore
import Foundation

// Ops pull what they need: one tensor of a large checkpoint should cost about that tensor, not the
// checkpoint. A ~1.07 GB single-file bf16 safetensors model (8 layers of four 4096×4096 attention
// projections, 32 MiB each, plus norms) is pushed once into a store with the default parameters;
// then one 32 MiB tensor is pulled (`pull --tensor`) and, for comparison, the whole model.
// Each benchmark also reports the bytes it read from pack files ("pack bytes read").
//
// Measured on the 2-core dev machine (p50 over two runs of the target, packs in the page cache):
//   one tensor    75-111 ms wall,  21.4 MB read from packs (the 33.6 MB tensor zstd-compressed, + header)
//   whole model 3928-4020 ms wall, 683.5 MB read from packs
//   ratio       36-52x less wall time, 32.0x fewer bytes read (the tensor is 1/32 of the model)

/// The model: 8 layers × (q, k, v, o) [4096, 4096] BF16 + an input norm [4096].
let layers = 8
let width = 4096
let tensorName = "model.layers.3.self_attn.q_proj.weight"
let packBytesRead = BenchmarkMetric.custom("pack bytes read", polarity: .prefersSmaller, useScalingFactor: false)

/// bf16-like bytes: random mantissas, exponents in a narrow band (they compress like real weights).
func weights(count: Int, seed: UInt64) -> [UInt8] {
    var bytes = FixtureData.bytes(count: count, seed: seed)
    var i = 1
    while i < count {
        bytes[i] = 0x3C | (bytes[i] & 0x81)
        i += 2
    }
    return bytes
}

/// Writes the model under `directory` with bounded memory (one tensor at a time).
func writeModel(to directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    var entries: [SafetensorsEncoder.Entry] = []
    for layer in 0..<layers {
        entries.append(.init(name: "model.layers.\(layer).input_layernorm.weight", dtype: .bf16, shape: [width]))
        for p in ["k_proj", "o_proj", "q_proj", "v_proj"] {
            entries.append(
                .init(name: "model.layers.\(layer).self_attn.\(p).weight", dtype: .bf16, shape: [width, width])
            )
        }
    }
    let (prefix, layout) = try SafetensorsEncoder.header(for: entries, metadata: ["format": "pt"])
    let path = directory + "/model.safetensors"
    precondition(FileManager.default.createFile(atPath: path, contents: nil))
    let file = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    try file.write(contentsOf: Data(prefix))
    for (i, entry) in entries.enumerated() {
        let t = layout.tensor(named: entry.name)!
        try file.seek(toOffset: UInt64(t.fileRange.lowerBound))
        try file.write(contentsOf: Data(weights(count: Int(t.byteCount), seed: UInt64(i + 1))))
    }
    try file.close()
    try Data("{\"model_type\":\"llama\"}\n".utf8).write(to: URL(fileURLWithPath: directory + "/config.json"))
}

/// The store with the model pushed, built once per process.
final class Fixture: @unchecked Sendable {
    static let shared = Fixture()
    private let lock = NSLock()
    private var built: (registry: Registry, version: VersionRecord, root: String)?

    func get() throws -> (registry: Registry, version: VersionRecord, root: String) {
        lock.lock()
        defer { lock.unlock() }
        if let built { return built }
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-partial-\(getpid())").path
        try? FileManager.default.removeItem(atPath: root)
        let registry = try Registry(store: try Store.create(at: root + "/store"))
        try writeModel(to: root + "/model")
        let pushed = try registry.push(directory: root + "/model", request: PushRequest(model: "big", actor: "bench"))
        try? FileManager.default.removeItem(atPath: root + "/model")
        let version = try registry.resolve(try Reference(parsing: "big@\(pushed.version)"))
        print("model: \(pushed.logicalBytes) bytes in \(pushed.files) files; stored \(pushed.storedBytes) bytes")
        built = (registry, version, root)
        return built!
    }

    /// Deletes the store (at the end of the process's benchmarks).
    func remove() {
        lock.lock()
        defer { lock.unlock() }
        if let built { try? FileManager.default.removeItem(atPath: built.root) }
        built = nil
    }
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.teardown = { Fixture.shared.remove() }
    let config: Benchmark.Configuration = .init(
        metrics: [.wallClock, .cpuTotal, .peakMemoryResident, packBytesRead],
        warmupIterations: 1,
        maxDuration: .seconds(30),
        maxIterations: 10
    )

    Benchmark("Pull one 32 MiB tensor of a 1.07 GB model", configuration: config) { benchmark in
        let (registry, version, root) = try Fixture.shared.get()
        let out = root + "/out-tensor"
        let before = registry.store.bytesReadFromPacks
        benchmark.startMeasurement()
        let result = try registry.pullTensors(version, matching: [tensorName], to: out)
        benchmark.stopMeasurement()
        let read = registry.store.bytesReadFromPacks - before
        benchmark.measurement(packBytesRead, Int(read))
        precondition(result.tensors == 1 && result.tensorBytes == Int64(width * width * 2))
        try? FileManager.default.removeItem(atPath: out)
        print("one tensor: \(result.tensorBytes) tensor bytes, \(read) bytes read from packs")
    }

    Benchmark("Pull the whole 1.07 GB model", configuration: config) { benchmark in
        let (registry, version, root) = try Fixture.shared.get()
        let out = root + "/out-full"
        let before = registry.store.bytesReadFromPacks
        benchmark.startMeasurement()
        let files = try registry.pull(version, to: out)
        benchmark.stopMeasurement()
        let read = registry.store.bytesReadFromPacks - before
        benchmark.measurement(packBytesRead, Int(read))
        try? FileManager.default.removeItem(atPath: out)
        print("full pull: \(files.reduce(Int64(0)) { $0 + $1.size }) bytes, \(read) bytes read from packs")
    }
}
