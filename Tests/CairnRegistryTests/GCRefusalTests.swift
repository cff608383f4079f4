import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation
import LMDB
import Testing

/// gc deletes what the index calls unreferenced, so it refuses to run on an index that verify
/// finds damaged: a damaged manifest would otherwise have its chunks swept for good.
@Suite struct GCRefusalTests {
    @Test func gcRefusesAStoreThatVerifyFindsDamaged() throws {
        let dir = TemporaryDirectory()
        let root = dir.sub("store")
        let chunksBefore: Int
        do {
            let registry = try Registry(store: try Store.create(at: root))
            for seed: UInt64 in [1, 2] {
                try FileManager.default.createDirectory(
                    atPath: dir.sub("tree\(seed)"),
                    withIntermediateDirectories: true
                )
                try Data(FixtureData.bytes(count: 200_000, seed: seed)).write(
                    to: URL(fileURLWithPath: dir.sub("tree\(seed)/w.bin"))
                )
                try registry.push(directory: dir.sub("tree\(seed)"), request: PushRequest(model: "m", actor: "alice"))
            }
            chunksBefore = try registry.statistics().chunks
        }
        // One byte of a stored manifest changed (in a chunk id near its end), through LMDB itself
        // as damage on disk would be, with the store closed: it no longer hashes to its id.
        do {
            let environment = try Environment(path: root + "/index.mdb", maxDatabases: 64)
            defer { environment.close() }
            let manifests = try environment.openDatabase("manifests")
            try environment.write { txn in
                var first: ([UInt8], [UInt8])?
                try txn.forEach(manifests) { key, value in
                    first = (Array(key), Array(value))
                    return false
                }
                var (key, value) = try #require(first)
                value[value.count - 5] ^= 0x40
                try txn.put(manifests, key: key, value: value)
            }
        }
        let packs = try FileManager.default.subpathsOfDirectory(atPath: root + "/packs").sorted()
        let registry = try Registry(store: try Store.open(at: root))
        #expect(try !registry.verify(deep: false).store.isHealthy)
        #expect {
            try registry.collectGarbage(gracePeriod: 0)
        } throws: {
            let e = $0 as? RegistryError
            return e?.code == .corruption && e!.message.hasPrefix("gc refused: verify finds 1 problem")
                && e!.message.hasSuffix("nothing was removed")
        }
        #expect(try registry.statistics().chunks == chunksBefore)
        #expect(try FileManager.default.subpathsOfDirectory(atPath: root + "/packs").sorted() == packs)
    }
}
