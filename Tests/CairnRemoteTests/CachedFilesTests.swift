import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnRemote
import CairnStore
import Digest
import Foundation
import Glibc
import HummingbirdTesting
import Testing

/// A pull keeps the files it wrote as its cache's copy of their chunks: hard links in the cache
/// directory, not a second copy in the cache's packs; what a later read takes from them is verified.
@Suite struct CachedFilesTests {
    static let big = FixtureData.bytes(count: 6 << 20, seed: 31)
    static let tree: [String: [UInt8]] = [
        "big.bin": big, "other.bin": FixtureData.bytes(count: 3 << 20, seed: 32), "small.txt": Array("hello\n".utf8),
    ]

    /// A live server holding a tree as `m@1`, and a client (writer) with its cache, which has
    /// pulled it once into `out`.
    struct Pulled: Sendable {
        let f: ServerFixture
        let remote: RemoteRegistry
        let version: VersionRecord
        let cache: String
        /// Chunk bytes the server sent for the first pull.
        let firstFetch: Int

        /// The chunk bytes the server sends while `body` runs.
        func fetched(_ body: () throws -> Void) rethrows -> Int {
            let before = f.server.metrics.chunkFetchBytes
            try body()
            return f.server.metrics.chunkFetchBytes - before
        }

        /// Pulls `m@1` into `name` under the fixture's directory; returns the chunk bytes fetched.
        func pull(into name: String) throws -> Int {
            try fetched { _ = try remote.pull(version, to: f.dir.sub(name), paths: nil, selection: nil, progress: nil) }
        }

        /// Bytes `range` of `path` read through the cache (what tensor pulls use), and the chunk bytes fetched.
        func readRange(_ path: String, _ range: Range<Int64>) throws -> (bytes: [UInt8], fetched: Int) {
            var bytes: [UInt8] = []
            let file = try #require(try remote.manifest(of: version).file(path))
            let fetched = try fetched {
                try remote.readRange(version, file: file, range: range) { part, _ in bytes += part }
            }
            return (bytes, fetched)
        }

        /// Writes `bytes` at `offset` into the pulled file `out/path`, in place.
        func edit(_ path: String, at offset: UInt64, _ bytes: [UInt8]) throws {
            let handle = try #require(FileHandle(forWritingAtPath: f.dir.sub("out/" + path)))
            try handle.seek(toOffset: offset)
            try handle.write(contentsOf: bytes)
            try handle.close()
        }

        func cached(_ bytes: [UInt8]) -> String { cache + "/files/" + SHA256Digest.hash(bytes).hex }
    }

    /// Runs `body` on a thread once `files` were pushed and pulled into `out` (cache and `out` under
    /// `cacheParent` and `outParent`, by default the fixture's directory); returns what it returns
    /// and the source tree's path.
    static func afterAPull<T: Sendable>(
        _ files: [String: [UInt8]] = tree,
        cacheParent: String? = nil,
        outParent: String? = nil,
        _ body: @escaping @Sendable (Pulled) throws -> T
    ) async throws -> (result: T, tree: String, f: ServerFixture) {
        let f = try ServerFixture()
        let source = try f.writeTree("model", files)
        let cache = (cacheParent ?? f.dir.path) + "/cache"
        let out = (outParent ?? f.dir.path) + "/out"
        let result = try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            return try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: cache)
                _ = try remote.pushReport(
                    directory: source,
                    request: PushRequest(model: "m", actor: "x"),
                    progress: nil
                )
                let version = try remote.resolve(try Reference(parsing: "m@1"))
                let before = f.server.metrics.chunkFetchBytes
                _ = try remote.pull(version, to: out, paths: nil, selection: nil, progress: nil)
                return try body(
                    Pulled(
                        f: f,
                        remote: remote,
                        version: version,
                        cache: cache,
                        firstFetch: f.server.metrics.chunkFetchBytes - before
                    )
                )
            }
        }
        return (result, source, f)
    }

    static func inode(_ path: String) -> (inode: UInt, links: UInt)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt(info.st_ino), UInt(info.st_nlink))
    }

    @Test func aPullKeepsItsFilesInTheCacheAsLinks() async throws {
        let (r, tree, f) = try await Self.afterAPull { p in
            // Each pulled file and its cache entry are one inode: no second copy of its bytes.
            for (path, bytes) in Self.tree where !bytes.isEmpty {
                let pulled = Self.inode(p.f.dir.sub("out/" + path))
                #expect(pulled?.links == 2)
                #expect(pulled?.inode == Self.inode(p.cached(bytes))?.inode)
            }
            #expect(try p.remote.cacheStore().statistics().uniqueBytes == 0)
            // The pulled directory deleted, the cache still has every chunk, for a pull and a range read.
            try FileManager.default.removeItem(atPath: p.f.dir.sub("out"))
            return (
                first: p.firstFetch, second: try p.pull(into: "out2"),
                range: try p.readRange("big.bin", 4_000_000..<5_000_000)
            )
        }
        #expect(r.first >= Self.big.count)
        #expect(r.second == 0)
        #expect(r.range.fetched == 0)
        #expect(r.range.bytes == Array(Self.big[4_000_000..<5_000_000]))
        #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
    }

    @Test func aPulledFileEditedInPlaceIsFetchedAgain() async throws {
        let (r, tree, f) = try await Self.afterAPull { p in
            // Edited in place, the pulled file changes the cache's copy too.
            try p.edit("big.bin", at: 4_500_000, [Self.big[4_500_000] ^ 0xFF])
            // A range read through the cache over the edited byte verifies the cached file's
            // chunks, drops the file from the cache and fetches the chunks from the server.
            let range = try p.readRange("big.bin", 4_400_000..<4_600_000)
            #expect(!FileManager.default.fileExists(atPath: p.cached(Self.big)))
            // A pull into another directory gets the original bytes; only big.bin's chunks come again.
            let refetched = try p.pull(into: "out2")
            // The edited file is the user's; the cache now holds the one just pulled.
            #expect(Self.inode(p.cached(Self.big))?.inode == Self.inode(p.f.dir.sub("out2/big.bin"))?.inode)
            return (range: range, refetched: refetched)
        }
        #expect(r.range.bytes == Array(Self.big[4_400_000..<4_600_000]))
        #expect(r.range.fetched > 0)
        #expect(r.refetched > 0 && r.refetched <= Self.big.count + (64 << 10))
        #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
        #expect(try Data(contentsOf: URL(fileURLWithPath: f.dir.sub("out/big.bin"))) != Data(Self.big))
    }

    @Test func aPullMeetingAnEditedCachedFileFetchesItAgain() async throws {
        // The pull (not a range read) meets the edited chunk: it drops the cached file and starts again.
        let (refetched, tree, f) = try await Self.afterAPull { p in
            try p.edit("other.bin", at: 100, Array("edited".utf8))
            return try p.pull(into: "out2")
        }
        #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
        #expect(refetched > 0 && refetched <= Self.tree["other.bin"]!.count + (64 << 10), "fetched \(refetched) bytes")
    }

    @Test func manyEditedShortenedOrMissingCachedFilesAreFetchedAgain() async throws {
        // Six files, all changed behind the cache's back after the first pull: four edited in
        // place, one shortened, one deleted from the cache. The next pull drops each (no limit on
        // how many) and gets every byte right from the server.
        let files = Dictionary(
            uniqueKeysWithValues: (0..<6).map {
                ("f\($0).bin", FixtureData.bytes(count: 300_000, seed: UInt64(40 + $0)))
            }
        )
        let (refetched, tree, f) = try await Self.afterAPull(files) { p in
            for i in 0..<4 { try p.edit("f\(i).bin", at: UInt64(1000 * i + 7), Array("edited".utf8)) }
            #expect(truncate(p.f.dir.sub("out/f4.bin"), 1000) == 0)
            #expect(unlink(p.cached(files["f5.bin"]!)) == 0)
            let refetched = try p.pull(into: "out2")
            // The cache now holds the files just pulled.
            for (path, bytes) in files {
                #expect(Self.inode(p.cached(bytes))?.inode == Self.inode(p.f.dir.sub("out2/" + path))?.inode)
            }
            return refetched
        }
        #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
        #expect(refetched >= 6 * 300_000, "fetched \(refetched) bytes")
    }

    /// `/dev/shm` is another file system than the temporary directory on most machines.
    static let otherFileSystem: String? = {
        var shm = stat()
        var temp = stat()
        guard stat("/dev/shm", &shm) == 0, access("/dev/shm", W_OK) == 0,
            stat(FileManager.default.temporaryDirectory.path, &temp) == 0, shm.st_dev != temp.st_dev
        else { return nil }
        return "/dev/shm"
    }()

    @Test(.enabled(if: otherFileSystem != nil, "needs /dev/shm on another file system than the temporary directory"))
    func aCacheOnAnotherFileSystemKeepsChunksInPacks() async throws {
        let parent = TemporaryDirectory("cairn-cache-test", under: Self.otherFileSystem!)
        let (r, tree, f) = try await Self.afterAPull(cacheParent: parent.path) { p in
            (stored: try p.remote.cacheStore().statistics().uniqueBytes, second: try p.pull(into: "out2"))
        }
        #expect(r.stored == Int64(Self.tree.values.reduce(0) { $0 + $1.count }))
        #expect(r.second == 0)
        #expect(!FileManager.default.fileExists(atPath: parent.sub("cache/files")))
        #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
    }

    @Test(.enabled(if: otherFileSystem != nil, "needs /dev/shm on another file system than the temporary directory"))
    func chunksReadFromLinkedFilesAreNotCopiedIntoPacks() async throws {
        // The first pull, onto the cache's file system, links its files; a pull onto another file
        // system then reads every chunk from those links: it fetches nothing and, though it keeps
        // fetched chunks in packs, copies none of these there.
        let parent = TemporaryDirectory("cairn-cache-test", under: Self.otherFileSystem!)
        let (r, tree, f) = try await Self.afterAPull(cacheParent: parent.path, outParent: parent.path) { p in
            (elsewhere: try p.pull(into: "elsewhere"), stored: try p.remote.cacheStore().statistics().uniqueBytes)
        }
        #expect(r.elsewhere == 0)
        #expect(r.stored == 0)
        #expect(FileManager.default.fileExists(atPath: parent.sub("cache/files/" + SHA256Digest.hash(Self.big).hex)))
        #expect(try readTree(f.dir.sub("elsewhere")) == readTree(tree))
    }
}
