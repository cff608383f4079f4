import CairnFixtures
import CairnStore
import Foundation
import Testing

@Suite struct DedupTests {
    @Test func repushingTheSameTreeAddsNothing() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try FixtureModels.writeBase(to: dir.url.appendingPathComponent("base"), shape: .tiny, seed: 1)
        let first = try push(store, dir.sub("base"))
        let statsAfterFirst = try store.statistics()
        let second = try push(store, dir.sub("base"))
        #expect(first.info.newBytes > 0)
        #expect(first.info.manifestIsNew)
        #expect(second.info.newBytes == 0)
        #expect(second.info.storedBytes == 0)
        #expect(!second.info.manifestIsNew)
        #expect(second.manifest.id == first.manifest.id)
        let statsAfterSecond = try store.statistics()
        #expect(statsAfterSecond.storedBytes == statsAfterFirst.storedBytes)
        #expect(statsAfterSecond.chunkCount == statsAfterFirst.chunkCount)
        // No stray packs either: the second push wrote none.
        #expect(packFiles(store.root).count == statsAfterFirst.packCount)
    }

    @Test func variantWithTwoChangedLayersAddsAboutThoseLayers() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let shape = FixtureModels.Shape.small
        try FixtureModels.writeBase(to: dir.url.appendingPathComponent("base"), shape: shape, seed: 1)
        try FixtureModels.writeVariant(
            to: dir.url.appendingPathComponent("ft"),
            shape: shape,
            seed: 1,
            changedLayers: [1, 2],
            variantSeed: 5
        )
        let base = try push(store, dir.sub("base"))
        let variant = try push(store, dir.sub("ft"))
        let changed = Int64(
            FixtureModels.tensorBytes(of: 1, shape: shape) + FixtureModels.tensorBytes(of: 2, shape: shape)
        )
        #expect(variant.info.newBytes >= changed, "the changed layers must be stored")
        // Plus at most a few chunks at the edges of the changed region and the header chunk.
        #expect(
            variant.info.newBytes <= changed + 8 * Int64(testChunker.max),
            "variant added \(variant.info.newBytes) for \(changed) changed"
        )
        #expect(variant.info.newBytes < base.info.newBytes / 2)
    }

    @Test func reshardedCopyAddsAlmostNothing() throws {
        let dir = TemporaryDirectory()
        // Chunks in the same proportion to tensor sizes as 64 KiB chunks to a 7B model's tensors.
        let store = try makeStore(dir, chunker: ChunkerParameters(min: 1 << 10, avg: 4 << 10, max: 16 << 10))
        let shape = FixtureModels.Shape.small
        try FixtureModels.writeBase(to: dir.url.appendingPathComponent("base"), shape: shape, seed: 1)
        try FixtureModels.writeResharded(to: dir.url.appendingPathComponent("resharded"), shape: shape, seed: 1)
        let base = try push(store, dir.sub("base"))
        let resharded = try push(store, dir.sub("resharded"))
        let share = Double(resharded.info.newBytes) / Double(resharded.manifest.logicalBytes)
        // Content-defined chunks realign after each tensor boundary; only chunks spanning a boundary
        // (and the headers) are new.
        #expect(
            share < 0.08,
            "re-sharded copy added \(resharded.info.newBytes) of \(resharded.manifest.logicalBytes) bytes"
        )
        #expect(base.info.newBytes > 0)
    }

    @Test func identicalFilesInOneTreeAreStoredOnce() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let bytes = FixtureData.bytes(count: 500_000, seed: 21)
        try writeFile(dir.sub("in/a.bin"), bytes)
        try writeFile(dir.sub("in/copy/b.bin"), bytes)
        let result = try push(store, dir.sub("in"))
        #expect(result.info.newBytes == Int64(bytes.count))
        #expect(result.manifest.logicalBytes == Int64(2 * bytes.count))
    }
}
