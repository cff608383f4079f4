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
        // Every fetch went out from the pack files.
        #expect(f.server.metrics.chunkFetchBytesFromFiles > 0)
        #expect(f.server.metrics.chunkFetchBytesFromFiles == f.server.metrics.chunkFetchBytes)
    }

    /// A fetch over a raw connection: the request for `ids`, then up to `read` bytes of the reply,
    /// then a reset (SO_LINGER 0) instead of an orderly close.
    static func fetchAndReset(port: Int, token: String, ids: [SHA256Digest], read: Int) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        #expect(connected == 0)
        var body: [UInt8] = []
        for id in ids { body += id.bytes }
        let head = "POST /v1/chunks/fetch HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \(token)\r\nContent-Length: \(body.count)\r\n\r\n"
        let request = Array(head.utf8) + body
        #expect(request.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, 0) } == request.count)
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var got = 0
        while got < read {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, min($0.count, read - got), 0) }
            if n <= 0 { break }
            got += n
        }
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        close(fd)
    }

    /// Sends `request` on a new connection with a small receive window, waits `pause` (the server
    /// fills the socket's buffers meanwhile), then reads to the end of the stream; the reply's Content-Length and the bytes of
    /// body that arrived.
    static func readAfterPause(port: Int, request: [UInt8], pause: UInt32) -> (length: Int, got: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        // A small receive window, so that the reply does not fit in the kernel's buffers.
        var window: Int32 = 32 << 10
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &window, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress!, $0.count, 0) }
        usleep(pause)
        var reply: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            reply += buffer[0..<n]
        }
        close(fd)
        guard let end = reply.indices.first(where: { reply[$0...].starts(with: [13, 10, 13, 10]) }) else { return (-1, 0) }
        let head = String(decoding: reply[..<end], as: UTF8.self).lowercased()
        let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? -1
        return (length, reply.count - end - 4)
    }

    /// A reply on a connection the client asked to close (`Connection: close`) reaches it whole,
    /// however slowly it reads: from files and from buffers. (A graceful shutdown, which closes
    /// connections from the server's side, is tested with a real process in CrossProcessTests.)
    @Test func aReplyIsSentWholeBeforeItsConnectionCloses() async throws {
        let f = try ServerFixture()
        let base = f.dir.sub("base")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: .small, seed: 14)
        _ = try f.pushLocally(base, model: "m")
        let manifest = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "m")))
        let ids = Array(Set(manifest.files.flatMap { $0.chunks.map(\.id) }))
        let shard = FixtureModels.baseShardFiles[0]
        let shardSize = try FileManager.default.attributesOfItem(atPath: base + "/" + shard)[.size] as! Int
        try await f.application.test(.live) { client in
            let port = client.port!
            let (fetch, file) = try await onThread {
                var body: [UInt8] = []
                for id in ids { body += id.bytes }
                let fetch = Array(
                    "POST /v1/chunks/fetch HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer \(f.reader)\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
                let file = Array(
                    "GET /v1/models/m/versions/1/files/\(shard) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAuthorization: Bearer \(f.reader)\r\n\r\n".utf8)
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
        let f = try ServerFixture()
        let base = f.dir.sub("base")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: .small, seed: 13)
        _ = try f.pushLocally(base, model: "m")
        let manifest = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "m")))
        let ids = Array(Set(manifest.files.flatMap { $0.chunks.map(\.id) }))
        let size = try f.registry.store.planExport(ids, maxBytes: 1 << 30).bound
        try await f.application.test(.live) { client in
            let port = client.port!
            try await onThread {
                for _ in 0..<5 {
                    try Self.fetchAndReset(port: port, token: f.reader, ids: ids, read: 100_000)  // mid-body
                    try Self.fetchAndReset(port: port, token: f.reader, ids: ids, read: 0)  // before the reply
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
                "\(error)".contains("is truncated: its records end at")
            }
            // Files whose chunks sit in the packs' lost halves were not written.
            #expect(FixtureModels.baseShardFiles.contains { !FileManager.default.fileExists(atPath: out + "/" + $0) })
        }
    }
}
