import CairnFixtures
import CairnStore
import Foundation
import LMDB
import Testing

/// Index entries that no store writes — a key that is not a 32-byte id, a location with lengths
/// no chunk can have — are reported by verify and stop gc; neither traps.
@Suite struct DamagedIndexEntryTests {
    /// A store holding one directory, closed, with `edit` applied to its chunk index directly.
    static func damagedStore(
        _ dir: TemporaryDirectory,
        _ edit: (Transaction, Database, _ someKey: [UInt8], _ someValue: [UInt8]) throws -> Void
    ) throws -> String {
        let root: String
        do {
            let store = try makeStore(dir)
            try writeFile(dir.sub("tree/weights.bin"), FixtureData.bytes(count: 300_000, seed: 9))
            try push(store, dir.sub("tree"))
            root = store.root
        }
        let environment = try Environment(path: root + "/index.mdb", maxDatabases: 64)
        defer { environment.close() }
        let chunks = try environment.openDatabase("chunks")
        try environment.write { txn in
            var first: ([UInt8], [UInt8])?
            try txn.forEach(chunks) { key, value in
                first = (Array(key), Array(value))
                return false
            }
            let (key, value) = try #require(first)
            try edit(txn, chunks, key, value)
        }
        return root
    }

    static func packFiles(_ root: String) throws -> [String] {
        try FileManager.default.subpathsOfDirectory(atPath: root + "/packs").filter { $0.hasSuffix(".pack") }.sorted()
    }

    @Test func aKeyThatIsNotAnIDIsReportedAndStopsGC() throws {
        let dir = TemporaryDirectory()
        let root = try Self.damagedStore(dir) { txn, chunks, key, value in
            try txn.put(chunks, key: Array(key.prefix(31)), value: value)
        }
        let store = try Store.open(at: root)
        let report = try store.verify(deep: true)
        #expect(!report.isHealthy)
        #expect(report.problems.contains { $0.kind == .badIndexEntry && $0.message.contains("key of 31 bytes") })
        let packs = try Self.packFiles(root)
        #expect {
            try store.collectGarbage(gracePeriod: 0) { _ in [] }
        } throws: {
            ($0 as? CairnStoreError)?.code == .corruption && "\($0)".contains("nothing was removed")
        }
        #expect(try Self.packFiles(root) == packs)
    }

    @Test func aLocationLargerThanAnyChunkIsReportedNotRead() throws {
        let dir = TemporaryDirectory()
        let root = try Self.damagedStore(dir) { txn, chunks, key, value in
            var damaged = value
            // Raw length (bytes 20..<24, little-endian) far over the store's largest chunk.
            damaged.replaceSubrange(20..<24, with: [0xFF, 0xFF, 0xFF, 0x7F])
            try txn.put(chunks, key: key, value: damaged)
        }
        let store = try Store.open(at: root)
        let report = try store.verify(deep: true)
        #expect(report.problems.contains { $0.kind == .badIndexEntry && $0.message.contains("malformed") })
        #expect {
            try store.collectGarbage(gracePeriod: 0) { _ in [] }
        } throws: {
            ($0 as? CairnStoreError)?.code == .corruption
        }
    }
}
