import CairnFixtures
import CairnStore
import Foundation
import Testing

/// A store whose index is missing or cut short is damaged, never empty: opening it fails with a
/// corruption error (no crash), and nothing is created, changed or deleted.
@Suite struct DamagedIndexTests {
    /// A store with one pushed directory, closed; its root and the pack files it holds.
    static func storeWithAPack(_ dir: TemporaryDirectory) throws -> (root: String, packs: [String]) {
        let store = try makeStore(dir)
        try writeFile(dir.sub("tree/weights.bin"), FixtureData.bytes(count: 300_000, seed: 7))
        try push(store, dir.sub("tree"))
        let root = store.root
        let packs = try FileManager.default.subpathsOfDirectory(atPath: root + "/packs").filter {
            $0.hasSuffix(".pack")
        }
        #expect(!packs.isEmpty)
        return (root, packs.sorted())
    }

    static func packFiles(_ root: String) throws -> [String] {
        try FileManager.default.subpathsOfDirectory(atPath: root + "/packs").filter { $0.hasSuffix(".pack") }.sorted()
    }

    @Test func aMissingIndexWithPacksIsRefused() throws {
        let dir = TemporaryDirectory()
        let (root, packs) = try Self.storeWithAPack(dir)
        try FileManager.default.removeItem(atPath: root + "/index.mdb")
        try? FileManager.default.removeItem(atPath: root + "/index.mdb-lock")
        #expect {
            try Store.open(at: root)
        } throws: {
            let e = $0 as? CairnStoreError
            return e?.code == .corruption && e!.message.contains("index.mdb) is missing while 1 pack file remains")
        }
        #expect(!FileManager.default.fileExists(atPath: root + "/index.mdb"), "no fresh, empty index was created")
        #expect(try Self.packFiles(root) == packs)
    }

    @Test func aMissingIndexWithoutPacksIsCreatedAgain() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let root = store.root
        try FileManager.default.removeItem(atPath: root + "/index.mdb")
        let reopened = try Store.open(at: root)
        #expect(try reopened.verify(deep: true).isHealthy)
    }

    @Test(arguments: [0, 1, 4096, 20_000])
    func aTruncatedIndexIsRefused(keeping bytes: Int) throws {
        let dir = TemporaryDirectory()
        let (root, packs) = try Self.storeWithAPack(dir)
        let index = root + "/index.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: index)[.size] as? Int)
        try #require(size > bytes)
        #expect(truncate(index, off_t(bytes)) == 0)
        #expect {
            try Store.open(at: root)
        } throws: {
            ($0 as? CairnStoreError)?.code == .corruption
        }
        #expect(try FileManager.default.attributesOfItem(atPath: index)[.size] as? Int == bytes, "left as it was")
        #expect(try Self.packFiles(root) == packs)
    }
}
