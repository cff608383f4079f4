import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnRemote
import CairnStore
import Digest
import Foundation
import Glibc
import HummingbirdTesting
import Testing

/// A pull of a fine-tune onto a cache that holds its parent gets the chunks the server stores as
/// deltas as such (`POST /v1/chunks/fetch?deltas=1`) and rebuilds them from the parent's chunks;
/// the server sends them from its packs without decoding them.
@Suite struct DeltaFetchTests {
    /// A server holding `m@1` (a base) and `m@2` (a fine-tune of two of its layers, parent m@1).
    static func withFineTune<T: Sendable>(
        _ body: @escaping @Sendable (ServerFixture, String, String) throws -> T
    ) async throws -> (T, ServerFixture, base: String, variant: String) {
        let f = try ServerFixture()
        let shape = FixtureModels.Shape.small
        let base = f.dir.sub("base")
        let variant = f.dir.sub("variant")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: shape, seed: 9)
        try FixtureModels.writeVariant(
            to: URL(fileURLWithPath: variant),
            shape: shape,
            seed: 9,
            changedLayers: [1, 2],
            variantSeed: 5
        )
        let result = try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            return try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: f.dir.sub("push-cache"))
                _ = try remote.pushReport(directory: base, request: PushRequest(model: "m", actor: "x"), progress: nil)
                var child = PushRequest(model: "m", actor: "x")
                child.parents = ["m@1"]
                _ = try remote.pushReport(directory: variant, request: child, progress: nil)
                return try body(f, url, f.dir.sub("cache"))
            }
        }
        return (result, f, base, variant)
    }

    static func pull(_ url: String, _ f: ServerFixture, cache: String, _ ref: String, to out: String) throws -> Int {
        let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: cache)
        let version = try remote.resolve(try Reference(parsing: ref))
        let before = f.server.metrics.chunkFetchBytes
        _ = try remote.pull(version, to: f.dir.sub(out), paths: nil, selection: nil, progress: nil)
        return f.server.metrics.chunkFetchBytes - before
    }

    @Test func aFineTuneComesAsDeltasToACacheHoldingItsParent() async throws {
        let (r, f, base, variant) = try await Self.withFineTune { f, url, cache in
            _ = try Self.pull(url, f, cache: cache, "m@1", to: "base-out")
            let withParent = try Self.pull(url, f, cache: cache, "m@2", to: "variant-out")
            // The same pull into an empty cache: no parent held, the deltas come decoded.
            let alone = try Self.pull(url, f, cache: f.dir.sub("empty-cache"), "m@2", to: "alone-out")
            let again = try Self.pull(url, f, cache: f.dir.sub("empty-cache"), "m@1", to: "base-again")
            return (withParent: withParent, alone: alone, again: again)
        }
        #expect(try readTree(f.dir.sub("variant-out")) == readTree(variant))
        #expect(try readTree(f.dir.sub("alone-out")) == readTree(variant))
        #expect(try readTree(f.dir.sub("base-out")) == readTree(base))
        #expect(try readTree(f.dir.sub("base-again")) == readTree(base))
        // The changed layers' chunks came as the server stores them (deltas, plus entry headers),
        // not decoded (byte planes: 25% more for this fixture), and far less than the whole
        // fine-tune fetched into an empty cache.
        let deltas = try #require(try f.registry.store.statistics().codecs.first { $0.codec == "delta" })
        #expect(
            r.withParent >= Int(deltas.storedBytes) && r.withParent <= Int(deltas.storedBytes) + (16 << 10),
            "with the parent \(r.withParent) bytes; deltas stored \(deltas.storedBytes)"
        )
        #expect(r.withParent * 4 < r.alone, "with the parent \(r.withParent) bytes, alone \(r.alone)")
    }

    @Test func aParentFileEditedInPlaceMakesThePullFetchTheChunksWhole() async throws {
        // The parent's cached files give the unchanged chunks and the deltas' references; edited in
        // place, they give wrong ones: the files are dropped, deltas that cannot be rebuilt are
        // fetched whole, and the pull still writes the fine-tune exactly.
        let (_, f, _, variant) = try await Self.withFineTune { f, url, cache in
            _ = try Self.pull(url, f, cache: cache, "m@1", to: "base-out")
            for shard in FixtureModels.baseShardFiles {
                let path = f.dir.sub("base-out/" + shard)
                let size = (try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                let handle = try #require(FileHandle(forWritingAtPath: path))
                for offset in stride(from: 4096, to: size, by: 64 << 10) {
                    try handle.seek(toOffset: UInt64(offset))
                    try handle.write(contentsOf: [0xA5, 0x5A, 0xA5, 0x5A])
                }
                try handle.close()
            }
            return try Self.pull(url, f, cache: cache, "m@2", to: "variant-out")
        }
        #expect(try readTree(f.dir.sub("variant-out")) == readTree(variant))
    }
}
