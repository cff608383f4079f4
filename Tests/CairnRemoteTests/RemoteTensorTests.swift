import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnRemote
import CairnServer
import CairnStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// Tensor pulls, tensor listings and diffs through a server give what they give on a local store,
/// and the server reads only the chunks the requested tensors overlap.
@Suite struct RemoteTensorTests {
    @Test func tensorOperationsOverHTTPMatchLocalOnes() async throws {
        let f = try ServerFixture()
        let base = URL(fileURLWithPath: f.dir.sub("base"))
        let ft = URL(fileURLWithPath: f.dir.sub("ft"))
        try FixtureModels.writeBase(to: base, shape: .small, seed: 1)
        try FixtureModels.writeVariant(to: ft, shape: .small, seed: 1, changedLayers: [2], variantSeed: 4)
        try f.pushLocally(base.path, model: "llama")
        try f.pushLocally(ft.path, model: "llama")
        let v1 = try f.registry.resolve(try Reference(parsing: "llama@1"))
        let v2 = try f.registry.resolve(try Reference(parsing: "llama@2"))
        let localOut = f.dir.sub("local")
        try f.registry.pullTensors(v2, matching: ["model.layers.2.*"], to: localOut)
        let localDiff = try f.registry.diff(v1, v2)
        let localTensors = try f.registry.tensors(of: v1)

        try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            let out = f.dir.sub("remote")
            let before = f.registry.store.bytesReadFromPacks
            let (diff, tensors) = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: f.dir.sub("cache"))
                let a = try remote.resolve(try Reference(parsing: "llama@1"))
                let b = try remote.resolve(try Reference(parsing: "llama@2"))
                try remote.pullTensors(b, matching: ["model.layers.2.*"], to: out)
                return (try remote.diff(a, b), try remote.tensors(of: a))
            }
            #expect(try readTree(out) == readTree(localOut))
            #expect(diff == localDiff && diff.tensors.changed.count == 9)
            #expect(tensors == localTensors)
            // The server read headers and layer 2 (0.9 MB), not the 8 MB model.
            let read = f.registry.store.bytesReadFromPacks - before
            #expect(read < 2_000_000, "the server read \(read) bytes")
        }
    }

    @Test func aDamagedCachePackIsFetchedAgainForTensorPulls() async throws {
        let f = try ServerFixture()
        let base = URL(fileURLWithPath: f.dir.sub("base"))
        try FixtureModels.writeBase(to: base, shape: .small, seed: 2)
        try f.pushLocally(base.path, model: "llama")
        let v1 = try f.registry.resolve(try Reference(parsing: "llama@1"))
        let localOut = f.dir.sub("local")
        try f.registry.pullTensors(v1, matching: ["model.layers.1.*"], to: localOut)
        let cacheDir = f.dir.sub("cache")
        try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: cacheDir)
                let v = try remote.resolve(try Reference(parsing: "llama@1"))
                try remote.pullTensors(v, matching: ["model.layers.1.*"], to: f.dir.sub("first"))
            }
            // Every byte after each pack's header flipped: whatever the tensors read from it is damaged.
            let packsDir = cacheDir + "/packs"
            for case let name as String in FileManager.default.enumerator(atPath: packsDir)!
            where name.hasSuffix(".pack") {
                var bytes = try Data(contentsOf: URL(fileURLWithPath: packsDir + "/" + name))
                for i in 64..<bytes.count - 64 { bytes[i] ^= 0x20 }
                try bytes.write(to: URL(fileURLWithPath: packsDir + "/" + name))
            }
            try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: cacheDir)
                let v = try remote.resolve(try Reference(parsing: "llama@1"))
                try remote.pullTensors(v, matching: ["model.layers.1.*"], to: f.dir.sub("again"))
            }
        }
        #expect(try readTree(f.dir.sub("again")) == readTree(localOut))
    }
}
