import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation
import Testing

/// A registry on a fresh store in a temporary directory (removed on release).
final class RegistryFixture {
    let root: String
    let registry: Registry

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-reg-\(UUID().uuidString)").path
        let store = try Store.create(
            at: root + "/store",
            config: StoreConfig(chunker: ChunkerParameters(min: 2 << 10, avg: 8 << 10, max: 32 << 10))
        )
        registry = try Registry(store: store)
    }

    deinit { try? FileManager.default.removeItem(atPath: root) }

    func dir(_ name: String) -> URL { URL(fileURLWithPath: root + "/" + name) }
}

@Suite struct PushTests {
    @Test func versionsAreNumberedPerModelAndSameContentSharesTheManifest() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeBase(to: f.dir("base"), shape: .tiny, seed: 1)
        let first = try f.registry.push(
            directory: f.dir("base").path,
            request: PushRequest(model: "llama", actor: "alice")
        )
        let second = try f.registry.push(
            directory: f.dir("base").path,
            request: PushRequest(model: "llama", actor: "bob")
        )
        let other = try f.registry.push(
            directory: f.dir("base").path,
            request: PushRequest(model: "org/other", actor: "bob")
        )
        #expect(first.version == 1 && second.version == 2 && other.version == 1)
        #expect(first.newBytes == first.logicalBytes && first.newBytes > 0)
        #expect(second.newBytes == 0 && second.storedBytes == 0)
        #expect(second.manifest == first.manifest)
        let latest = try f.registry.resolve(try Reference(parsing: "llama"))
        #expect(latest.version == 2 && latest.createdBy == "bob")
        #expect(try f.registry.resolve(try Reference(parsing: "llama@1")).createdBy == "alice")
    }

    @Test func pulledFilesMatchTheOriginals() throws {
        let f = try RegistryFixture()
        let written = try FixtureModels.writeBase(to: f.dir("base"), shape: .tiny, seed: 2)
        _ = try f.registry.push(directory: f.dir("base").path, request: PushRequest(model: "m", actor: "a"))
        let version = try f.registry.resolve(try Reference(parsing: "m@1"))
        try f.registry.pull(version, to: f.dir("out").path)
        for path in written {
            let a = try Data(contentsOf: f.dir("base").appendingPathComponent(path))
            let b = try Data(contentsOf: f.dir("out").appendingPathComponent(path))
            #expect(a == b, "\(path)")
        }
    }

    @Test func unknownReferencesAndBadNamesAreClearErrors() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeLoRA(to: f.dir("lora"), shape: .tiny, seed: 1, variantSeed: 1)
        _ = try f.registry.push(directory: f.dir("lora").path, request: PushRequest(model: "m", actor: "a"))
        #expect { try f.registry.resolve(try Reference(parsing: "nope")) } throws: {
            ($0 as? RegistryError)?.code == .notFound && "\($0)" == "no model named nope"
        }
        #expect { try f.registry.resolve(try Reference(parsing: "m@7")) } throws: {
            ($0 as? RegistryError)?.code == .notFound
        }
        for bad in ["Upper", "-x", "a/b/c", "", "sp ace", "a@", "m@0", "m@99999999999"] {
            #expect(throws: RegistryError.self, "\(bad)") { try Reference(parsing: bad) }
        }
        #expect {
            try f.registry.push(directory: f.dir("lora").path, request: PushRequest(model: "Bad", actor: "a"))
        } throws: {
            ($0 as? RegistryError)?.code == .invalidArgument
        }
    }

    @Test func refusedPushStoresNothing() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeBase(to: f.dir("base"), shape: .tiny, seed: 1)
        try FileManager.default.createSymbolicLink(atPath: f.dir("base").path + "/evil", withDestinationPath: "/etc")
        #expect {
            try f.registry.push(directory: f.dir("base").path, request: PushRequest(model: "m", actor: "a"))
        } throws: {
            ($0 as? RegistryError)?.code == .invalidArgument && "\($0)".contains("evil")
        }
        let stats = try f.registry.statistics()
        #expect(stats.versions == 0 && stats.models == 0 && stats.chunks == 0 && stats.storedBytes == 0)
    }

    @Test func safetensorsTensorsAreCutAtTensorBoundariesSoReshardedCopiesDedup() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeBase(to: f.dir("base"), shape: .small, seed: 1)
        try FixtureModels.writeResharded(to: f.dir("resharded"), shape: .small, seed: 1)
        let base = try f.registry.push(directory: f.dir("base").path, request: PushRequest(model: "m", actor: "a"))
        let resharded = try f.registry.push(
            directory: f.dir("resharded").path,
            request: PushRequest(model: "m", actor: "a")
        )
        // Only the new headers and index JSON are new: every tensor slice is already stored.
        #expect(resharded.newBytes < 20_000, "re-sharded copy added \(resharded.newBytes) bytes")
        #expect(base.newBytes == base.logicalBytes)
    }

    @Test func variantAddsOnlyItsChangedLayers() throws {
        let f = try RegistryFixture()
        let shape = FixtureModels.Shape.small
        try FixtureModels.writeBase(to: f.dir("base"), shape: shape, seed: 1)
        try FixtureModels.writeVariant(to: f.dir("ft"), shape: shape, seed: 1, changedLayers: [5, 6], variantSeed: 3)
        _ = try f.registry.push(directory: f.dir("base").path, request: PushRequest(model: "m", actor: "a"))
        let ft = try f.registry.push(directory: f.dir("ft").path, request: PushRequest(model: "m", actor: "a"))
        let changed = Int64(
            FixtureModels.tensorBytes(of: 5, shape: shape) + FixtureModels.tensorBytes(of: 6, shape: shape)
        )
        #expect(ft.newBytes >= changed && ft.newBytes < changed + 20_000, "variant added \(ft.newBytes) for \(changed)")
    }
}
