import CairnStore
import Glibc
import NIOHTTP1

// How a ``SocketClient`` reads an HTTP/1.1 reply: the head through a small buffer, the body
// straight into its (pooled) buffer, by length, chunked, or to the end of the connection.
extension SocketClient {
    /// The head of a reply.
    struct Head {
        var status: Int
        var headers: HTTPHeaders
        var contentLength: Int?
        var chunked: Bool
        var close: Bool
    }

    /// Reads a reply from a socket: the head through a small buffer, bodies straight into their
    /// buffer (after what the head's read brought along).
    struct Reader {
        let fd: Int32
        private var buffered: [UInt8] = []
        private var start = 0
        private var gotAny = false
        static let largestHead = 64 << 10

        init(fd: Int32) { self.fd = fd }

        /// Reads into `target`; 0 at the end of the stream.
        private static func receive(_ fd: Int32, _ target: UnsafeMutableRawBufferPointer) throws -> Int {
            while true {
                let n = recv(fd, target.baseAddress!, target.count, 0)
                if n >= 0 { return n }
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { throw SocketFailure.timedOut }
                throw SocketFailure.system("recv", errno)
            }
        }

        private mutating func receive(_ target: UnsafeMutableRawBufferPointer) throws -> Int {
            do {
                let n = try Self.receive(fd, target)
                if n > 0 { gotAny = true }
                return n
            } catch SocketFailure.system(_, let code) where code == ECONNRESET && !gotAny {
                throw SocketFailure.closedBeforeReply
            }
        }

        /// More bytes into `buffered`; false at the end of the stream.
        private mutating func fill() throws -> Bool {
            if start > 0 {
                buffered.removeFirst(start)
                start = 0
            }
            var more = [UInt8](repeating: 0, count: 16 << 10)
            let n = try more.withUnsafeMutableBytes { try receive($0) }
            buffered += more[0..<n]
            return n > 0
        }

        mutating func head() throws -> Head {
            var end: Int?
            while true {
                if let found = Self.find([13, 10, 13, 10], in: buffered, from: start) {
                    end = found
                    break
                }
                guard buffered.count - start < Self.largestHead else {
                    throw SocketFailure.malformed("head over 64 KiB")
                }
                guard try fill() else {
                    if !gotAny { throw SocketFailure.closedBeforeReply }
                    throw SocketFailure.malformed("the connection closed in the head")
                }
            }
            let text = String(decoding: buffered[start..<end!], as: UTF8.self)
            start = end! + 4
            var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
            let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
            guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/1."), let status = Int(statusLine[1]) else {
                throw SocketFailure.malformed("status line")
            }
            var head = Head(
                status: status,
                headers: HTTPHeaders(),
                contentLength: nil,
                chunked: false,
                close: statusLine[0] == "HTTP/1.0"
            )
            for line in lines {
                guard let colon = line.firstIndex(of: ":") else { throw SocketFailure.malformed("header line") }
                let name = line[..<colon].trimmingCharacters(in: .whitespaces)
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                head.headers.add(name: name, value: value)
                switch name.lowercased() {
                case "content-length":
                    guard let n = Int(value), n >= 0 else { throw SocketFailure.malformed("content-length") }
                    head.contentLength = n
                case "transfer-encoding": head.chunked = value.lowercased().contains("chunked")
                case "connection":
                    if value.lowercased().contains("close") { head.close = true }
                    if value.lowercased().contains("keep-alive") { head.close = false }
                default: break
                }
            }
            // Without a length the body ends with the connection.
            if !head.chunked && head.contentLength == nil { head.close = true }
            return head
        }

        /// `count` body bytes into `body`: what was read with the head, then straight from the socket.
        mutating func body(_ count: Int, into body: AlignedBuffer) throws {
            body.reserveRoom(count)
            let early = min(count, buffered.count - start)
            buffered[start..<start + early].withUnsafeBytes { body.append($0) }
            start += early
            var left = count - early
            while left > 0 {
                let n = try receive(
                    UnsafeMutableRawBufferPointer(rebasing: body.memory[body.count..<body.count + left])
                )
                guard n > 0 else {
                    throw SocketFailure.malformed("the connection closed \(left) bytes before the body's end")
                }
                body.count += n
                left -= n
            }
        }

        mutating func bodyToEnd(into body: AlignedBuffer) throws {
            buffered[start...].withUnsafeBytes { body.append($0) }
            start = buffered.count
            while true {
                body.reserveRoom(1 << 20)
                let n = try receive(UnsafeMutableRawBufferPointer(rebasing: body.memory[body.count...]))
                if n == 0 { return }
                body.count += n
            }
        }

        /// A line of the chunked encoding, without its CRLF.
        private mutating func line() throws -> String {
            while true {
                if let end = Self.find([13, 10], in: buffered, from: start) {
                    let text = String(decoding: buffered[start..<end], as: UTF8.self)
                    start = end + 2
                    return text
                }
                guard buffered.count - start < 4096 else { throw SocketFailure.malformed("chunk line") }
                guard try fill() else { throw SocketFailure.malformed("the connection closed in a chunked body") }
            }
        }

        mutating func chunkedBody(into body: AlignedBuffer) throws {
            while true {
                let sizeText = try line().split(separator: ";").first.map(String.init) ?? ""
                guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                    throw SocketFailure.malformed("chunk size")
                }
                if size == 0 {
                    while try !line().isEmpty {}  // trailers, then the final empty line
                    return
                }
                try self.body(size, into: body)
                guard try line().isEmpty else { throw SocketFailure.malformed("chunk end") }
            }
        }

        private static func find(_ pattern: [UInt8], in bytes: [UInt8], from: Int) -> Int? {
            guard bytes.count - from >= pattern.count else { return nil }
            var i = from
            while i + pattern.count <= bytes.count {
                if bytes[i..<i + pattern.count].elementsEqual(pattern) { return i }
                i += 1
            }
            return nil
        }
    }
}
