import CairnFixtures
import CairnRegistry
import CairnServer
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing

@testable import CairnServer

@Suite struct RangeTests {
    /// A 3 MB file (several chunks and read windows) and an empty one in model `m`.
    static func fixture() throws -> (ServerFixture, [UInt8], String) {
        let f = try ServerFixture()
        let bytes = FixtureData.bytes(count: 3_000_001, seed: 42)
        let dir = try f.writeTree("src", ["data/blob.bin": bytes, "empty.txt": []])
        try f.pushLocally(dir, model: "m")
        let sha = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "m@1"))).file(
            "data/blob.bin"
        )!.sha256.hex
        return (f, bytes, sha)
    }

    static func ranged(_ token: String, _ range: String) -> HTTPFields {
        var h = bearer(token)
        h[.range] = range
        return h
    }

    @Test func wholeFileAndHead() async throws {
        let (f, bytes, sha) = try Self.fixture()
        let uri = "/v1/models/m/versions/1/files/data/blob.bin"
        try await f.application.test(.router) { client in
            try await client.execute(uri: uri, method: .get, headers: bearer(f.reader)) { response in
                #expect(response.status == .ok)
                #expect(Array(response.body.readableBytesView) == bytes)
                #expect(response.headers[.eTag] == "\"\(sha)\"")
                #expect(response.headers[.acceptRanges] == "bytes")
                #expect(response.headers[.contentLength] == "\(bytes.count)")
            }
            try await client.execute(uri: uri, method: .head, headers: bearer(f.reader)) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentLength] == "\(bytes.count)")
                #expect(response.body.readableBytes == 0)
            }
            try await client.execute(
                uri: "/v1/models/m/versions/latest/files/empty.txt",
                method: .get,
                headers: bearer(f.reader)
            ) {
                #expect($0.status == .ok && $0.body.readableBytes == 0)
            }
            try await client.execute(uri: "/v1/models/m/versions/1/files/nope", method: .get, headers: bearer(f.reader))
            {
                #expect($0.status == .notFound)
            }
        }
    }

    @Test func ranges() async throws {
        let (f, bytes, sha) = try Self.fixture()
        let uri = "/v1/models/m/versions/1/files/data/blob.bin"
        let n = bytes.count
        let cases: [(String, Range<Int>)] = [
            ("bytes=0-0", 0..<1),  // first byte
            ("bytes=\(n - 1)-\(n - 1)", n - 1..<n),  // last byte
            ("bytes=1000000-2500000", 1_000_000..<2_500_001),  // middle, across chunks and windows
            ("bytes=-500", n - 500..<n),  // suffix
            ("bytes=2999990-", 2_999_990..<n),  // open end
            ("bytes=2999990-9999999", 2_999_990..<n),  // end past the file: clamped
            ("bytes=-99999999", 0..<n),  // suffix longer than the file
        ]
        try await f.application.test(.router) { client in
            for (header, expected) in cases {
                try await client.execute(uri: uri, method: .get, headers: Self.ranged(f.reader, header)) { response in
                    #expect(response.status == .partialContent, "\(header)")
                    #expect(Array(response.body.readableBytesView) == Array(bytes[expected]), "\(header)")
                    #expect(
                        response.headers[.contentRange]
                            == "bytes \(expected.lowerBound)-\(expected.upperBound - 1)/\(n)",
                        "\(header)"
                    )
                    #expect(response.headers[.contentLength] == "\(expected.count)")
                }
            }
            for header in ["bytes=\(n)-", "bytes=5-1", "bytes=abc", "bytes=-0", "bytes=3000001-3000005"] {
                try await client.execute(uri: uri, method: .get, headers: Self.ranged(f.reader, header)) { response in
                    #expect(response.status == .rangeNotSatisfiable, "\(header)")
                    #expect(response.headers[.contentRange] == "bytes */\(n)", "\(header)")
                    #expect(errorCode(response) == "range_not_satisfiable")
                }
            }
            try await client.execute(
                uri: "/v1/models/m/versions/1/files/empty.txt",
                method: .get,
                headers: Self.ranged(f.reader, "bytes=0-0")
            ) {
                #expect($0.status == .rangeNotSatisfiable)
            }
            // Resuming with If-Range: the same ETag gives the rest, another one the whole file.
            var headers = Self.ranged(f.reader, "bytes=2000000-")
            headers[.ifRange] = "\"\(sha)\""
            try await client.execute(uri: uri, method: .get, headers: headers) { response in
                #expect(response.status == .partialContent)
                #expect(Array(response.body.readableBytesView) == Array(bytes[2_000_000...]))
            }
            headers[.ifRange] = "\"0000\""
            try await client.execute(uri: uri, method: .get, headers: headers) { response in
                #expect(response.status == .ok)
                #expect(response.body.readableBytes == n)
            }
            // Other units are ignored.
            try await client.execute(uri: uri, method: .get, headers: Self.ranged(f.reader, "items=0-1")) {
                #expect($0.status == .ok)
            }
            // Several ranges: multipart/byteranges.
            try await client.execute(uri: uri, method: .get, headers: Self.ranged(f.reader, "bytes=0-9, -10")) {
                response in
                #expect(response.status == .partialContent)
                let type = try #require(response.headers[.contentType])
                #expect(type.hasPrefix("multipart/byteranges; boundary="))
                let body = Data(response.body.readableBytesView)
                #expect(body.range(of: Data(bytes[0..<10])) != nil)
                #expect(body.range(of: Data(bytes[n - 10..<n])) != nil)
                #expect(String(decoding: body, as: UTF8.self).contains("Content-Range: bytes \(n - 10)-\(n - 1)/\(n)"))
                #expect(response.headers[.contentLength] == "\(body.count)")
            }
        }
    }

    @Test func rangeHeaderParsing() {
        #expect(ByteRanges.parse(nil, size: 10) == .whole)
        #expect(ByteRanges.parse("bytes=0-4", size: 10) == .ranges([0..<5]))
        #expect(ByteRanges.parse("bytes=-3", size: 10) == .ranges([7..<10]))
        #expect(ByteRanges.parse("bytes=8-", size: 10) == .ranges([8..<10]))
        #expect(ByteRanges.parse("bytes=10-", size: 10) == .unsatisfiable)
        #expect(ByteRanges.parse("bytes=4-2", size: 10) == .unsatisfiable)
        #expect(ByteRanges.parse("bytes=0-1,20-30", size: 10) == .ranges([0..<2]))
        #expect(ByteRanges.parse("lines=0-1", size: 10) == .whole)
    }
}
