import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnRemote
import CairnServer
import CairnStore
import Digest
import Foundation
import Glibc
import Hummingbird
import HummingbirdTesting
import Testing

/// Chunk fetches on a live server send the chunks' stored bytes from the pack files (sendfile).
@Suite struct FileBodyTests {
    static func url(_ client: some TestClientProtocol) -> String { "http://localhost:\(client.port!)" }

    /// A server whose store holds a small base model as m@1 (pushed locally); the model's
    /// directory and its chunk ids, each once.
    static func serverWithBase(seed: UInt64) throws -> (f: ServerFixture, base: String, ids: [SHA256Digest]) {
        let f = try ServerFixture()
        let base = f.dir.sub("base")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: .small, seed: seed)
        _ = try f.pushLocally(base, model: "m")
        let manifest = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "m")))
        return (f, base, Array(Set(manifest.files.flatMap { $0.chunks.map(\.id) })))
    }

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
        return fds.filter {
            ((try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) ?? "").hasPrefix(root)
        }.count
    }

    @Test func pullsAreByteExactAndLeaveNoDescriptorsOpen() async throws {
        let (f, base, _) = try Self.serverWithBase(seed: 11)
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            for round in 0..<2 {
                let out = f.dir.sub("out-\(round)")
                let cache = f.dir.sub("cache-\(round)")
                try await onThread {
                    let remote = try RemoteRegistry(url: url, token: f.reader, cacheDirectory: cache)
                    _ = try remote.pull(
                        try remote.resolve(try Reference(parsing: "m")),
                        to: out,
                        paths: nil,
                        selection: nil,
                        progress: nil
                    )
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
        // Every fetch went out from the pack files.
        #expect(f.server.metrics.chunkFetchBytesFromFiles > 0)
        #expect(f.server.metrics.chunkFetchBytesFromFiles == f.server.metrics.chunkFetchBytes)
    }

    /// The body of a fetch of `ids`: their 32-byte ids one after the other.
    static func idList(_ ids: [SHA256Digest]) -> [UInt8] { ids.flatMap(\.bytes) }

    /// Sends `request` on a new connection with a small receive window, waits `pause` (the server
    /// fills the socket's buffers meanwhile), then reads to the end of the stream; the reply's
    /// Content-Length and the bytes of body that arrived.
    static func readAfterPause(port: Int, request: [UInt8], pause: UInt32) -> (length: Int, got: Int) {
        guard let connection = RawConnection(port: port, receiveWindow: 32 << 10), connection.send(request) else {
            return (-1, 0)
        }
        usleep(pause)
        connection.receive()
        guard let reply = connection.reply else { return (-1, 0) }
        return (reply.length, reply.body.count)
    }

    /// A reply on a connection the client asked to close (`Connection: close`) reaches it whole,
    /// however slowly it reads: from files and from buffers. (A graceful shutdown, which closes
    /// connections from the server's side, is tested with a real process in CrossProcessTests.)
    @Test func aReplyIsSentWholeBeforeItsConnectionCloses() async throws {
        let (f, base, ids) = try Self.serverWithBase(seed: 14)
        let shard = FixtureModels.baseShardFiles[0]
        let shardSize = try FileManager.default.attributesOfItem(atPath: base + "/" + shard)[.size] as! Int
        try await f.application.test(.live) { client in
            let port = client.port!
            let (fetch, file) = try await onThread {
                let fetch = RawConnection.request(
                    "POST",
                    "/v1/chunks/fetch",
                    token: f.reader,
                    body: Self.idList(ids),
                    headers: ["Connection: close"]
                )
                let file = RawConnection.request(
                    "GET",
                    "/v1/models/m/versions/1/files/\(shard)",
                    token: f.reader,
                    headers: ["Connection: close"]
                )
                return (
                    Self.readAfterPause(port: port, request: fetch, pause: 300_000),
                    Self.readAfterPause(port: port, request: file, pause: 300_000)
                )
            }
            #expect(fetch.length > 4 << 20 && fetch.got == fetch.length, "fetch: \(fetch)")
            #expect(file.length == shardSize && file.got == file.length, "file: \(file)")
        }
    }

    @Test func connectionsResetMidReplyLeaveNoDescriptorsOpen() async throws {
        let (f, _, ids) = try Self.serverWithBase(seed: 13)
        let size = try f.registry.store.planExport(ids, maxBytes: 1 << 30).bound
        try await f.application.test(.live) { client in
            let port = client.port!
            let request = RawConnection.request("POST", "/v1/chunks/fetch", token: f.reader, body: Self.idList(ids))
            try await onThread {
                // Mid-body, before the reply.
                for read in [100_000, 0, 100_000, 0, 100_000, 0, 100_000, 0, 100_000, 0] {
                    let connection = try #require(RawConnection(port: port))
                    #expect(connection.send(request))
                    if read > 0 { connection.receive(upTo: read) }
                    connection.reset()
                }
            }
            var open = Self.openPackDescriptors(f)
            for _ in 0..<200 where open > Self.packs(f).count {
                try await Task.sleep(for: .milliseconds(10))
                open = Self.openPackDescriptors(f)
            }
            #expect(open <= Self.packs(f).count)
        }
        #expect(size > 1_000_000)  // the replies were cut well before their end
    }

    @Test func aTruncatedServerPackFailsThePullWithTheServersError() async throws {
        let (f, _, _) = try Self.serverWithBase(seed: 12)
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
                    _ = try remote.pull(
                        try remote.resolve(try Reference(parsing: "m")),
                        to: out,
                        paths: nil,
                        selection: nil,
                        progress: nil
                    )
                }
            } throws: { error in
                "\(error)".contains("is truncated: its records end at")
            }
            // Files whose chunks sit in the packs' lost halves were not written.
            #expect(FixtureModels.baseShardFiles.contains { !FileManager.default.fileExists(atPath: out + "/" + $0) })
        }
    }
}
