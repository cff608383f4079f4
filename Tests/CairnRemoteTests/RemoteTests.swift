import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnRemote
import CairnServer
import CairnStore
import Digest
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// The remote client against a live server on 127.0.0.1 (ephemeral port): pushes, pulls, reads.
@Suite struct RemoteTests {
    static func url(_ client: some TestClientProtocol) -> String { "http://localhost:\(client.port!)" }

    @Test func pushAndPullRoundTripByteExact() async throws {
        let f = try ServerFixture()
        let base = URL(fileURLWithPath: f.dir.sub("base"))
        try FixtureModels.writeBase(to: base, shape: .small, seed: 1)
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            let cache = f.dir.sub("cache")
            let out = f.dir.sub("out")
            let (report, pulled, again) = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: cache)
                var request = PushRequest(model: "llama", actor: "someone-else")
                request.metrics = ["eval_loss": 1.9]
                let report = try remote.pushReport(directory: base.path, request: request, progress: nil)
                let version = try remote.resolve(try Reference(parsing: "llama@\(report.result.version)"))
                let files = try remote.pull(version, to: out, paths: nil, selection: nil, progress: nil)
                // A second pull finds every chunk in the cache: nothing is fetched.
                let again = try remote.fetchIntoCache(files)
                return (report, files.count, again)
            }
            #expect(report.result.version == 1 && report.result.files == pulled)
            #expect(report.transferredBytes! > 0)
            #expect(again == 0)
            #expect(try readTree(out) == readTree(base.path))
            // The server recorded the token's user, not what the client claimed.
            #expect(try f.registry.resolve(try Reference(parsing: "llama@1")).createdBy == "will")
            #expect(try f.registry.resolve(try Reference(parsing: "llama@1")).metrics == ["eval_loss": 1.9])

            // Byte ranges and whole files through `read` (what `cat` uses).
            let shard = FixtureModels.baseShardFiles[0]
            let original = try Data(contentsOf: base.appendingPathComponent(shard))
            let (whole, part) = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: cache)
                let version = try remote.resolve(try Reference(parsing: "llama"))
                var whole = Data()
                try remote.read(version, path: shard, range: nil) { whole.append(contentsOf: $0) }
                var part = Data()
                try remote.read(version, path: shard, range: 1_000_000...1_000_099) { part.append(contentsOf: $0) }
                return (whole, part)
            }
            #expect(whole == original)
            #expect(part == original[1_000_000...1_000_099])

            // A partial pull fetches only the chunks of the selected files.
            let out2 = f.dir.sub("out2")
            let fetched = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: f.dir.sub("cache2"))
                let version = try remote.resolve(try Reference(parsing: "llama@1"))
                let before = f.server.metrics.requestCount(route: "/v1/chunks/fetch", status: 200)
                let files = try remote.pull(
                    version,
                    to: out2,
                    paths: nil,
                    selection: try FileSelection(include: ["*.json"]),
                    progress: nil
                )
                return (
                    files.map(\.path), f.server.metrics.requestCount(route: "/v1/chunks/fetch", status: 200) - before
                )
            }
            #expect(fetched.0 == ["config.json", "model.safetensors.index.json", "tokenizer.json"])
            // At most one fetch per file (each fits in one read window); the cache check below
            // shows that only their chunks came.
            #expect((1...fetched.0.count).contains(fetched.1))
            #expect(try readTree(out2).keys.sorted() == fetched.0)
            // The cache keeps exactly those files, as links to the pulled ones.
            let cached = try FileManager.default.contentsOfDirectory(atPath: f.dir.sub("cache2/files")).sorted()
            let pulledHashes = try fetched.0.map {
                SHA256Digest.hash(Array(try Data(contentsOf: base.appendingPathComponent($0)))).hex
            }
            #expect(cached == pulledHashes.sorted())
            #expect(try Store.open(at: f.dir.sub("cache2")).statistics().uniqueBytes == 0)
        }
    }

    @Test func pullWithRepeatedChunksAndAPartlyFilledCache() async throws {
        // `big` holds the same 10 MiB twice, so its second half repeats chunks of its first read
        // window in the next; `copy` is those 10 MiB once more. A pull fetches each chunk once
        // (later uses come from memory), and a pull into a cache that has `copy` fetches almost
        // nothing; both are byte-exact.
        let f = try ServerFixture()
        let once = FixtureData.bytes(count: 10 << 20, seed: 21)
        let tree = try f.writeTree(
            "repeats",
            ["big.bin": once + once, "copy.bin": once, "small.txt": Array("hi\n".utf8)]
        )
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            let out = f.dir.sub("out")
            let out2 = f.dir.sub("out2")
            let (first, second, partial) = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: f.dir.sub("cache"))
                _ = try remote.pushReport(
                    directory: tree,
                    request: PushRequest(model: "rep", actor: "x"),
                    progress: nil
                )
                let version = try remote.resolve(try Reference(parsing: "rep@1"))
                var before = f.server.metrics.chunkFetchBytes
                _ = try remote.pull(version, to: out, paths: nil, selection: nil, progress: nil)
                let first = f.server.metrics.chunkFetchBytes - before

                let other = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: f.dir.sub("cache2"))
                before = f.server.metrics.chunkFetchBytes
                _ = try other.pull(
                    version,
                    to: f.dir.sub("only-copy"),
                    paths: ["copy.bin"],
                    selection: nil,
                    progress: nil
                )
                let partial = f.server.metrics.chunkFetchBytes - before
                before = f.server.metrics.chunkFetchBytes
                _ = try other.pull(version, to: out2, paths: nil, selection: nil, progress: nil)
                return (first, f.server.metrics.chunkFetchBytes - before, partial)
            }
            #expect(try readTree(out) == readTree(tree))
            #expect(try readTree(out2) == readTree(tree))
            // Random bytes do not compress: bundles carry them raw, so each byte fetched twice would show.
            #expect(first < Int(Double(once.count) * 1.05), "first pull fetched \(first) bytes")
            #expect(partial > once.count - (1 << 20))
            #expect(second < 1 << 20, "pull into a cache holding copy.bin fetched \(second) bytes")
        }
    }

    @Test func aFirstPushLetsTheServerAssignChunkIDs() async throws {
        // Told to stop hashing after the first round the server lacks entirely, the client sends
        // the rest of the chunks without ids; the version must still name exactly the chunks a
        // local scan finds, stored with the same codecs, and pull back byte-exact.
        let f = try ServerFixture()
        let base = URL(fileURLWithPath: f.dir.sub("base"))
        try FixtureModels.writeBase(to: base, shape: .small, seed: 3)
        try Data(FixtureData.bytes(count: 3 << 20, seed: 35)).write(to: base.appendingPathComponent("extra.bin"))
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            let out = f.dir.sub("out")
            let report = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: f.dir.sub("cache"))
                remote.assignAfterBytes = 0
                let report = try remote.pushReport(
                    directory: base.path,
                    request: PushRequest(model: "m", actor: "x"),
                    progress: nil
                )
                _ = try remote.pull(
                    try remote.resolve(try Reference(parsing: "m@1")),
                    to: out,
                    paths: nil,
                    selection: nil,
                    progress: nil
                )
                return report
            }
            let store = f.registry.store
            let planner = Registry.chunkingPlanner(sliceSize: store.config.chunker.slice)
            let local = try Store.scan(directory: base.path, parameters: store.config.chunker, planner: planner)
            #expect(report.result.manifest == local.manifest.id.hex)
            #expect(try f.registry.resolve(try Reference(parsing: "m@1")).manifest == local.manifest.id.hex)
            #expect(try readTree(out) == readTree(base.path))
            #expect(try store.verify(deep: true).problems.isEmpty)
            // Every chunk was sent once: the base's unique bytes, and no more.
            let unique = Set(local.manifest.files.flatMap(\.chunks)).reduce(0) { $0 + Int($1.length) }
            #expect(report.transferredBytes! < unique + unique / 50)
        }
    }

    /// Distinct chunk bytes of `tree` that `base` does not have (chunked as the server would).
    static func changedBytes(_ tree: String, comparedTo base: String, store: Store) throws -> Int64 {
        let planner = Registry.chunkingPlanner(sliceSize: store.config.chunker.slice)
        let a = try Store.scan(directory: base, parameters: store.config.chunker, planner: planner)
        let b = try Store.scan(directory: tree, parameters: store.config.chunker, planner: planner)
        let known = Set(a.manifest.files.flatMap { $0.chunks.map(\.id) })
        var seen = Set<SHA256Digest>()
        var total: Int64 = 0
        for chunk in b.manifest.files.flatMap(\.chunks)
        where !known.contains(chunk.id) && seen.insert(chunk.id).inserted {
            total += Int64(chunk.length)
        }
        return total
    }

    @Test func variantSendsLittleMoreThanItsChangedBytes() async throws {
        let f = try ServerFixture()
        let shape = FixtureModels.Shape.small
        let base = f.dir.sub("base")
        let variant = f.dir.sub("variant")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: shape, seed: 3)
        try FixtureModels.writeVariant(
            to: URL(fileURLWithPath: variant),
            shape: shape,
            seed: 3,
            changedLayers: [shape.layers - 1],
            variantSeed: 9
        )
        let changed = try Self.changedBytes(variant, comparedTo: base, store: f.registry.store)
        #expect(changed > 0)
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            let first = try await onThread {
                try RemoteRegistry(url: url, token: f.writer).pushReport(
                    directory: base,
                    request: PushRequest(model: "m", actor: "x"),
                    progress: nil
                )
            }
            let serverBefore = f.server.metrics.chunkUploadBytes
            let second = try await onThread {
                var request = PushRequest(model: "m", actor: "x")
                request.parents = ["m@1"]
                return try RemoteRegistry(url: url, token: f.writer).pushReport(
                    directory: variant,
                    request: request,
                    progress: nil
                )
            }
            let serverCount = Int64(f.server.metrics.chunkUploadBytes - serverBefore)
            let sent = try #require(second.transferredBytes)
            #expect(first.transferredBytes! > 4 * sent)
            #expect(Double(sent) < 1.1 * Double(changed), "sent \(sent) for \(changed) changed bytes")
            #expect(
                Double(serverCount) < 1.1 * Double(changed),
                "the server received \(serverCount) for \(changed) changed bytes"
            )
            #expect(serverCount == sent)
            #expect(second.result.newBytes == changed)
            // Byte-exact on the way back.
            let out = f.dir.sub("out")
            try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: f.dir.sub("cache"))
                _ = try remote.pull(
                    try remote.resolve(try Reference(parsing: "m@2")),
                    to: out,
                    paths: nil,
                    selection: nil,
                    progress: nil
                )
            }
            #expect(try readTree(out) == readTree(variant))
        }
    }

    @Test func remotePushesStoreAsCompactlyAsLocalOnes() async throws {
        let f = try ServerFixture()
        let shape = FixtureModels.Shape.small
        let base = f.dir.sub("base")
        let variant = f.dir.sub("variant")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: shape, seed: 8)
        try FixtureModels.writeVariant(
            to: URL(fileURLWithPath: variant),
            shape: shape,
            seed: 8,
            changedLayers: [1, 2],
            variantSeed: 3
        )
        // The same two pushes into a local store.
        let local = try Registry(store: try Store.create(at: f.dir.sub("local")))
        _ = try local.push(directory: base, request: PushRequest(model: "m", actor: "x"))
        var child = PushRequest(model: "m", actor: "x")
        child.parents = ["m@1"]
        _ = try local.push(directory: variant, request: child)
        let localStats = try local.store.statistics()
        let childRequest = child
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: f.dir.sub("cache"))
                _ = try remote.pushReport(directory: base, request: PushRequest(model: "m", actor: "x"), progress: nil)
                _ = try remote.pushReport(directory: variant, request: childRequest, progress: nil)
                let v2 = try remote.resolve(try Reference(parsing: "m@2"))
                _ = try remote.pull(v2, to: f.dir.sub("out"), paths: nil, selection: nil, progress: nil)
            }
        }
        #expect(try readTree(f.dir.sub("out")) == readTree(variant))
        let remoteStats = try f.registry.store.statistics()
        // Same codecs (byte planes for the bf16 tensors, deltas against the parent's slices).
        #expect(remoteStats.uniqueBytes == localStats.uniqueBytes)
        #expect(
            Double(remoteStats.compressedBytes) <= 1.02 * Double(localStats.compressedBytes),
            "remote \(remoteStats.compressedBytes) vs local \(localStats.compressedBytes) bytes"
        )
        #expect(try f.registry.store.verify(deep: true).isHealthy)
    }

    @Test func eightConcurrentClientsPushAndPullVariantsOfOneBase() async throws {
        let f = try ServerFixture()
        let shape = FixtureModels.Shape.tiny
        let clients = 8
        var sources: [String] = []
        for i in 0..<clients {
            let dir = f.dir.sub("variant-\(i)")
            try FixtureModels.writeVariant(
                to: URL(fileURLWithPath: dir),
                shape: shape,
                seed: 5,
                changedLayers: [i % shape.layers],
                variantSeed: UInt64(100 + i)
            )
            sources.append(dir)
        }
        let frozen = sources
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            // All push at once (their base layers overlap), then each pulls its own and a neighbour's.
            let versions = try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for i in 0..<clients {
                    group.addTask {
                        try await onThread {
                            let remote = try RemoteRegistry(
                                url: url,
                                token: f.writer,
                                cacheDirectory: f.dir.sub("cache-\(i)")
                            )
                            let report = try remote.pushReport(
                                directory: frozen[i],
                                request: PushRequest(model: "base-ft", actor: "c\(i)"),
                                progress: nil
                            )
                            let version = try remote.resolve(try Reference(parsing: "base-ft@\(report.result.version)"))
                            _ = try remote.pull(
                                version,
                                to: f.dir.sub("out-\(i)"),
                                paths: nil,
                                selection: nil,
                                progress: nil
                            )
                            return (i, report.result.version)
                        }
                    }
                }
                var out: [Int: Int] = [:]
                for try await (i, v) in group { out[i] = v }
                return out
            }
            #expect(Set(versions.values) == Set(1...clients))
            for i in 0..<clients {
                #expect(try readTree(f.dir.sub("out-\(i)")) == readTree(frozen[i]), "client \(i)")
            }
            // Pull every version again from one fresh client, concurrently with each other.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<clients {
                    group.addTask {
                        try await onThread {
                            let remote = try RemoteRegistry(
                                url: url,
                                token: f.reader,
                                cacheDirectory: f.dir.sub("cache-all")
                            )
                            let version = try remote.resolve(try Reference(parsing: "base-ft@\(versions[i]!)"))
                            _ = try remote.pull(
                                version,
                                to: f.dir.sub("again-\(i)"),
                                paths: nil,
                                selection: nil,
                                progress: nil
                            )
                        }
                    }
                }
                try await group.waitForAll()
            }
            for i in 0..<clients {
                #expect(try readTree(f.dir.sub("again-\(i)")) == readTree(frozen[i]), "client \(i), second pull")
            }
        }
        // Shared chunks are stored once: the index holds exactly the distinct chunks of all versions.
        var distinct = Set<SHA256Digest>()
        var distinctBytes: Int64 = 0
        for info in try f.registry.listVersions(of: "base-ft") {
            for chunk in try f.registry.manifest(of: info).files.flatMap(\.chunks)
            where distinct.insert(chunk.id).inserted {
                distinctBytes += Int64(chunk.length)
            }
        }
        let stats = try f.registry.store.statistics()
        #expect(stats.chunkCount == distinct.count)
        #expect(stats.uniqueBytes == distinctBytes)
        #expect(try f.registry.store.verify(deep: true).isHealthy)
    }
}
