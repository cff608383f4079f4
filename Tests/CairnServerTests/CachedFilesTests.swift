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

    static func inode(_ path: String) -> (inode: UInt, links: UInt)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt(info.st_ino), UInt(info.st_nlink))
    }

    static func cachedPath(_ cache: String, _ bytes: [UInt8]) -> String {
        cache + "/files/" + SHA256Digest.hash(bytes).hex
    }

    @Test func aPullKeepsItsFilesInTheCacheAsLinks() async throws {
        let f = try ServerFixture()
        let tree = try f.writeTree("model", Self.tree)
        try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            let cache = f.dir.sub("cache")
            let (first, second, ranged, part) = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: cache)
                _ = try remote.pushReport(directory: tree, request: PushRequest(model: "m", actor: "x"), progress: nil)
                let version = try remote.resolve(try Reference(parsing: "m@1"))
                var before = f.server.metrics.chunkFetchBytes
                _ = try remote.pull(version, to: f.dir.sub("out"), paths: nil, selection: nil, progress: nil)
                let first = f.server.metrics.chunkFetchBytes - before
                // Each pulled file and its cache entry are one inode: no second copy of its bytes.
                for (path, bytes) in Self.tree where !bytes.isEmpty {
                    let pulled = Self.inode(f.dir.sub("out/" + path))
                    #expect(pulled?.links == 2)
                    #expect(pulled?.inode == Self.inode(Self.cachedPath(cache, bytes))?.inode)
                }
                #expect(try remote.cacheStore().statistics().uniqueBytes == 0)

                // The pulled directory deleted, the cache still has every chunk.
                try FileManager.default.removeItem(atPath: f.dir.sub("out"))
                before = f.server.metrics.chunkFetchBytes
                _ = try remote.pull(version, to: f.dir.sub("out2"), paths: nil, selection: nil, progress: nil)
                let second = f.server.metrics.chunkFetchBytes - before
                // And so has a byte range read through the cache (what tensor pulls use).
                before = f.server.metrics.chunkFetchBytes
                var part: [UInt8] = []
                let file = try #require(try remote.manifest(of: version).file("big.bin"))
                try remote.readRange(version, file: file, range: 4_000_000..<5_000_000) { bytes, _ in part += bytes }
                return (first, second, f.server.metrics.chunkFetchBytes - before, part)
            }
            #expect(first >= Self.big.count)
            #expect(second == 0)
            #expect(ranged == 0)
            #expect(part == Array(Self.big[4_000_000...4_999_999]))
            #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
        }
    }

    @Test func aPulledFileEditedInPlaceIsFetchedAgain() async throws {
        let f = try ServerFixture()
        let tree = try f.writeTree("model", Self.tree)
        try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            let cache = f.dir.sub("cache")
            let (ranged, refetched, part) = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: cache)
                _ = try remote.pushReport(directory: tree, request: PushRequest(model: "m", actor: "x"), progress: nil)
                let version = try remote.resolve(try Reference(parsing: "m@1"))
                _ = try remote.pull(version, to: f.dir.sub("out"), paths: nil, selection: nil, progress: nil)
                // Edited in place, the pulled file changes the cache's copy too.
                let handle = try #require(FileHandle(forWritingAtPath: f.dir.sub("out/big.bin")))
                try handle.seek(toOffset: 4_500_000)
                try handle.write(contentsOf: [Self.big[4_500_000] ^ 0xFF])
                try handle.close()

                // A range read through the cache over the edited byte verifies the cached file's chunks, drops the
                // file from the cache and fetches the chunks from the server.
                var before = f.server.metrics.chunkFetchBytes
                var part: [UInt8] = []
                let file = try #require(try remote.manifest(of: version).file("big.bin"))
                try remote.readRange(version, file: file, range: 4_400_000..<4_600_000) { bytes, _ in part += bytes }
                let ranged = f.server.metrics.chunkFetchBytes - before
                #expect(!FileManager.default.fileExists(atPath: Self.cachedPath(cache, Self.big)))
                // A pull into another directory gets the original bytes; only big.bin's chunks come again.
                before = f.server.metrics.chunkFetchBytes
                _ = try remote.pull(version, to: f.dir.sub("out2"), paths: nil, selection: nil, progress: nil)
                return (ranged, f.server.metrics.chunkFetchBytes - before, part)
            }
            #expect(part == Array(Self.big[4_400_000...4_599_999]))
            #expect(ranged > 0)
            #expect(refetched > 0 && refetched <= Self.big.count + (64 << 10))
            #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
            // The edited file is the user's; the cache now holds the one just pulled.
            #expect(try Data(contentsOf: URL(fileURLWithPath: f.dir.sub("out/big.bin"))) != Data(Self.big))
            #expect(Self.inode(Self.cachedPath(cache, Self.big))?.inode == Self.inode(f.dir.sub("out2/big.bin"))?.inode)
        }
    }

    @Test func aPullMeetingAnEditedCachedFileFetchesItAgain() async throws {
        // The pull (not a range read) meets the edited chunk: it drops the cached file and starts again.
        let f = try ServerFixture()
        let tree = try f.writeTree("model", Self.tree)
        try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            let cache = f.dir.sub("cache")
            let refetched = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: cache)
                _ = try remote.pushReport(directory: tree, request: PushRequest(model: "m", actor: "x"), progress: nil)
                let version = try remote.resolve(try Reference(parsing: "m@1"))
                _ = try remote.pull(version, to: f.dir.sub("out"), paths: nil, selection: nil, progress: nil)
                let handle = try #require(FileHandle(forWritingAtPath: f.dir.sub("out/other.bin")))
                try handle.seek(toOffset: 100)
                try handle.write(contentsOf: Array("edited".utf8))
                try handle.close()
                let before = f.server.metrics.chunkFetchBytes
                _ = try remote.pull(version, to: f.dir.sub("out2"), paths: nil, selection: nil, progress: nil)
                return f.server.metrics.chunkFetchBytes - before
            }
            #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
            let other = Self.tree["other.bin"]!.count
            #expect(refetched > 0 && refetched <= other + (64 << 10), "fetched \(refetched) bytes")
        }
    }

    @Test func manyEditedShortenedOrMissingCachedFilesAreFetchedAgain() async throws {
        // Six files, all changed behind the cache's back after the first pull: four edited in
        // place, one shortened, one deleted from the cache. The next pull drops each (no limit on
        // how many) and gets every byte right from the server.
        let f = try ServerFixture()
        let files = Dictionary(uniqueKeysWithValues: (0..<6).map { ("f\($0).bin", FixtureData.bytes(count: 300_000, seed: UInt64(40 + $0))) })
        let tree = try f.writeTree("model", files)
        try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            let cache = f.dir.sub("cache")
            let refetched = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: cache)
                _ = try remote.pushReport(directory: tree, request: PushRequest(model: "m", actor: "x"), progress: nil)
                let version = try remote.resolve(try Reference(parsing: "m@1"))
                _ = try remote.pull(version, to: f.dir.sub("out"), paths: nil, selection: nil, progress: nil)
                for i in 0..<4 {
                    let handle = try #require(FileHandle(forWritingAtPath: f.dir.sub("out/f\(i).bin")))
                    try handle.seek(toOffset: UInt64(1000 * i + 7))
                    try handle.write(contentsOf: Array("edited".utf8))
                    try handle.close()
                }
                #expect(truncate(f.dir.sub("out/f4.bin"), 1000) == 0)
                #expect(unlink(Self.cachedPath(cache, files["f5.bin"]!)) == 0)
                let before = f.server.metrics.chunkFetchBytes
                _ = try remote.pull(version, to: f.dir.sub("out2"), paths: nil, selection: nil, progress: nil)
                return f.server.metrics.chunkFetchBytes - before
            }
            #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
            #expect(refetched >= 6 * 300_000, "fetched \(refetched) bytes")
            // The cache now holds the files just pulled.
            for (path, bytes) in files {
                #expect(Self.inode(Self.cachedPath(cache, bytes))?.inode == Self.inode(f.dir.sub("out2/" + path))?.inode)
            }
        }
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
        let f = try ServerFixture()
        let tree = try f.writeTree("model", Self.tree)
        let cache = TemporaryDirectory("cairn-cache-test", under: Self.otherFileSystem!)
        try await f.application.test(.live) { client in
            let url = "http://localhost:\(client.port!)"
            let (stored, second) = try await onThread {
                let remote = try RemoteRegistry(url: url, token: f.writer, cacheDirectory: cache.sub("cache"))
                _ = try remote.pushReport(directory: tree, request: PushRequest(model: "m", actor: "x"), progress: nil)
                let version = try remote.resolve(try Reference(parsing: "m@1"))
                _ = try remote.pull(version, to: f.dir.sub("out"), paths: nil, selection: nil, progress: nil)
                let stored = try remote.cacheStore().statistics().uniqueBytes
                let before = f.server.metrics.chunkFetchBytes
                _ = try remote.pull(version, to: f.dir.sub("out2"), paths: nil, selection: nil, progress: nil)
                return (stored, f.server.metrics.chunkFetchBytes - before)
            }
            #expect(stored == Int64(Self.tree.values.reduce(0) { $0 + $1.count }))
            #expect(second == 0)
            #expect(!FileManager.default.fileExists(atPath: cache.sub("cache/files")))
            #expect(try readTree(f.dir.sub("out2")) == readTree(tree))
        }
    }
}
