import Digest
import Testing

@Suite struct DigestTests {
    @Test func knownVectors() {
        #expect(
            SHA256Digest.hash(Array("abc".utf8)).hex
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        )
        #expect(SHA256Digest.hash([UInt8]()).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func streamingEqualsOneShotAndResets() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 * 7) }
        let hasher = SHA256Hasher()
        hasher.update(Array(data[0..<3333]))
        hasher.update(Array(data[3333...]))
        #expect(hasher.finalize() == SHA256Digest.hash(data))
        hasher.update(Array("abc".utf8))
        #expect(hasher.finalize().hex.hasPrefix("ba7816bf"))
    }

    @Test func hexAndBytesRoundTripAndOrderMatchesBytes() throws {
        let d = SHA256Digest.hash(Array("x".utf8))
        #expect(SHA256Digest(hex: d.hex) == d)
        #expect(SHA256Digest(hex: d.hex.uppercased()) == d)
        #expect(SHA256Digest(bytes: d.bytes) == d)
        #expect(SHA256Digest(hex: "zz") == nil)
        let a = try #require(SHA256Digest(hex: "00" + String(repeating: "ff", count: 31)))
        let b = try #require(SHA256Digest(hex: "01" + String(repeating: "00", count: 31)))
        #expect(a < b)
        #expect(a.bytes.lexicographicallyPrecedes(b.bytes))
    }
}
