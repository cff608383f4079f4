import CairnFixtures
import CairnRegistry
import CairnRemote
import CairnServer
import CairnStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

/// Chunk fetches on a live server send the chunks' stored bytes from the pack files (sendfile).
@Suite struct FileBodyTests {
    static func url(_ client: some TestClientProtocol) -> String { "http://localhost:\(client.port!)" }

    /// The server's pack files, by path.
    static func packs(_ f: ServerFixture) -> [String] {
        let root = f.registry.store.root + "/packs"
        let names = (FileManager.default.enumerator(atPath: root)?.allObjects as? [String]) ?? []
        return names.filter { $0.hasSuffix(".pack") }.map { root + "/" + $0 }
    }

    /// Descriptors this process (the server runs in it) has open on pack files of the server's store.
    static func openPackDescriptors(_ f: ServerFixture) -> Int {
        let root = f.registry.store.root + "/packs/"
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) ?? "").hasPrefix(root) }.count
    }

    @Test func pullsAreByteExactAndLeaveNoDescriptorsOpen() async throws {
        let f = try ServerFixture()
        let base = f.dir.sub("base")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: .small, seed: 11)
        _ = try f.pushLocally(base, model: "m")
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            for round in 0..<2 {
                let out = f.dir.sub("out-\(round)")
                let cache = f.dir.sub("cache-\(round)")
                try await onThread {
                    let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: cache)
                    _ = try remote.pull(try remote.resolve(try Reference(parsing: "m")), to: out, paths: nil, selection: nil, progress: nil)
                }
                #expect(try readTree(out) == readTree(base))
            }
            // What stays open is the store's own handle per pack; each reply's are closed once it
            // is sent (on the connection's event loop, just after the client has the bytes).
            var open = Self.openPackDescriptors(f)
            for _ in 0..<100 where open > Self.packs(f).count {
                try await Task.sleep(for: .milliseconds(10))
                open = Self.openPackDescriptors(f)
            }
            #expect(open <= Self.packs(f).count)
        }
    }

    @Test func aTruncatedServerPackFailsThePullWithTheServersError() async throws {
        let f = try ServerFixture()
        let base = f.dir.sub("base")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: .small, seed: 12)
        _ = try f.pushLocally(base, model: "m")
        for pack in Self.packs(f) {
            let size = try FileManager.default.attributesOfItem(atPath: pack)[.size] as! Int
            #expect(truncate(pack, off_t(size / 2)) == 0)
        }
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            let out = f.dir.sub("out")
            await #expect {
                try await onThread {
                    let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: f.dir.sub("cache"))
                    _ = try remote.pull(try remote.resolve(try Reference(parsing: "m")), to: out, paths: nil, selection: nil, progress: nil)
                }
            } throws: { error in
                "\(error)".contains("truncated")
            }
            // Files whose chunks sit in the packs' lost halves were not written.
            #expect(FixtureModels.baseShardFiles.contains { !FileManager.default.fileExists(atPath: out + "/" + $0) })
        }
    }
}
