import Benchmark
import CairnFixtures
import CairnStore
import Digest
import Foundation
import LMDB
import Zstd

// Micro benchmarks of the engine's hot paths. Each input is 16 MiB unless named otherwise, so
// MB/s = 16.78 / (wall time in seconds). Inputs are built once, outside the measured loops.

let benchmarks: @Sendable () -> Void = {
    let size = 16 << 20
    let random = FixtureData.bytes(count: size, seed: 1)
    // bf16-like weights: what model files mostly hold.
    let weights: [UInt8] = {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-bench-\(getpid())")
        defer { try? FileManager.default.removeItem(at: dir) }
        _ = try? FixtureModels.writeBase(to: dir, shape: .small, seed: 1)
        let shard = (try? Data(contentsOf: dir.appendingPathComponent(FixtureModels.baseShardFiles[0]))) ?? Data()
        var out = [UInt8](shard)
        while out.count < size { out += out }
        return Array(out.prefix(size))
    }()
    let config: Benchmark.Configuration = .init(
        metrics: [.wallClock, .cpuTotal, .mallocCountTotal],
        maxDuration: .seconds(2),
        maxIterations: 50
    )

    Benchmark("FastCDC boundaries, 16 MiB", configuration: config) { benchmark in
        let chunker = Chunker(.default)
        for _ in benchmark.scaledIterations {
            random.withUnsafeBytes { blackHole(chunker.chunkLengths($0).count) }
        }
    }

    Benchmark("SHA-256 (EVP), 16 MiB in 128 KiB chunks", configuration: config) { benchmark in
        let hasher = SHA256Hasher()
        for _ in benchmark.scaledIterations {
            random.withUnsafeBytes { raw in
                var at = 0
                while at < raw.count {
                    hasher.update(UnsafeRawBufferPointer(rebasing: raw[at..<min(at + (128 << 10), raw.count)]))
                    blackHole(hasher.finalize())
                    at += 128 << 10
                }
            }
        }
    }

    for level in [1, 3] as [Int32] {
        Benchmark("zstd -\(level) per 128 KiB chunk, 16 MiB of bf16 weights", configuration: config) { benchmark in
            let compressor = ZstdCompressor(level: level)
            var output = [UInt8](repeating: 0, count: zstdCompressBound(128 << 10))
            var total = 0
            for _ in benchmark.scaledIterations {
                weights.withUnsafeBytes { raw in
                    output.withUnsafeMutableBytes { out in
                        var at = 0
                        while at < raw.count {
                            total +=
                                (try? compressor.compress(
                                    UnsafeRawBufferPointer(rebasing: raw[at..<at + (128 << 10)]),
                                    into: out
                                )) ?? 0
                            at += 128 << 10
                        }
                    }
                }
            }
            blackHole(total)
        }
    }

    Benchmark("zstd decompress per 128 KiB chunk, 16 MiB of bf16 weights", configuration: config) { benchmark in
        let compressor = ZstdCompressor(level: 3)
        let decompressor = ZstdDecompressor()
        var frames: [[UInt8]] = []
        weights.withUnsafeBytes { raw in
            var at = 0
            while at < raw.count {
                var out = [UInt8](repeating: 0, count: zstdCompressBound(128 << 10))
                let n = out.withUnsafeMutableBytes {
                    (try? compressor.compress(UnsafeRawBufferPointer(rebasing: raw[at..<at + (128 << 10)]), into: $0))
                        ?? 0
                }
                frames.append(Array(out.prefix(n)))
                at += 128 << 10
            }
        }
        var target = [UInt8](repeating: 0, count: 128 << 10)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            for frame in frames {
                frame.withUnsafeBytes { src in
                    target.withUnsafeMutableBytes { blackHole((try? decompressor.decompress(src, into: $0)) ?? 0) }
                }
            }
        }
    }

    // LMDB: 10,000 chunk-index entries (32-byte keys, 25-byte values) in one transaction, sorted
    // vs random order, and 10,000 lookups.
    let keys: [[UInt8]] = (0..<10_000).map { SHA256Digest.hash(withUnsafeBytes(of: $0) { Array($0) }).bytes }
    let value = [UInt8](repeating: 7, count: 25)
    for sorted in [true, false] {
        Benchmark(
            "Index insert 10k keys in one transaction, \(sorted ? "sorted" : "random order")",
            configuration: config
        ) { benchmark in
            let order = sorted ? keys.sorted { $0.lexicographicallyPrecedes($1) } : keys
            for _ in benchmark.scaledIterations {
                let path = FileManager.default.temporaryDirectory.appendingPathComponent(
                    "bench-\(UUID().uuidString).mdb"
                ).path
                let env = try Environment(path: path, maxDatabases: 2, mapSize: 1 << 30)
                let db = try env.openDatabase("chunks")
                try env.write { txn in for k in order { try txn.put(db, key: k, value: value) } }
                env.close()
                unlink(path)
                unlink(path + "-lock")
            }
        }
    }

    Benchmark("Index lookup 10k keys", configuration: config) { benchmark in
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString).mdb").path
        let env = try Environment(path: path, maxDatabases: 2, mapSize: 1 << 30)
        defer {
            env.close()
            unlink(path)
            unlink(path + "-lock")
        }
        let db = try env.openDatabase("chunks")
        try env.write { txn in
            for k in keys.sorted(by: { $0.lexicographicallyPrecedes($1) }) { try txn.put(db, key: k, value: value) }
        }
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            try env.read { txn in
                for k in keys { try k.withUnsafeBytes { blackHole(try txn.contains(db, key: $0)) } }
            }
        }
    }

    // A manifest of a 10 GB model: 80,000 chunks in 10 files.
    let manifest = Manifest(
        files: (0..<10).map { f in
            FileEntry(
                path: "model-\(f).safetensors",
                size: 8000 * 131_072,
                sha256: SHA256Digest.hash([UInt8(f)]),
                chunks: (0..<8000).map {
                    ChunkRef(id: SHA256Digest.hash(withUnsafeBytes(of: f * 8000 + $0) { Array($0) }), length: 131_072)
                }
            )
        }
    )
    let encoded = manifest.encoded()
    Benchmark("Manifest encode, 80k chunks", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(manifest.encoded().count) }
    }
    Benchmark("Manifest decode, 80k chunks", configuration: config) { benchmark in
        for _ in benchmark.scaledIterations {
            try encoded.withUnsafeBytes { blackHole(try Manifest.decode($0).files.count) }
        }
    }
}
