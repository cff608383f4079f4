import CairnStore
import Dispatch
import Foundation
import Glibc
import NIOCore
import NIOHTTP1
import Synchronization

/// The bulk calls of pushes and pulls — chunk uploads (`POST /v1/chunks`) and fetches
/// (`POST /v1/chunks/fetch`) — for `http://` servers, over plain HTTP/1.1 on blocking sockets.
/// A request body goes from its buffer to the socket and a reply's body from the socket straight
/// into a reused buffer, in reads of up to the whole remaining body. Through AsyncHTTPClient a body
/// arrived in 64 KiB reads, each copied once more, and a bundle's buffer could still be held by
/// the client when the next bundle wanted it (a fresh one then had every page faulted in); that
/// was half the client's extra CPU time in a remote pull.
///
/// Calls run on a few connections (lanes), each a serial queue with one keep-alive connection;
/// they are handed out in turn, so replies arrive about in the order they are asked for.
///
/// The sockets block their dispatch queues' threads, never a Swift concurrency thread; a caller
/// blocks only when it waits for a reply (``SocketReply``).
final class SocketClient: Sendable {
    let host: String
    let port: Int
    /// The server URL's path prefix (usually empty).
    let prefix: String
    let token: String?
    let baseURL: String
    /// Seconds a connection waits for the server to take or send bytes before the call fails.
    let timeout: Int
    private let lanes: [Lane]
    private let turn = Atomic<Int>(0)

    /// nil for URLs it does not serve (https).
    init?(baseURL: String, token: String?, lanes: Int = 3, timeout: Int = 300) {
        guard let url = URL(string: baseURL), url.scheme == "http", let host = url.host, !host.isEmpty else {
            return nil
        }
        self.host = host
        port = url.port ?? 80
        prefix = url.path.hasSuffix("/") ? String(url.path.dropLast()) : url.path
        self.token = token
        self.baseURL = baseURL
        self.timeout = timeout
        self.lanes = (0..<lanes).map { Lane(index: $0) }
    }

    /// Starts fetching the chunks whose ids (``ChunkIDList``) are `body`, as one bundle (with
    /// `deltas`, chunks stored as deltas come as such).
    func fetch(_ body: [UInt8], deltas: Bool = false) -> SocketReply {
        post("/v1/chunks/fetch" + (deltas ? "?deltas=1" : ""), body: ByteBuffer(bytes: body))
    }

    /// Starts a POST of `body` (`application/octet-stream`) to `path` (with its query), on the
    /// next lane. `body` is not copied; the reply holds it until the call is done.
    func post(_ path: String, body: ByteBuffer) -> SocketReply {
        let reply = SocketReply()
        let lane = lanes[turn.add(1, ordering: .relaxed).oldValue % lanes.count]
        let authority = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"  // IPv6 literals in brackets
        var head = "POST \(prefix)\(path) HTTP/1.1\r\nHost: \(authority)\r\nUser-Agent: cairn/0.1\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        head += "Content-Type: application/octet-stream\r\nContent-Length: \(body.readableBytes)\r\n\r\n"
        let request = Array(head.utf8)
        lane.queue.async { [self] in
            reply.complete(Result { try lane.exchange(request, body: body, with: self) }.mapError(failure))
        }
        return reply
    }

    /// What a failed call reports: the server's error as it is; a socket failure as the server
    /// being unreachable, or not answering within ``timeout``.
    private func failure(_ error: any Error) -> any Error {
        switch error {
        case SocketFailure.timedOut: RemoteError.timedOut(baseURL, after: "\(timeout) s")
        case let failure as SocketFailure: RemoteError.unreachable(baseURL, failure.description)
        default: error
        }
    }

    /// One connection and the queue that uses it.
    final class Lane: Sendable {
        let queue: DispatchQueue
        /// The connection, -1 while there is none. Used by calls on `queue`, one at a time: the
        /// lock is never contended.
        private let socket = Mutex<Int32>(-1)

        init(index: Int) { queue = DispatchQueue(label: "cairn.socket.\(index)") }

        deinit { socket.withLock { if $0 >= 0 { close($0) } } }

        /// Sends `request` and reads the reply; a kept-alive connection that the server closed
        /// before any reply is replaced once (sending again is safe: a fetch only reads, and an
        /// upload stages each chunk once however often it arrives).
        func exchange(_ head: [UInt8], body: ByteBuffer, with client: SocketClient) throws -> AlignedBuffer {
            try socket.withLock { socket in
                var reused = socket >= 0
                while true {
                    if socket < 0 { socket = try Self.connect(client) }
                    do {
                        return try Self.send(head, body: body, on: &socket)
                    } catch {
                        if socket >= 0 { close(socket) }
                        socket = -1
                        guard reused, case SocketFailure.closedBeforeReply = error else { throw error }
                        reused = false
                    }
                }
            }
        }

        private static func sendAll(_ fd: Int32, _ raw: UnsafeRawBufferPointer, more: Bool) throws {
            var done = 0
            while done < raw.count {
                let flags = Int32(MSG_NOSIGNAL) | (more ? 0x8000 : 0)  // 0x8000: MSG_MORE
                let n = Glibc.send(fd, raw.baseAddress! + done, raw.count - done, flags)
                if n < 0 {
                    if errno == EINTR { continue }
                    if errno == EPIPE || errno == ECONNRESET { throw SocketFailure.closedBeforeReply }
                    if errno == EAGAIN || errno == EWOULDBLOCK { throw SocketFailure.timedOut }
                    throw SocketFailure.system("send", errno)
                }
                done += n
            }
        }

        /// Sends a request on `socket` and reads its reply; closes `socket` (sets it to -1) when the
        /// reply says the connection ends with it.
        private static func send(_ head: [UInt8], body: ByteBuffer, on socket: inout Int32) throws -> AlignedBuffer {
            let fd = socket
            var reader = Reader(fd: fd)
            try head.withUnsafeBytes { try sendAll(fd, $0, more: body.readableBytes > 0) }
            try body.withUnsafeReadableBytes { try sendAll(fd, $0, more: false) }
            let head = try reader.head()
            let body = BufferPool.replies.take(capacity: head.contentLength ?? 0)
            if head.chunked {
                try reader.chunkedBody(into: body)
            } else if let length = head.contentLength {
                try reader.body(length, into: body)
            } else {
                try reader.bodyToEnd(into: body)
            }
            if head.close {
                close(socket)
                socket = -1
            }
            if head.status >= 400 {
                let reply = RemoteRegistry.Reply(status: head.status, headers: head.headers, body: body.byteBuffer())
                BufferPool.replies.give(body)
                throw RemoteRegistry.error(from: reply)
            }
            return body
        }

        private static func connect(_ client: SocketClient) throws -> Int32 {
            var hints = addrinfo()
            hints.ai_family = AF_UNSPEC
            hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
            var list: UnsafeMutablePointer<addrinfo>?
            let status = getaddrinfo(client.host, String(client.port), &hints, &list)
            guard status == 0, let first = list else {
                throw RemoteError.unreachable(client.baseURL, String(cString: gai_strerror(status)))
            }
            defer { freeaddrinfo(list) }
            var failure = ECONNREFUSED
            var node: UnsafeMutablePointer<addrinfo>? = first
            while let address = node {
                node = address.pointee.ai_next
                let fd = Glibc.socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
                if fd < 0 {
                    failure = errno
                    continue
                }
                if Glibc.connect(fd, address.pointee.ai_addr, address.pointee.ai_addrlen) != 0 {
                    failure = errno
                    close(fd)
                    continue
                }
                var on: Int32 = 1
                setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &on, socklen_t(MemoryLayout<Int32>.size))
                // A stalled server fails the fetch instead of hanging the pull.
                var timeout = timeval(tv_sec: client.timeout, tv_usec: 0)
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
                return fd
            }
            throw RemoteError.unreachable(client.baseURL, String(cString: strerror(failure)))
        }
    }

    /// Why an exchange on a connection failed (reported as ``RemoteError`` with `.unreachable`).
    enum SocketFailure: Error, CustomStringConvertible {
        /// The server closed the connection (or reset it) before any byte of the reply.
        case closedBeforeReply
        /// The server neither took nor sent bytes within the client's ``SocketClient/timeout``.
        case timedOut
        case system(String, Int32)
        case malformed(String)

        var description: String {
            switch self {
            case .closedBeforeReply: "the server closed the connection"
            case .timedOut: "no answer in time"
            case .system(let call, let code): "\(call): \(String(cString: strerror(code)))"
            case .malformed(let what): "malformed reply: \(what)"
            }
        }
    }
}

/// A call of ``SocketClient`` on its way; its reply (a chunk bundle for a fetch) is kept once it
/// has arrived, in a buffer that goes back to ``BufferPool/replies`` with the call.
final class SocketReply: PendingBundle {
    /// Signalled once the result is in; each wait signals it again, so that later waits pass.
    private let arrived = DispatchSemaphore(value: 0)
    /// Set once, by the lane's queue, before `arrived` is signalled.
    private let result = Mutex<Result<AlignedBuffer, any Error>?>(nil)

    fileprivate func complete(_ result: Result<AlignedBuffer, any Error>) {
        self.result.withLock { $0 = result }
        arrived.signal()
    }

    deinit {
        if case .success(let body)? = result.withLock({ $0 }) { BufferPool.replies.give(body) }
    }

    func withBytes<T>(_ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        try body(try received().bytes)
    }

    /// Waits for the reply; its body (a copy: replies other than bundles are small), or the
    /// server's error.
    func body() throws -> ByteBuffer {
        try received().byteBuffer()
    }

    /// Waits for the reply (blocking; see "Blocking calls" on ``RemoteRegistry``).
    private func received() throws -> AlignedBuffer {
        arrived.wait()
        arrived.signal()
        return try result.withLock { $0 }!.get()
    }
}
