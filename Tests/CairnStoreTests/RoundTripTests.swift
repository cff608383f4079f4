import CairnFixtures
import CairnStore
import Digest
import Foundation
import Testing

@Suite struct RoundTripTests {
    /// Pushes a tree, pulls it to a new directory and compares every file's SHA-256 and bytes.
    func roundTrip(
        _ files: [String: [UInt8]],
        packSize: Int = 1 << 20
    ) throws -> (store: Store, manifest: Manifest, dir: TemporaryDirectory) {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, packSize: packSize)
        for (path, bytes) in files { try writeFile(dir.sub("in/" + path), bytes) }
        let (manifest, _) = try push(store, dir.sub("in"))
        #expect(manifest.files.map(\.path) == files.keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        try store.restore(manifest.files, to: dir.sub("out"))
        for (path, bytes) in files {
            let entry = try #require(manifest.file(path))
            #expect(entry.sha256 == sha256(bytes), "manifest digest of \(path)")
            #expect(entry.size == Int64(bytes.count))
            let back = try readFile(dir.sub("out/" + path))
            #expect(sha256(back) == sha256(bytes), "pulled \(path) differs")
            #expect(back == bytes)
        }
        // No temporary files are left next to the pulled ones.
        let leftovers = FileManager.default.enumerator(atPath: dir.sub("out"))!.compactMap { $0 as? String }
            .filter { $0.contains(".cairn-partial") }
        #expect(leftovers.isEmpty)
        return (store, manifest, dir)
    }

    @Test func emptyAndOneByteFiles() throws {
        let (_, manifest, _) = try roundTrip(["empty.bin": [], "one.bin": [0x5A]])
        #expect(manifest.file("empty.bin")!.chunks.isEmpty)
        #expect(
            manifest.file("empty.bin")!.sha256.hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        )
        #expect(manifest.file("one.bin")!.chunks.count == 1)
    }

    @Test func fileBelowMinimumChunkAndExactlyMaximumChunk() throws {
        let (_, manifest, _) = try roundTrip([
            "small.bin": FixtureData.bytes(count: testChunker.min - 1, seed: 5),
            "max.bin": [UInt8](repeating: 0xAB, count: testChunker.max),
        ])
        #expect(manifest.file("small.bin")!.chunks.count == 1)
        #expect(manifest.file("max.bin")!.chunks.count == 1)
        #expect(manifest.file("max.bin")!.chunks[0].length == UInt32(testChunker.max))
    }

    @Test func multiPackFile() throws {
        // 5 MiB of incompressible bytes with 1 MiB packs: at least five packs.
        let data = FixtureData.bytes(count: 5 << 20, seed: 6)
        let (store, _, dir) = try roundTrip(["weights.bin": data])
        let stats = try store.statistics()
        #expect(stats.packCount >= 5)
        #expect(stats.uniqueBytes == Int64(data.count))
        #expect(packFiles(store.root).count == stats.packCount)
        _ = dir
    }

    @Test func fileLargerThanOneIngestBatch() throws {
        // 20 MiB crosses the pipeline's 8 MiB batches; chunk boundaries must not depend on them.
        let data = FixtureData.bytes(count: 20 << 20, seed: 7)
        let (_, manifest, _) = try roundTrip(["big.bin": data], packSize: 8 << 20)
        let expected = data.withUnsafeBytes { Chunker(testChunker).chunkLengths($0) }
        #expect(manifest.file("big.bin")!.chunks.map { Int($0.length) } == expected)
    }

    @Test func filesAroundBlockSizesAndAcrossReadWindows() throws {
        // Restores write whole 4 KiB blocks (direct I/O) and carry a window's unfinished block into
        // the next: sizes next to block multiples, and a file of three 16 MiB read windows whose
        // chunk boundaries fall anywhere, must come back exact and at their own sizes; so must an
        // empty and a small file after them (each file's last window is written while the next is read).
        _ = try roundTrip(
            [
                "a.bin": FixtureData.bytes(count: 4095, seed: 11),
                "b.bin": FixtureData.bytes(count: 4096, seed: 12),
                "c.bin": FixtureData.bytes(count: 4097, seed: 13),
                "d.bin": FixtureData.bytes(count: (16 << 20) + 1, seed: 14),
                "e.bin": FixtureData.bytes(count: (33 << 20) + 1234, seed: 15),
                "f-empty.bin": [],
                "g.bin": FixtureData.bytes(count: 100, seed: 16),
            ],
            packSize: 8 << 20
        )
    }

    @Test func manySmallFilesInNestedDirectories() throws {
        var files: [String: [UInt8]] = [:]
        for i in 0..<150 {
            files["d\(i % 5)/sub\(i % 3)/file-\(i).txt"] = FixtureData.text(count: 10 + i * 37, seed: UInt64(i))
        }
        files["top.json"] = Array("{\"a\": 1}".utf8)
        files["a/b/c/d/e/deep.bin"] = FixtureData.bytes(count: 70_000, seed: 9)
        _ = try roundTrip(files)
    }

    @Test func compressibleDataIsStoredCompressed() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/text.txt"), FixtureData.text(count: 2 << 20, seed: 1))
        try push(store, dir.sub("in"))
        let stats = try store.statistics()
        #expect(stats.compressedBytes < stats.uniqueBytes / 2)
    }

    @Test func singleFileCanBePushed() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let bytes = FixtureData.bytes(count: 100_000, seed: 3)
        try writeFile(dir.sub("model.safetensors"), bytes)
        let (manifest, _) = try push(store, dir.sub("model.safetensors"))
        #expect(manifest.files.map(\.path) == ["model.safetensors"])
        #expect(try readBack(store, manifest.files[0]) == bytes)
    }
}

@Suite struct RangeTests {
    @Test func rangesAcrossChunkAndPackBoundaries() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)  // 1 MiB packs
        let data = FixtureData.bytes(count: 3 << 20, seed: 11)
        try writeFile(dir.sub("in/w.bin"), data)
        let (manifest, _) = try push(store, dir.sub("in"))
        let file = manifest.files[0]
        let offsets = file.chunkOffsets()
        #expect(try store.statistics().packCount >= 3)
        var ranges: [Range<Int64>] = [0..<1, 0..<Int64(data.count), Int64(data.count - 1)..<Int64(data.count)]
        // Around every 7th chunk boundary: just before, across, just after.
        for b in stride(from: 1, to: offsets.count - 1, by: 7) {
            let o = offsets[b]
            ranges += [o - 1..<o, o - 1..<o + 1, o..<o + 1, o - 5000..<o + 5000]
        }
        // Across pack boundaries: find chunks whose neighbours are in another pack (ranges spanning 1.5 MiB
        // always cross one with 1 MiB packs).
        ranges += [900_000..<2_600_000, 1_048_000..<1_049_000]
        for r in ranges {
            let back = try readBack(store, file, r)
            #expect(back == Array(data[Int(r.lowerBound)..<Int(r.upperBound)]), "range \(r)")
        }
    }

    @Test func rangeOutsideTheFileIsRefused() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/w.bin"), FixtureData.bytes(count: 1000, seed: 1))
        let (manifest, _) = try push(store, dir.sub("in"))
        #expect(throws: CairnStoreError.self) { try readBack(store, manifest.files[0], 500..<1001) }
    }

    @Test func partialReadsTouchOnlyNeededChunks() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let data = FixtureData.bytes(count: 4 << 20, seed: 12)
        try writeFile(dir.sub("in/w.bin"), data)
        let (manifest, _) = try push(store, dir.sub("in"))
        let file = manifest.files[0]
        let before = store.bytesReadFromPacks
        let back = try readBack(store, file, 2_000_000..<2_000_100)
        #expect(back == Array(data[2_000_000..<2_000_100]))
        let read = store.bytesReadFromPacks - before
        // At most the chunks overlapping the range (two, at most 32 KiB each) plus record headers.
        #expect(read > 0 && read <= 2 * (32 << 10) + 4096, "read \(read) bytes from packs")
    }
}
