import CairnFixtures
import Dispatch
import Foundation

/// Normal samples, bf16 rounding and the seeded, parallel fills that make every tensor of the workload.
///
/// Every tensor is cut into blocks of ``blockElements`` elements; block `b` of a tensor draws from its
/// own SplitMix64 stream, seeded by the tensor's seed and `b`. So the bytes depend only on the seeds,
/// never on the number of threads or the order in which tensors or blocks are made.
enum Sampling {
    /// The number of elements of one block (one SplitMix64 stream, one unit of parallel work).
    static let blockElements = 1 << 18

    /// The bf16 bit pattern nearest to `value` (round to nearest, ties to even; NaN stays NaN).
    @inline(__always)
    static func bf16(_ value: Float) -> UInt16 {
        if value.isNaN { return 0x7FC0 }
        let bits = value.bitPattern
        return UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ (bits >> 16 & 1)) >> 16)
    }

    /// The Float value of a bf16 bit pattern (exact).
    @inline(__always)
    static func float(bf16 bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// A seed derived from `parts`, in order; a different part anywhere gives an unrelated seed.
    static func seed(_ parts: UInt64...) -> UInt64 {
        var state: UInt64 = 0x4341_4952_4E57_4B4C  // "CAIRNWKL"
        for part in parts {
            state = SplitMix64.mix(state ^ SplitMix64.mix(part &+ 0x9E37_79B9_7F4A_7C15))
        }
        return state
    }

    /// 64-bit FNV-1a of the UTF-8 bytes of `name`: the part of a tensor's seed that its name gives.
    static func nameHash(_ name: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash
    }

    /// Fills `out` with the bf16 values of `offset + table.std * N(0, 1)`, from the streams of `seed`.
    static func fill(_ out: UnsafeMutableBufferPointer<UInt16>, seed: UInt64, table: NormalTable, offset: Float) {
        let target = UncheckedSendable(out)
        forEachBlock(count: out.count, seed: seed) { range, rng in
            let out = target.value
            table.cells.withUnsafeBufferPointer { cells in
                var i = range.lowerBound
                while i < range.upperBound {
                    let r = rng.next()
                    out[i] = bf16(offset + sample(UInt32(truncatingIfNeeded: r), cells))
                    if i + 1 < range.upperBound {
                        out[i + 1] = bf16(offset + sample(UInt32(truncatingIfNeeded: r >> 32), cells))
                    }
                    i += 2
                }
            }
        }
    }

    /// Writes into `out` each bf16 element of `source` plus `table.std * N(0, 1)`, rounded back to bf16:
    /// a fine-tune-like change (most elements move by a few units in the last place, signs and
    /// magnitudes stay). `out` and `source` have the same count and do not overlap.
    static func perturb(
        _ source: UnsafeBufferPointer<UInt16>,
        into out: UnsafeMutableBufferPointer<UInt16>,
        seed: UInt64,
        table: NormalTable
    ) {
        precondition(source.count == out.count, "perturb: source and destination differ in size")
        let pointers = UncheckedSendable((source, out))
        forEachBlock(count: out.count, seed: seed) { range, rng in
            let (source, out) = pointers.value
            table.cells.withUnsafeBufferPointer { cells in
                var i = range.lowerBound
                while i < range.upperBound {
                    let r = rng.next()
                    out[i] = bf16(float(bf16: source[i]) + sample(UInt32(truncatingIfNeeded: r), cells))
                    if i + 1 < range.upperBound {
                        let delta = sample(UInt32(truncatingIfNeeded: r >> 32), cells)
                        out[i + 1] = bf16(float(bf16: source[i + 1]) + delta)
                    }
                    i += 2
                }
            }
        }
    }

    /// One sample from 32 random bits: the low 16 choose a cell, the high 16 a point within it.
    @inline(__always)
    private static func sample(_ bits: UInt32, _ cells: UnsafeBufferPointer<SIMD2<Float>>) -> Float {
        let cell = cells[Int(bits & 0xFFFF)]
        return cell.x + Float(bits >> 16) * cell.y
    }

    /// Runs `body` for every block of `0..<count`, on all cores, each with the block's own stream.
    private static func forEachBlock(
        count: Int,
        seed: UInt64,
        _ body: @escaping @Sendable (Range<Int>, inout SplitMix64) -> Void
    ) {
        let blocks = (count + blockElements - 1) / blockElements
        let run: @Sendable (Int) -> Void = { block in
            var rng = SplitMix64(seed: Sampling.seed(seed, UInt64(block)))
            body(block * blockElements..<min(count, (block + 1) * blockElements), &rng)
        }
        if blocks <= 1 {
            if blocks == 1 { run(0) }
        } else {
            DispatchQueue.concurrentPerform(iterations: blocks, execute: run)
        }
    }
}

/// A standard normal distribution scaled by `std`, as 65,536 equally likely cells, each sampled
/// uniformly: cell `k` spans the normal quantiles of `k / 65536` and `(k + 1) / 65536` (the two
/// outermost cells are their midpoint quantiles, ±4.32). The mixture is rescaled to a standard
/// deviation of exactly 1 before `std` is applied. Its quantiles come from Acklam's rational
/// approximation of the inverse normal CDF (relative error below 1.2e-9), far finer than bf16.
struct NormalTable: Sendable {
    /// The standard deviation of the samples.
    let std: Double
    /// Per cell: its start (`x`) and its width divided by 65,536 (`y`), both scaled by `std`.
    let cells: [SIMD2<Float>]

    /// A table for `N(0, std²)`.
    init(std: Double) {
        self.std = std
        cells = Self.unitCells.map { SIMD2(Float($0.start * std), Float($0.width * std / 65_536)) }
    }

    /// The unit-variance cells, in Double.
    private static let unitCells: [(start: Double, width: Double)] = {
        let n = 65_536
        let edges = (0...n).map { k in k == 0 || k == n ? 0 : quantile(Double(k) / Double(n)) }
        var cells = (0..<n).map { k in (start: edges[k], width: edges[k + 1] - edges[k]) }
        cells[0] = (quantile(0.5 / Double(n)), 0)
        cells[n - 1] = (-cells[0].start, 0)
        // The variance of a uniform cell [a, b] about 0 is (a² + ab + b²) / 3; the mean is 0 by symmetry.
        let variance =
            cells.reduce(0.0) { sum, cell in
                let (a, b) = (cell.start, cell.start + cell.width)
                return sum + (a * a + a * b + b * b) / 3
            } / Double(n)
        let scale = 1 / variance.squareRoot()
        return cells.map { (start: $0.start * scale, width: $0.width * scale) }
    }()

    /// The standard normal quantile of `p` in (0, 1) (Acklam's algorithm).
    private static func quantile(_ p: Double) -> Double {
        let a = [
            -3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02,
            -3.066479806614716e+01, 2.506628277459239e+00,
        ]
        let b = [
            -5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01,
            -1.328068155288572e+01,
        ]
        let c = [
            -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00,
            4.374664141464968e+00, 2.938163982698783e+00,
        ]
        let d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00]
        let low = 0.02425
        if p > 1 - low { return -quantile(1 - p) }
        if p < low {
            let q = (-2 * log(p)).squareRoot()
            let num = ((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]
            return num / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
        }
        let q = p - 0.5
        let r = q * q
        let num = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
        return num / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    }
}

/// Carries a value the compiler cannot prove Sendable into concurrent work; the users guarantee
/// that concurrent iterations touch disjoint memory only.
struct UncheckedSendable<Value>: @unchecked Sendable {
    /// The carried value.
    let value: Value

    /// Wraps `value`.
    init(_ value: Value) {
        self.value = value
    }
}
