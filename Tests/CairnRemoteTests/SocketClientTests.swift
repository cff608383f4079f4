import CairnFixtures
import CairnRegistry
import Dispatch
import Foundation
import Glibc
import HummingbirdTesting
import Synchronization
import Testing

@testable import CairnRemote

/// The blocking HTTP/1.1 client of chunk uploads and fetches (`SocketClient`) against a scripted server:
/// bodies by length and chunked, error replies, kept-alive connections the server closed.
@Suite struct SocketClientTests {
    /// Answers requests on 127.0.0.1 with scripted replies, in order, each written in small pieces;
    /// after a reply marked `close` it closes the connection (without saying so in the reply).
    final class ScriptedServer: Sendable {
        let port: Int
        private let listener: Int32
        private let state = Mutex<(replies: [(bytes: [UInt8], close: Bool)], requests: [String], connections: Int)>(
            ([], [], 0)
        )

        init(_ replies: [(String, close: Bool)]) throws {
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.listener = listener
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = 0
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            try withUnsafeMutablePointer(to: &address) { p in
                try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { a in
                    guard bind(listener, a, length) == 0, listen(listener, 4) == 0,
                        getsockname(listener, a, &length) == 0
                    else {
                        throw POSIXError(.EADDRINUSE)
                    }
                }
            }
            port = Int(UInt16(bigEndian: address.sin_port))
            state.withLock { $0.replies = replies.map { (Array($0.0.utf8), $0.close) } }
            Thread.detachNewThread { [self] in serve() }
        }

        var requests: [String] { state.withLock { $0.requests } }
        var connections: Int { state.withLock { $0.connections } }

        private let stopped = Mutex(false)

        /// Stops accepting connections; the serving thread closes the socket when it sees that
        /// (closing it here could hand its number to another test's socket while still in use).
        func stop() {
            let wasRunning = stopped.withLock { stopped in
                defer { stopped = true }
                return !stopped
            }
            guard wasRunning else { return }
            shutdown(listener, Int32(SHUT_RDWR))
        }

        private func serve() {
            while true {
                let fd = accept(listener, nil, nil)
                if fd < 0 {
                    close(listener)
                    return
                }
                state.withLock { $0.connections += 1 }
                var pending: [UInt8] = []
                connection: while true {
                    // A request: its head, then Content-Length bytes.
                    var buffer = [UInt8](repeating: 0, count: 65536)
                    while !pending.contains(13) || String(decoding: pending, as: UTF8.self).range(of: "\r\n\r\n") == nil
                    {
                        let n = recv(fd, &buffer, buffer.count, 0)
                        if n <= 0 { break connection }
                        pending += buffer[0..<n]
                    }
                    let text = String(decoding: pending, as: UTF8.self)
                    let headEnd = text.range(of: "\r\n\r\n")!
                    let head = String(text[..<headEnd.lowerBound])
                    let length =
                        head.split(separator: "\r\n").compactMap { line -> Int? in
                            let parts = line.split(separator: ":", maxSplits: 1)
                            return parts.count == 2 && parts[0].lowercased() == "content-length"
                                ? Int(parts[1].trimmingCharacters(in: .whitespaces)) : nil
                        }.first ?? 0
                    let headBytes = text[..<headEnd.upperBound].utf8.count
                    while pending.count < headBytes + length {
                        let n = recv(fd, &buffer, buffer.count, 0)
                        if n <= 0 { break connection }
                        pending += buffer[0..<n]
                    }
                    pending.removeFirst(headBytes + length)
                    let reply = state.withLock { s -> (bytes: [UInt8], close: Bool)? in
                        s.requests.append(head)
                        return s.replies.isEmpty ? nil : s.replies.removeFirst()
                    }
                    guard let reply else { break }
                    // In pieces, so that reads see partial heads and bodies.
                    var at = 0
                    while at < reply.bytes.count {
                        let n = min(7 + at % 5000, reply.bytes.count - at)
                        _ = reply.bytes[at..<at + n].withUnsafeBytes {
                            send(fd, $0.baseAddress!, n, Int32(MSG_NOSIGNAL))
                        }
                        at += n
                        if at < 64 { usleep(1000) }
                    }
                    if reply.close { break }
                }
                close(fd)
            }
        }
    }

    static func reply(_ body: [UInt8], extra: String = "") -> String {
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \(body.count)\r\n\(extra)\r\n"
            + String(decoding: body, as: UTF8.self)
    }

    /// Bodies of bytes that are valid UTF-8 on their own, so a script can be a String.
    static let text = Array(String(repeating: "chunk bytes 0123456789 ", count: 4000).utf8)

    /// A socket bound to a loopback port without listening (connections to it are refused), and
    /// the port; close the socket when done.
    static func portNobodyListensOn() -> (socket: Int32, port: Int) { loopbackSocket(listening: false) }

    /// A socket listening on a loopback port that never accepts: the kernel completes connections
    /// and takes in requests, and nobody ever answers. Close the socket when done.
    static func portNobodyAnswersOn() -> (socket: Int32, port: Int) { loopbackSocket(listening: true) }

    static func loopbackSocket(listening: Bool) -> (socket: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                _ = bind(fd, $0, length)
                _ = getsockname(fd, $0, &length)
            }
        }
        if listening { _ = listen(fd, 4) }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    func fetch(_ fetcher: SocketClient) throws -> [UInt8] {
        try fetcher.fetch([1, 2, 3]).withBytes { Array($0) }
    }

    @Test func bodiesByLengthAndChunkedOverOneKeptAliveConnection() throws {
        var chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        for piece in [Self.text[0..<5000], Self.text[5000...]] {
            chunked += String(piece.count, radix: 16) + "\r\n" + String(decoding: piece, as: UTF8.self) + "\r\n"
        }
        chunked += "0\r\n\r\n"
        let server = try ScriptedServer([(Self.reply(Self.text), false), (chunked, false), (Self.reply([]), false)])
        defer { server.stop() }
        let fetcher = try #require(
            SocketClient(baseURL: "http://127.0.0.1:\(server.port)/base", token: "t0k", lanes: 1)
        )
        #expect(try fetch(fetcher) == Self.text)
        #expect(try fetch(fetcher) == Self.text)
        #expect(try fetch(fetcher) == [])
        #expect(server.connections == 1)
        let request = try #require(server.requests.first)
        #expect(request.hasPrefix("POST /base/v1/chunks/fetch HTTP/1.1"))
        #expect(request.contains("Authorization: Bearer t0k"))
    }

    @Test func aConnectionTheServerClosedIsReplacedOnce() throws {
        let server = try ScriptedServer([
            (Self.reply(Self.text), true), (Self.reply(Array(Self.text.prefix(10))), false),
        ])
        defer { server.stop() }
        let fetcher = try #require(SocketClient(baseURL: "http://127.0.0.1:\(server.port)", token: nil, lanes: 1))
        #expect(try fetch(fetcher) == Self.text)
        #expect(try fetch(fetcher) == Array(Self.text.prefix(10)))
        #expect(server.connections == 2)
    }

    @Test func errorRepliesAndCutBodiesFail() throws {
        let error = #"{"error":{"code":"unauthenticated","message":"a bearer token is required"}}"#
        let server = try ScriptedServer([
            (
                "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: \(error.utf8.count)\r\n\r\n"
                    + error, false
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + String(repeating: "x", count: 1000), true),
        ])
        defer { server.stop() }
        let fetcher = try #require(SocketClient(baseURL: "http://127.0.0.1:\(server.port)", token: nil, lanes: 1))
        #expect {
            try fetch(fetcher)
        } throws: {
            ($0 as? RemoteError)?.status == 401 && ($0 as? RemoteError)?.code == .unauthenticated
        }
        #expect {
            try fetch(fetcher)
        } throws: {
            ($0 as? RemoteError)?.code == .unreachable && "\($0)".contains("4000 bytes before the body's end")
        }
        let (unused, port) = Self.portNobodyListensOn()
        defer { close(unused) }
        let gone = try #require(SocketClient(baseURL: "http://127.0.0.1:\(port)", token: nil, lanes: 1))
        #expect { try fetch(gone) } throws: { ($0 as? RemoteError)?.code == .unreachable }
    }

    @Test func aServerThatDoesNotAnswerTimesOut() throws {
        // Connected and sent, the request gets no reply: the call fails after the timeout and says
        // so (not "malformed reply"), as a server that cannot be reached.
        let (silent, port) = Self.portNobodyAnswersOn()
        defer { close(silent) }
        let fetcher = try #require(SocketClient(baseURL: "http://127.0.0.1:\(port)", token: nil, lanes: 1, timeout: 1))
        let started = Date()
        #expect {
            try fetch(fetcher)
        } throws: {
            let error = $0 as? RemoteError
            return error?.code == .unreachable && error?.status == 0
                && error?.message == "http://127.0.0.1:\(port) did not answer within 1 s"
        }
        #expect(Date().timeIntervalSince(started) < 10)
    }

    @Test func pushesAndPullsWorkTheSameThroughTheHTTPClient() async throws {
        // https servers get chunk uploads and fetches through AsyncHTTPClient: the same that way.
        let f = try ServerFixture()
        let base = f.dir.sub("base")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: .small, seed: 3)
        try await f.application.test(.live) { client in
            let url = "http://127.0.0.1:\(client.port!)"
            try await onThread {
                let remote = try RemoteRegistry(
                    url: url,
                    token: f.writer,
                    cacheDirectory: f.dir.sub("push-cache"),
                    batchBytes: 1 << 20,
                    socketFetches: false
                )
                let report = try remote.pushReport(
                    directory: base,
                    request: PushRequest(model: "m", actor: ""),
                    progress: nil
                )
                #expect(report.transferredBytes! > 0)
                for (sockets, out) in [(false, "out-ahc"), (true, "out-sockets")] {
                    let puller = try RemoteRegistry(
                        url: url,
                        token: f.reader,
                        cacheDirectory: f.dir.sub("cache-" + out),
                        batchBytes: 1 << 20,
                        socketFetches: sockets
                    )
                    #expect((puller.socketClient != nil) == sockets)
                    let version = try puller.resolve(try Reference(parsing: "m@1"))
                    _ = try puller.pull(version, to: f.dir.sub(out), paths: nil, selection: nil, progress: nil)
                }
            }
        }
        #expect(try readTree(f.dir.sub("out-ahc")) == readTree(base))
        #expect(try readTree(f.dir.sub("out-sockets")) == readTree(base))
    }

    @Test func aServerThatRefusesConnectionsFailsACallAtOnce() throws {
        // Not retried for 90 seconds as AsyncHTTPClient's shared client would.
        let (unused, port) = Self.portNobodyListensOn()
        defer { close(unused) }
        let remote = try RemoteRegistry(url: "http://127.0.0.1:\(port)", token: "x")
        let started = Date()
        #expect {
            try remote.listModels()
        } throws: {
            ($0 as? RemoteError)?.code == .unreachable && "\($0)".hasSuffix(": connection refused")
        }
        #expect(Date().timeIntervalSince(started) < 30)
    }

    @Test func httpsIsLeftToTheHTTPClient() {
        #expect(SocketClient(baseURL: "https://example.org", token: nil) == nil)
    }
}
