import CairnFixtures
import CairnStore
import Digest
import Foundation
import Testing

@Suite struct GarbageCollectionTests {
    @Test func collectsWhatNoLiveManifestUses() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let keep = FixtureData.bytes(count: 1 << 20, seed: 1)
        let drop = FixtureData.bytes(count: 3 << 20, seed: 2)
        try writeFile(dir.sub("a/keep.bin"), keep)
        try writeFile(dir.sub("b/drop.bin"), drop)
        let a = try push(store, dir.sub("a"))
        _ = try push(store, dir.sub("b"))
        let before = try store.statistics()
        let report = try store.collectGarbage(gracePeriod: 0) { _ in [a.manifest.id] }
        let after = try store.statistics()
        #expect(report.removedManifests == 1)
        #expect(report.removedChunkBytes == Int64(drop.count))
        #expect(after.uniqueBytes == Int64(keep.count))
        #expect(after.storedBytes < before.storedBytes - Int64(drop.count) * 9 / 10)
        #expect(report.storedBytesBefore == before.storedBytes && report.storedBytesAfter == after.storedBytes)
        #expect(report.deletedPackFiles >= 3)
        #expect(packFiles(store.root).count == after.packCount)
        #expect(try readBack(store, a.manifest.files[0]) == keep)
        #expect(try store.verify(deep: true).isHealthy)
        // Nothing more to collect.
        let again = try store.collectGarbage(gracePeriod: 0) { _ in [a.manifest.id] }
        #expect(again.removedChunks == 0 && again.deletedPackFiles == 0)
    }

    @Test func rewritesPacksWithLittleLiveData() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, packSize: 64 << 20)
        let small = FixtureData.bytes(count: 200_000, seed: 3)
        let large = FixtureData.bytes(count: 2 << 20, seed: 4)
        try writeFile(dir.sub("both/small.bin"), small)
        try writeFile(dir.sub("both/large.bin"), large)
        try writeFile(dir.sub("one/small.bin"), small)
        _ = try push(store, dir.sub("both"))  // one pack holding both files
        let one = try push(store, dir.sub("one"))  // adds nothing
        #expect(one.info.newBytes == 0)
        let oldPacks = packFiles(store.root)
        #expect(oldPacks.count == 1)
        let report = try store.collectGarbage(gracePeriod: 0) { _ in [one.manifest.id] }
        #expect(report.rewrittenPacks == 1)
        let newPacks = packFiles(store.root)
        #expect(newPacks.count == 1 && newPacks != oldPacks)
        #expect(try store.statistics().storedBytes < 300_000)
        #expect(try readBack(store, one.manifest.files[0]) == small)
        #expect(try store.verify(deep: true).isHealthy)
    }

    @Test func retiredPacksStayDuringTheGracePeriod() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("a/x.bin"), FixtureData.bytes(count: 500_000, seed: 5))
        let a = try push(store, dir.sub("a"))
        let files = packFiles(store.root)
        let report = try store.collectGarbage(gracePeriod: 3600) { _ in [] }
        #expect(report.retiredPacks == files.count && report.deletedPackFiles == 0)
        // A reader that looked up the chunks before the GC can still read the files...
        #expect(packFiles(store.root) == files)
        // ...and once the grace period is over they go.
        let later = try store.collectGarbage(gracePeriod: 0) { _ in [] }
        #expect(later.deletedPackFiles == files.count)
        #expect(packFiles(store.root).isEmpty)
        #expect(throws: CairnStoreError.self) { try readBack(store, a.manifest.files[0]) }
    }

    @Test func pushCommittingAfterGCRestoresDroppedChunks() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let shared = FixtureData.bytes(count: 1 << 20, seed: 6)
        try writeFile(dir.sub("old/shared.bin"), shared)
        try writeFile(dir.sub("new/shared.bin"), shared)
        try writeFile(dir.sub("new/extra.bin"), FixtureData.bytes(count: 100_000, seed: 7))
        _ = try push(store, dir.sub("old"))
        // Stage the new tree: it finds shared.bin's chunks already stored and writes only extra.bin.
        let staged = try store.stage(directory: dir.sub("new"))
        #expect(staged.writtenRawBytes == 100_000)
        // A GC in between drops the old version and its chunks.
        _ = try store.collectGarbage(gracePeriod: 0) { _ in [] }
        #expect(try store.statistics().chunkCount == 0)
        // The commit notices, re-reads those chunks from the pushed files and stores them again.
        let info = try store.commit(staged) { _, info in info }
        #expect(info.newBytes == Int64(shared.count) + 100_000)
        let manifest = try store.manifest(staged.manifestID)
        #expect(try readBack(store, manifest.file("shared.bin")!) == shared)
        #expect(try store.verify(deep: true).isHealthy)
    }
}
