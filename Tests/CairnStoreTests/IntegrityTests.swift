import CairnFixtures
import CairnStore
import Foundation
import Glibc
import Testing

@Suite struct IntegrityTests {
    @Test func healthyStoreVerifies() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/a.bin"), FixtureData.bytes(count: 2 << 20, seed: 1))
        try writeFile(dir.sub("in/b.txt"), FixtureData.text(count: 300_000, seed: 2))
        try push(store, dir.sub("in"))
        let quick = try store.verify(deep: false)
        #expect(quick.isHealthy)
        #expect(quick.chunks > 10 && quick.packs >= 2 && quick.manifests == 1)
        let deep = try store.verify(deep: true)
        #expect(deep.isHealthy)
        #expect(deep.verifiedBytes == (try store.statistics()).uniqueBytes)
    }

    @Test func aCorruptChunkInALaterFileLeavesTheFilesBeforeItWholeAndNothingAfter() throws {
        // A restore writes each file's last window while it reads the next file: the files before
        // the damaged one are complete when the restore fails, the damaged one and those after it
        // are absent, and no temporary file is left.
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, packSize: 64 << 20)
        var originals: [String: [UInt8]] = [:]
        for i in 0..<8 {
            let name = "f\(i).bin"
            originals[name] = FixtureData.bytes(count: 300_000 + 4096 * i + i, seed: UInt64(60 + i))
            try writeFile(dir.sub("in/" + name), originals[name]!)
        }
        let (manifest, _) = try push(store, dir.sub("in"))
        let pack = try #require(packFiles(store.root).first)
        // Random bytes are stored raw: the second chunk of f5.bin is found in the pack by its content.
        let packBytes = try readFile(pack)
        let offsets = try #require(manifest.file("f5.bin")).chunkOffsets()
        let needle = Array(originals["f5.bin"]![Int(offsets[1])..<Int(offsets[1]) + 64])
        let at = try #require(
            (0..<(packBytes.count - 64)).first {
                packBytes[$0] == needle[0] && Array(packBytes[$0..<$0 + 64]) == needle
            }
        )
        try flipByte(pack, at: at + 10)

        #expect(throws: CairnStoreError.self) { try store.restore(manifest.files, to: dir.sub("out")) }
        for i in 0..<5 {
            #expect(try readFile(dir.sub("out/f\(i).bin")) == originals["f\(i).bin"]!, "f\(i).bin")
        }
        for i in 5..<8 { #expect(!FileManager.default.fileExists(atPath: dir.sub("out/f\(i).bin"))) }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.sub("out")).filter {
            $0.contains("cairn-partial")
        }
        #expect(leftovers.isEmpty)
    }

    @Test func aFileThatCannotBePutInPlaceStopsTheRestore() throws {
        // f2.bin's target is a directory, so its rename fails on the writer thread while f3.bin is
        // being read: the restore fails naming it, the files before it are whole, no file after it
        // is put in place, and no temporary file is left.
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        var originals: [String: [UInt8]] = [:]
        for i in 0..<6 {
            originals["f\(i).bin"] = FixtureData.bytes(count: 200_000 + i, seed: UInt64(80 + i))
            try writeFile(dir.sub("in/f\(i).bin"), originals["f\(i).bin"]!)
        }
        try writeFile(dir.sub("in/g-empty.bin"), [])
        let (manifest, _) = try push(store, dir.sub("in"))
        try writeFile(dir.sub("out/f2.bin/x"), [1])
        do {
            try store.restore(manifest.files, to: dir.sub("out"))
            Issue.record("a restore onto a directory succeeded")
        } catch let error as CairnStoreError {
            #expect(error.code == .io)
            #expect(error.message.contains("f2.bin"))
        }
        for i in 0..<2 { #expect(try readFile(dir.sub("out/f\(i).bin")) == originals["f\(i).bin"]!) }
        for name in ["f3.bin", "f4.bin", "f5.bin", "g-empty.bin"] {
            #expect(!FileManager.default.fileExists(atPath: dir.sub("out/" + name)), "\(name)")
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.sub("out")).filter {
            $0.contains("cairn-partial")
        }
        #expect(leftovers.isEmpty)
    }

    @Test func theSamePathAskedForTwiceComesBackWhole() throws {
        // Asked for twice, a file is written twice in turn (the second waits for the writer of the
        // first) and comes back whole.
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let bytes = FixtureData.bytes(count: 5 << 20, seed: 90)
        try writeFile(dir.sub("in/w.bin"), bytes)
        let (manifest, _) = try push(store, dir.sub("in"))
        try store.restore(manifest.files + manifest.files, to: dir.sub("out"))
        #expect(try readFile(dir.sub("out/w.bin")) == bytes)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.sub("out")) == ["w.bin"])
    }

    @Test func flippedByteIsFoundByDeepVerifyAndFailsReads() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, packSize: 64 << 20)
        let data = FixtureData.bytes(count: 600_000, seed: 3)
        try writeFile(dir.sub("in/w.bin"), data)
        let (manifest, _) = try push(store, dir.sub("in"))
        let pack = try #require(packFiles(store.root).first)
        // Flip a byte well inside the data of some record (past the 16-byte pack header and the first
        // record header).
        try flipByte(pack, at: 300_000)

        let quick = try store.verify(deep: false)
        #expect(quick.isHealthy, "a flipped data byte leaves tables of contents intact")
        let deep = try store.verify(deep: true)
        #expect(!deep.isHealthy)
        #expect(deep.problems.count == 1)
        let problem = try #require(deep.problems.first)
        #expect(problem.kind == .corruptChunk)
        let chunk = try #require(problem.chunk)
        #expect(manifest.files[0].chunks.contains { $0.id == chunk })
        #expect(problem.message.contains(chunk.hex))

        // A read of the file fails naming the chunk, and no file is left at the target.
        do {
            try store.restore(manifest.files, to: dir.sub("out"), context: "model m version 1")
            Issue.record("restore of a corrupt file succeeded")
        } catch let error as CairnStoreError {
            #expect(error.code == .corruption)
            #expect(error.message.contains("model m version 1"))
            #expect(error.message.contains("w.bin"))
            #expect(error.message.contains(chunk.hex))
        }
        #expect(!FileManager.default.fileExists(atPath: dir.sub("out/w.bin")))
        #expect(!FileManager.default.fileExists(atPath: dir.sub("out/.w.bin.cairn-partial")))
        // Ranges that avoid the damaged chunk still read.
        let offsets = manifest.files[0].chunkOffsets()
        let bad = manifest.files[0].chunks.firstIndex { $0.id == chunk }!
        if bad > 0 {
            let r = 0..<offsets[bad]
            #expect(try readBack(store, manifest.files[0], r) == Array(data[0..<Int(offsets[bad])]))
        }
    }

    @Test func truncatedPackIsReported() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/w.bin"), FixtureData.bytes(count: 200_000, seed: 4))
        try push(store, dir.sub("in"))
        let pack = try #require(packFiles(store.root).first)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: pack))
        try handle.truncate(atOffset: 100_000)
        try handle.close()
        let report = try store.verify(deep: false)
        #expect(report.problems.contains { $0.kind == .damagedPack })
    }

    @Test func exportOfATruncatedOrDamagedPackFails() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/w.bin"), FixtureData.bytes(count: 1 << 20, seed: 4))
        let (manifest, _) = try push(store, dir.sub("in"))
        let ids = manifest.files[0].chunks.map(\.id)
        // Intact, the bundle holds every chunk once, and a second store takes it whole.
        let bundle = try store.exportChunks(ids + ids, maxBytes: 8 << 20)
        let copy = try Store.create(at: dir.sub("copy"), config: store.config)
        _ = try bundle.withUnsafeBytes { try copy.storeChunks(bundle: $0) }
        #expect(try copy.missingChunks(ids).isEmpty)
        #expect(try readBack(copy, manifest.files[0]) == FixtureData.bytes(count: 1 << 20, seed: 4))

        let pack = try #require(packFiles(store.root).first)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: pack)))
        // A record header that does not match the index.
        let original = bytes
        bytes[16 + 20] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: pack))
        #expect {
            try store.exportChunks(ids, maxBytes: 8 << 20)
        } throws: {
            ($0 as? CairnStoreError)?.code == .corruption && "\($0)".contains("does not match its record")
        }
        // A pack cut short: refused whether its bytes are read or sent from the file.
        try Data(original.prefix(original.count / 2)).write(to: URL(fileURLWithPath: pack))
        #expect {
            try store.exportChunks(ids, maxBytes: 8 << 20)
        } throws: {
            ($0 as? CairnStoreError)?.code == .corruption && "\($0)".contains("cut off")
        }
        #expect {
            try store.exportPieces(try store.planExport(ids, maxBytes: 8 << 20))
        } throws: {
            ($0 as? CairnStoreError)?.code == .corruption && "\($0)".contains("truncated")
        }
    }

    @Test func missingPackIsReported() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/w.bin"), FixtureData.bytes(count: 200_000, seed: 4))
        let (manifest, _) = try push(store, dir.sub("in"))
        for pack in packFiles(store.root) { try FileManager.default.removeItem(atPath: pack) }
        let report = try store.verify(deep: true)
        #expect(!report.isHealthy)
        #expect(throws: CairnStoreError.self) { try readBack(store, manifest.files[0]) }
    }

    @Test func uncommittedStageLeavesNothingVisible() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/w.bin"), FixtureData.bytes(count: 3 << 20, seed: 5))
        let staged = try store.stage(directory: dir.sub("in"))
        // Packs were written, but the index does not know them: the store is unchanged.
        #expect(!packFiles(store.root).isEmpty)
        let stats = try store.statistics()
        #expect(stats.chunkCount == 0 && stats.manifestCount == 0 && stats.storedBytes == 0)
        let report = try store.verify(deep: true)
        #expect(report.isHealthy)
        #expect(report.unreferencedPacks == packFiles(store.root).count)
        #expect(throws: CairnStoreError.self) { try store.manifest(staged.manifestID) }
    }

    @Test func failingCommitBodyRollsEverythingBack() throws {
        struct Refused: Error {}
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/w.bin"), FixtureData.bytes(count: 300_000, seed: 6))
        let staged = try store.stage(directory: dir.sub("in"))
        #expect(throws: Refused.self) { try store.commit(staged) { _, _ in throw Refused() } }
        let stats = try store.statistics()
        #expect(stats.chunkCount == 0 && stats.manifestCount == 0)
    }

    @Test func reopenedStoreReadsWhatWasWritten() throws {
        let dir = TemporaryDirectory()
        let data = FixtureData.bytes(count: 1 << 20, seed: 8)
        try writeFile(dir.sub("in/w.bin"), data)
        var manifest: Manifest
        do {
            let store = try makeStore(dir)
            manifest = try push(store, dir.sub("in")).manifest
        }
        let reopened = try Store.open(at: dir.sub("store"))
        #expect(reopened.config.chunker == testChunker)
        #expect(try readBack(reopened, manifest.files[0]) == data)
        #expect(try reopened.manifest(manifest.id) == manifest)
    }
}

@Suite struct SafetyTests {
    @Test func symlinkIsRefusedAndNothingIsStored() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/a.bin"), [1, 2, 3])
        try FileManager.default.createSymbolicLink(atPath: dir.sub("in/link"), withDestinationPath: "/etc/passwd")
        #expect {
            try store.stage(directory: dir.sub("in"))
        } throws: { error in
            (error as? CairnStoreError)?.code == .invalidArgument && "\(error)".contains("link")
        }
        #expect(packFiles(store.root).isEmpty)
        #expect(try store.statistics().chunkCount == 0)
    }

    @Test func fifoIsRefused() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        try writeFile(dir.sub("in/a.bin"), [1, 2, 3])
        #expect(mkfifo(dir.sub("in/pipe"), 0o644) == 0)
        #expect(throws: CairnStoreError.self) { try store.stage(directory: dir.sub("in")) }
        #expect(packFiles(store.root).isEmpty)
    }

    @Test func unsafeRelativePathsAreRejected() {
        for path in ["", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "a\u{0}b"] {
            #expect(throws: CairnStoreError.self, "\(path)") { try RelativePath.validate(path) }
        }
        for path in ["a", "a/b.safetensors", "dir/.hidden", "x..y"] {
            #expect(throws: Never.self) { try RelativePath.validate(path) }
        }
    }

    @Test func openingAMissingStoreFails() {
        #expect { try Store.open(at: "/nonexistent/cairn-store") } throws: {
            ($0 as? CairnStoreError)?.code == .notFound
        }
    }

    @Test func initTwiceFails() throws {
        let dir = TemporaryDirectory()
        _ = try makeStore(dir)
        #expect { try makeStore(dir) } throws: { ($0 as? CairnStoreError)?.code == .conflict }
    }

    @Test func manifestDecodingRejectsDamage() throws {
        let m = Manifest(files: [FileEntry(path: "a", size: 3, sha256: .zero, chunks: [ChunkRef(id: .zero, length: 3)])]
        )
        var bytes = m.encoded()
        #expect(try bytes.withUnsafeBytes { try Manifest.decode($0) } == m)
        bytes.removeLast()
        #expect(throws: CairnStoreError.self) { try bytes.withUnsafeBytes { try Manifest.decode($0) } }
        let evil = Manifest(files: [FileEntry(path: "../escape", size: 0, sha256: .zero, chunks: [])]).encoded()
        #expect(throws: CairnStoreError.self) { try evil.withUnsafeBytes { try Manifest.decode($0) } }
    }
}

@Suite struct RegressionTests {
    @Test func largestChunkSizeStillMakesProgress() throws {
        // A maximum chunk larger than one ingest batch of the default size must not stall the pipeline.
        let dir = TemporaryDirectory()
        let store = try Store.create(
            at: dir.sub("store"),
            config: StoreConfig(chunker: ChunkerParameters(min: 1 << 20, avg: 4 << 20, max: 16 << 20))
        )
        let zeros = [UInt8](repeating: 0, count: 9 << 20)
        try writeFile(dir.sub("in/zeros.bin"), zeros)
        let (manifest, _) = try push(store, dir.sub("in"))
        #expect(try readBack(store, manifest.files[0]) == zeros)
    }

    @Test func configWithoutSliceSizeDecodes() throws {
        let json =
            #"{"format":"cairn-store","version":1,"chunker":{"algorithm":"fastcdc-gear64-nc2","min":16384,"avg":65536,"max":262144},"compression":{"codec":"zstd","level":3},"pack_size":67108864}"#
        let config = try JSONDecoder().decode(StoreConfig.self, from: Data(json.utf8))
        #expect(config.chunker.slice == 131_072)
        try config.validate()
    }

    @Test func nonCanonicalManifestsAreRejected() throws {
        let a = FileEntry(path: "a", size: 0, sha256: .zero, chunks: [])
        let b = FileEntry(path: "b", size: 0, sha256: .zero, chunks: [])
        var swapped = Manifest(files: [a, b])
        swapped.files = [b, a]
        #expect(throws: CairnStoreError.self) { try swapped.encoded().withUnsafeBytes { try Manifest.decode($0) } }
        var twice = Manifest(files: [a])
        twice.files = [a, a]
        #expect(throws: CairnStoreError.self) { try twice.encoded().withUnsafeBytes { try Manifest.decode($0) } }
    }

    @Test func newStoreNeedsAnEmptyDirectory() throws {
        let dir = TemporaryDirectory()
        try writeFile(dir.sub("store/something"), [1])
        #expect { try Store.create(at: dir.sub("store")) } throws: { ($0 as? CairnStoreError)?.code == .conflict }
    }
}
