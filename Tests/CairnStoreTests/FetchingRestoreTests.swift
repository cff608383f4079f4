import CairnFixtures
import CairnStore
import Digest
import Foundation
import Synchronization
import Testing

/// `Store.restore(…, fetcher:)`: a store used as a cache restores files and fetches the chunks it
/// lacks from another store through a ``ChunkFetcher``, verifying each.
@Suite struct FetchingRestoreTests {
    /// Serves bundles from a source store, optionally altered.
    final class SourceFetcher: ChunkFetcher {
        let source: Store
        let alter: @Sendable ([UInt8]) -> [UInt8]
        let requests = Mutex(0)
        /// Every chunk id asked for, in order.
        let asked = Mutex<[SHA256Digest]>([])

        init(_ source: Store, alter: @escaping @Sendable ([UInt8]) -> [UInt8] = { $0 }) {
            self.source = source
            self.alter = alter
        }

        func startFetch(_ chunks: [ChunkRef]) throws -> [any PendingBundle] {
            requests.withLock { $0 += 1 }
            asked.withLock { $0 += chunks.map(\.id) }
            return [Bundle(alter(try source.exportChunks(chunks.map(\.id), maxBytes: 64 << 20)))]
        }
    }

    final class Bundle: PendingBundle {
        let bytes: [UInt8]
        init(_ bytes: [UInt8]) { self.bytes = bytes }
        func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T { try bytes.withUnsafeBytes(body) }
    }

    /// A source store holding `files`, and an empty cache with the same chunker.
    func setUp(
        _ files: [String: [UInt8]]
    ) throws -> (dir: TemporaryDirectory, source: Store, cache: Store, manifest: Manifest) {
        let dir = TemporaryDirectory()
        let source = try makeStore(dir)
        for (path, bytes) in files { try writeFile(dir.sub("in/" + path), bytes) }
        let (manifest, _) = try push(source, dir.sub("in"))
        let cache = try Store.create(at: dir.sub("cache"), config: source.config)
        return (dir, source, cache, manifest)
    }

    @Test func fetchesWhatTheCacheLacksAndKeepsIt() throws {
        let files = [
            "a.bin": FixtureData.bytes(count: 3 << 20, seed: 31), "b.txt": FixtureData.text(count: 5000, seed: 32),
        ]
        let (dir, source, cache, manifest) = try setUp(files)
        let fetcher = SourceFetcher(source)
        try cache.restore(manifest.files, to: dir.sub("out"), fetcher: fetcher)
        for (path, bytes) in files { #expect(try readFile(dir.sub("out/" + path)) == bytes) }
        #expect(try cache.missingChunks(manifest.files.flatMap { $0.chunks.map(\.id) }).isEmpty, "all cached")
        // A second restore needs nothing from the source.
        let before = fetcher.requests.withLock { $0 }
        try cache.restore(manifest.files, to: dir.sub("again"), fetcher: fetcher)
        #expect(fetcher.requests.withLock { $0 } == before)
        for (path, bytes) in files { #expect(try readFile(dir.sub("again/" + path)) == bytes) }
    }

    @Test func manyFilesAreFetchedOnceEachAcrossFileBoundaries() throws {
        // Windows of the files that follow are fetched while a file is written; small files, an
        // empty one, a file of two windows and a copy of an earlier file (its chunks fetched once).
        let big = FixtureData.bytes(count: 20 << 20, seed: 40)
        let first = FixtureData.bytes(count: 3 << 20, seed: 41)
        let files = [
            "a.bin": first, "b.json": FixtureData.text(count: 700, seed: 42), "c.bin": big, "d.txt": [],
            "e.txt": FixtureData.text(count: 9000, seed: 43), "f.bin": first,
            "g/h.bin": FixtureData.bytes(count: 5 << 20, seed: 44),
        ]
        let (dir, source, cache, manifest) = try setUp(files)
        let fetcher = SourceFetcher(source)
        try cache.restore(manifest.files, to: dir.sub("out"), fetcher: fetcher)
        for (path, bytes) in files { #expect(try readFile(dir.sub("out/" + path)) == bytes, "\(path)") }
        let asked = fetcher.asked.withLock { $0 }
        let distinct = Set(manifest.files.flatMap { $0.chunks.map(\.id) })
        #expect(Set(asked) == distinct)
        #expect(
            asked.count == distinct.count,
            "each chunk asked for once: \(asked.count) asks, \(distinct.count) chunks"
        )
        #expect(try cache.missingChunks(Array(distinct)).isEmpty)
        #expect(try cache.verify(deep: true).isHealthy)
    }

    @Test func aDamagedCachePackIsDroppedAndFetchedAgain() throws {
        let bytes = FixtureData.bytes(count: 3 << 20, seed: 35)
        let (dir, source, cache, manifest) = try setUp(["a.bin": bytes])
        let fetcher = SourceFetcher(source)
        try cache.restore(manifest.files, to: dir.sub("out"), fetcher: fetcher)
        let askedBefore = fetcher.asked.withLock { $0.count }
        // One byte of the first record's data in the cache's pack.
        let pack = try #require(packFiles(cache.root).first)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: pack))
        try handle.seek(toOffset: 16 + 48 + 100)
        let byte = try #require(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: 16 + 48 + 100)
        try handle.write(contentsOf: [byte ^ 0x5A])
        try handle.close()
        // Without a source of chunks, that is an error naming the damaged chunk.
        #expect {
            try cache.restore(manifest.files, to: dir.sub("plain"))
        } throws: {
            ($0 as? CairnStoreError)?.code == .corruption && ($0 as? CairnStoreError)?.damagedChunk != nil
        }
        // With one, the damaged pack is dropped and its chunks fetched again.
        try cache.restore(manifest.files, to: dir.sub("again"), fetcher: fetcher)
        #expect(try readFile(dir.sub("again/a.bin")) == bytes)
        #expect(fetcher.asked.withLock { $0.count } > askedBefore)
        #expect(try cache.verify(deep: true).isHealthy)
        // And the cache serves the next restore alone.
        let askedAfter = fetcher.asked.withLock { $0.count }
        try cache.restore(manifest.files, to: dir.sub("third"), fetcher: fetcher)
        #expect(try readFile(dir.sub("third/a.bin")) == bytes)
        #expect(fetcher.asked.withLock { $0.count } == askedAfter)
    }

    @Test func aCorruptFetchedChunkFailsTheRestoreAndLeavesNothing() throws {
        let files = ["a.bin": FixtureData.bytes(count: 2 << 20, seed: 33)]
        let (dir, source, cache, manifest) = try setUp(files)
        // The last byte of a bundle belongs to its last chunk's data.
        let fetcher = SourceFetcher(source) { bundle in
            var b = bundle
            b[b.count - 1] ^= 0x40
            return b
        }
        #expect {
            try cache.restore(manifest.files, to: dir.sub("out"), fetcher: fetcher)
        } throws: { error in
            (error as? CairnStoreError)?.code == .corruption && "\(error)".contains("does not match its content")
        }
        let left = (try? FileManager.default.contentsOfDirectory(atPath: dir.sub("out"))) ?? []
        #expect(left.isEmpty, "no file, finished or partial, is left: \(left)")
        #expect(try cache.statistics().chunkCount == 0, "nothing was indexed in the cache")
    }

    @Test func aChunkTheSourceDoesNotSendIsNamed() throws {
        let files = ["a.bin": FixtureData.bytes(count: 1 << 20, seed: 34)]
        let (dir, source, cache, manifest) = try setUp(files)
        let last = manifest.files[0].chunks.last!.id
        // Serves every chunk asked for but the file's last one.
        final class Withholding: ChunkFetcher {
            let source: Store
            let withheld: SHA256Digest
            init(_ source: Store, _ withheld: SHA256Digest) {
                self.source = source
                self.withheld = withheld
            }
            func startFetch(_ chunks: [ChunkRef]) throws -> [any PendingBundle] {
                [Bundle(try source.exportChunks(chunks.map(\.id).filter { $0 != withheld }, maxBytes: 64 << 20))]
            }
        }
        #expect {
            try cache.restore(manifest.files, to: dir.sub("out"), fetcher: Withholding(source, last))
        } throws: { error in
            (error as? CairnStoreError)?.code == .notFound && "\(error)".contains(last.hex)
        }
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir.sub("out"))) ?? []).isEmpty)
        #expect(try cache.statistics().chunkCount == 0)
    }
}
