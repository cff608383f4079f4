import CairnStore
import Testing

/// The store's one aligned buffer and one buffer pool (package API, for the modules above too).
@Suite struct BufferTests {
    @Test func appendGrowsAndKeepsTheBytesInUse() {
        let buffer = AlignedBuffer(capacity: 4)
        #expect(Int(bitPattern: buffer.memory.baseAddress!) % AlignedBuffer.alignment == 0)
        #expect(buffer.count == 0 && buffer.bytes.isEmpty)
        let first: [UInt8] = [1, 2, 3]
        let second = [UInt8](repeating: 7, count: 10_000)
        first.withUnsafeBytes { buffer.append($0) }
        second.withUnsafeBytes { buffer.append($0) }
        #expect(buffer.capacity >= 10_003)
        #expect(Array(buffer.bytes) == first + second)
        // Growing keeps the bytes in use and nothing more.
        buffer.reserve(1 << 20)
        #expect(Array(buffer.bytes) == first + second)
        #expect(Int(bitPattern: buffer.memory.baseAddress!) % AlignedBuffer.alignment == 0)
    }

    @Test func thePoolHandsOutEmptyBuffersThatFitSmallestFirst() {
        let pool = BufferPool(granule: 1 << 10, keeping: 2)
        let small = pool.take(capacity: 1000)
        let large = pool.take(capacity: 5000)
        #expect(small.capacity == 1 << 10)
        #expect(large.capacity == 5 << 10)
        [UInt8](repeating: 1, count: 10).withUnsafeBytes { small.append($0) }
        pool.give(large)
        pool.give(small)
        pool.give(AlignedBuffer(capacity: 1))  // over the limit: dropped
        let again = pool.take(capacity: 900)
        #expect(again === small, "the smallest kept buffer that fits")
        #expect(again.count == 0)
        let grown = pool.take(capacity: 9000)
        #expect(grown === large, "else the largest, grown")
        #expect(grown.capacity >= 9000)
        let fresh = pool.take(capacity: 10)
        #expect(fresh !== small && fresh !== large)
    }

    @Test func firstErrorKeepsTheFirst() {
        struct Failure: Error, Equatable { let n: Int }
        let errors = FirstError()
        #expect(!errors.isSet)
        #expect(throws: Never.self) { try errors.rethrow() }
        errors.record(Failure(n: 1))
        errors.record(Failure(n: 2))
        #expect(errors.isSet)
        #expect(throws: Failure(n: 1)) { try errors.rethrow() }
    }
}
