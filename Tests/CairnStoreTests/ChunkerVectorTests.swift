import CairnFixtures
import CairnStore
import Digest
import Foundation
import Testing

/// The promises of docs/storage-format.md §3 (chunking), checked against the document itself: the
/// gear table is rebuilt here from the derivation §3.1 gives, `cut` is written here as §3.2's
/// pseudocode, and the test vectors are the document's numbers. A changed gear table, mask or
/// normalization fails these tests.
@Suite struct ChunkerVectorTests {
    /// §3.1's SplitMix64 step from `state`: `count` outputs.
    static func splitMix64(from state: UInt64, count: Int) -> [UInt64] {
        var state = state
        return (0..<count).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    /// The gear table as §3.1 derives it.
    static let documentedGear = splitMix64(from: 0x4341_4952_4E5F_4744, count: 256)

    /// §3.2's input: the first 2 MiB of SplitMix64 outputs from state 0, each as 8 little-endian bytes.
    static let vectorInput: [UInt8] = {
        var bytes = [UInt8](repeating: 0, count: 2 << 20)
        bytes.withUnsafeMutableBytes { raw in
            for (i, word) in splitMix64(from: 0, count: (2 << 20) / 8).enumerated() {
                raw.storeBytes(of: word.littleEndian, toByteOffset: 8 * i, as: UInt64.self)
            }
        }
        return bytes
    }()

    /// §3.2's `cut`, line by line: the length of the next chunk of `data[start...]`.
    static func documentedCut(_ data: [UInt8], from start: Int, _ p: ChunkerParameters) -> Int {
        let n = data.count - start
        if n <= p.min { return n }
        let bits = p.avg.trailingZeroBitCount
        let maskS = ~(UInt64.max >> UInt64(bits + 2))
        let maskL = ~(UInt64.max >> UInt64(bits - 2))
        let limit = min(n, p.max)
        let normal = min(p.avg, limit)
        var fp: UInt64 = 0
        var i = p.min
        while i < normal {
            fp = (fp << 1) &+ documentedGear[Int(data[start + i])]
            if fp & maskS == 0 { return i + 1 }
            i += 1
        }
        while i < limit {
            fp = (fp << 1) &+ documentedGear[Int(data[start + i])]
            if fp & maskL == 0 { return i + 1 }
            i += 1
        }
        return limit
    }

    /// A region cut by applying ``documentedCut(_:from:_:)`` until no bytes are left.
    static func documentedChunks(_ data: [UInt8], _ p: ChunkerParameters) -> [Int] {
        var lengths: [Int] = []
        var start = 0
        while start < data.count {
            let n = documentedCut(data, from: start, p)
            lengths.append(n)
            start += n
        }
        return lengths
    }

    static func chunkerLengths(_ data: [UInt8], _ p: ChunkerParameters) -> [Int] {
        data.withUnsafeBytes { Chunker(p).chunkLengths($0) }
    }

    @Test func theGearSeedIsCAIRN_GDReadBigEndian() {
        #expect(Chunker.gearSeed == 0x4341_4952_4E5F_4744)
        #expect(withUnsafeBytes(of: Chunker.gearSeed.bigEndian) { Array($0) } == Array("CAIRN_GD".utf8))
    }

    @Test func theGearTableIsTheDocumentedSplitMix64Stream() {
        #expect(Chunker.gear.count == 256)
        for (i, value) in Chunker.gear.enumerated() where value != Self.documentedGear[i] {
            Issue.record(
                "GEAR[\(i)] is 0x\(String(value, radix: 16)), §3.1 derives 0x\(String(Self.documentedGear[i], radix: 16))"
            )
        }
        // §3.1's check values.
        #expect(Chunker.gear[0] == 0x89bb_6980_09ec_2c36)
        #expect(Chunker.gear[1] == 0x693b_47da_5b6e_868e)
        #expect(Chunker.gear[2] == 0x4a6f_3ad3_7902_132b)
        #expect(Chunker.gear[3] == 0xa912_8263_e9a6_714f)
        #expect(Chunker.gear[255] == 0xe0a4_a99b_106c_dc5b)
    }

    @Test func theGearTableHasTheDocumentedDigest() {
        var bytes: [UInt8] = []
        for value in Chunker.gear { withUnsafeBytes(of: value.littleEndian) { bytes += $0 } }
        #expect(bytes.count == 2048)
        #expect(SHA256Digest.hash(bytes).hex == "c392cc04e17eb4d65dac5a30e74885f9a9635fae2a5f759cc51a7908b1794ecf")
    }

    @Test func defaultParametersAreTheDocumentedOnes() {
        let p = ChunkerParameters.default
        #expect(p.algorithm == "fastcdc-gear64-nc2")
        let sizes: [Int] = [p.min, p.avg, p.max, p.slice]
        #expect(sizes == [16384, 65536, 262_144, 131_072])
    }

    @Test func oneMebibyteOfZerosIsFourMaximalChunks() {
        #expect(
            Self.chunkerLengths([UInt8](repeating: 0, count: 1 << 20), .default) == [
                262_144, 262_144, 262_144, 262_144,
            ]
        )
    }

    @Test func theSplitMix64VectorGivesTheDocumentedChunks() {
        let lengths = Self.chunkerLengths(Self.vectorInput, .default)
        #expect(lengths.count == 32)
        #expect(Array(lengths.prefix(8)) == [76989, 68113, 68558, 38705, 85298, 33825, 74357, 41393])
        #expect(lengths.last == 15619)
        #expect(lengths.reduce(0, +) == 2 << 20)
    }

    /// The chunker makes §3.2's cuts for other parameters too (the masks follow log2(avg)), on
    /// random and on text input.
    @Test(arguments: [
        ChunkerParameters.default,
        ChunkerParameters(min: 2 << 10, avg: 8 << 10, max: 32 << 10),
        ChunkerParameters(min: 64, avg: 256, max: 4096),
        ChunkerParameters(min: 4 << 10, avg: 16 << 10, max: 20 << 10),
    ])
    func theChunkerCutsAsTheDocumentedPseudocode(_ p: ChunkerParameters) {
        for (name, input) in [("random", Self.vectorInput), ("text", FixtureData.text(count: 1 << 20, seed: 5))] {
            let lengths = Self.chunkerLengths(input, p)
            let documented = Self.documentedChunks(input, p)
            guard lengths != documented else { continue }
            // Report the first chunk that differs, not two long lists.
            let i =
                (0..<min(lengths.count, documented.count)).first { lengths[$0] != documented[$0] }
                ?? min(lengths.count, documented.count)
            let got = i < lengths.count ? "\(lengths[i]) bytes" : "missing"
            let expected = i < documented.count ? "\(documented[i]) bytes" : "none"
            Issue.record(
                "\(name) input, \(p.min)/\(p.avg)/\(p.max): chunk \(i) is \(got), §3.2's cut gives \(expected)"
            )
        }
    }

    /// "The streaming implementation makes the same cuts": a store's ingest of the vector input
    /// gives the documented chunks, each named by the SHA-256 of its raw bytes (§4).
    @Test func aStoreCutsTheVectorInputTheSameWay() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, chunker: .default, packSize: 64 << 20)
        try writeFile(dir.sub("in/vector.bin"), Self.vectorInput)
        let (manifest, _) = try push(store, dir.sub("in"))
        let file = try #require(manifest.file("vector.bin"))
        #expect(file.chunks.map { Int($0.length) } == Self.documentedChunks(Self.vectorInput, .default))
        #expect(file.chunks.count == 32 && file.chunks.last?.length == 15619)
        let offsets = file.chunkOffsets()
        for (i, chunk) in file.chunks.enumerated() {
            #expect(chunk.id == sha256(Array(Self.vectorInput[Int(offsets[i])..<Int(offsets[i + 1])])))
        }
        #expect(file.sha256 == sha256(Self.vectorInput))
    }
}
