import CairnFixtures
import CairnStore
import Testing

@Suite struct ChunkerTests {
    let chunker = Chunker(ChunkerParameters.default)

    func lengths(_ bytes: [UInt8]) -> [Int] {
        bytes.withUnsafeBytes { chunker.chunkLengths($0) }
    }

    @Test func sameBytesGiveSameBoundaries() {
        let data = FixtureData.bytes(count: 3 << 20, seed: 1)
        #expect(lengths(data) == lengths(data))
        #expect(lengths(data).reduce(0, +) == data.count)
    }

    @Test func everyChunkIsWithinMinAndMax() {
        let data = FixtureData.bytes(count: 8 << 20, seed: 2)
        let sizes = lengths(data)
        #expect(sizes.count > 50)
        for size in sizes.dropLast() {
            #expect(size >= chunker.minSize && size <= chunker.maxSize)
        }
        #expect(sizes.last! <= chunker.maxSize)
        // Normalized chunking keeps the average near the target.
        let average = Double(data.count) / Double(sizes.count)
        #expect(average > 40_000 && average < 100_000)
    }

    @Test func zeroesAreCutAtMax() {
        // A run of identical bytes has no content boundary: chunks are cut at the maximum.
        let sizes = lengths([UInt8](repeating: 0, count: 1 << 20))
        #expect(sizes == [Int](repeating: chunker.maxSize, count: 4))
    }

    @Test func insertionChangesOnlyNearbyChunks() {
        let data = FixtureData.bytes(count: 4 << 20, seed: 3)
        var edited = data
        edited.insert(contentsOf: [1, 2, 3, 4, 5, 6, 7], at: 100_000)
        func chunks(_ bytes: [UInt8]) -> Set<[UInt8]> {
            var out = Set<[UInt8]>()
            var at = 0
            for n in lengths(bytes) {
                out.insert(Array(bytes[at..<at + n]))
                at += n
            }
            return out
        }
        let before = chunks(data)
        let after = chunks(edited)
        let changed = after.subtracting(before).count
        #expect(changed >= 1 && changed <= 3, "an insertion should change at most a few chunks, changed \(changed)")
        #expect(before.subtracting(after).count <= 3)
    }

    @Test func streamingAgreesWithWholeBuffer() {
        // nextChunkLength on a prefix returns nil (needs more) or the same cut as on the whole input.
        let data = FixtureData.bytes(count: 1 << 20, seed: 4)
        data.withUnsafeBytes { whole in
            let full = chunker.nextChunkLength(whole, isEnd: true)!
            let prefix = UnsafeRawBufferPointer(rebasing: whole[0..<(full - 1)])
            #expect(chunker.nextChunkLength(prefix, isEnd: false) == nil)
            let longer = UnsafeRawBufferPointer(rebasing: whole[0..<(full + 10)])
            #expect(chunker.nextChunkLength(longer, isEnd: false) == full)
        }
    }

    @Test func tinyInputIsOneChunk() {
        #expect(lengths([]) == [])
        #expect(lengths([42]) == [1])
        #expect(lengths([UInt8](repeating: 7, count: 1000)) == [1000])
    }
}
