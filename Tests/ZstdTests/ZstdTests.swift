import Testing
import Zstd

@Suite struct ZstdTests {
    @Test func compressDecompressRoundTrip() throws {
        let input = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        var compressed = [UInt8](repeating: 0, count: zstdCompressBound(input.count))
        let compressor = ZstdCompressor(level: 3)
        let n = try input.withUnsafeBytes { src in
            try compressed.withUnsafeMutableBytes { try compressor.compress(src, into: $0) }
        }
        #expect(n < input.count / 10)
        var output = [UInt8](repeating: 0, count: input.count)
        let decompressor = ZstdDecompressor()
        let m = try compressed.withUnsafeBytes { src in
            try output.withUnsafeMutableBytes {
                try decompressor.decompress(UnsafeRawBufferPointer(rebasing: src[0..<n]), into: $0)
            }
        }
        #expect(m == input.count)
        #expect(output == input)
        // Contexts are reusable.
        let n2 = try input.withUnsafeBytes { src in
            try compressed.withUnsafeMutableBytes { try compressor.compress(src, into: $0) }
        }
        #expect(n2 == n)
    }

    @Test func corruptInputThrows() {
        let garbage: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD, 1, 2, 3, 4, 5, 6]
        var output = [UInt8](repeating: 0, count: 100)
        #expect(throws: ZstdError.self) {
            try garbage.withUnsafeBytes { src in
                try output.withUnsafeMutableBytes { try ZstdDecompressor().decompress(src, into: $0) }
            }
        }
    }

    @Test func tooSmallDestinationThrows() {
        let input = [UInt8](repeating: 7, count: 1000)
        var output = [UInt8](repeating: 0, count: 4)
        #expect(throws: ZstdError.self) {
            try input.withUnsafeBytes { src in
                try output.withUnsafeMutableBytes { try ZstdCompressor().compress(src, into: $0) }
            }
        }
    }
}

@Suite struct EntropyTunedTests {
    @Test func entropyTunedFramesDecodeWithAPlainDecompressor() throws {
        // Low-entropy bytes like an exponent plane: a few values, no long repeats.
        var state: UInt64 = 1
        let input: [UInt8] = (0..<65536).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return 118 + UInt8(truncatingIfNeeded: (state >> 61))
        }
        var compressed = [UInt8](repeating: 0, count: zstdCompressBound(input.count))
        let n = try input.withUnsafeBytes { src in
            try compressed.withUnsafeMutableBytes { try ZstdCompressor.entropyTuned().compress(src, into: $0) }
        }
        #expect(n < input.count / 2)
        var output = [UInt8](repeating: 0, count: input.count)
        _ = try compressed.withUnsafeBytes { src in
            try output.withUnsafeMutableBytes {
                try ZstdDecompressor().decompress(UnsafeRawBufferPointer(rebasing: src[0..<n]), into: $0)
            }
        }
        #expect(output == input)
    }
}
