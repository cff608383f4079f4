import Zstd

/// Byte planes for floating-point data: most of the entropy of a trained weight sits in its
/// mantissa, while its exponent byte takes few values. Splitting the elements into planes and
/// compressing each separately lets zstd see those patterns.
///
/// Each element is rotated left by one bit first (sign moves to the lowest bit), so for bf16 and
/// fp32 the exponent becomes a whole byte: bf16 `seeeeeee emmmmmmm` → `eeeeeeee mmmmmmms`.
/// Plane k holds byte k (most significant first) of every element.
///
/// Encoding (little-endian): element size u8 (2 or 4) · per plane: mode u8 (0 raw, 1 zstd) ·
/// length u32 · then the planes' bytes in order. Trailing bytes that do not fill an element (never
/// for tensor slices) form a last raw "plane" with mode 0.
enum ByteGrouping {
    static func headerSize(elementSize: Int) -> Int { 1 + 5 * (elementSize + 1) }

    /// Room to reserve for an encoding of `count` bytes.
    static func bound(_ count: Int, elementSize: Int) -> Int {
        headerSize(elementSize: elementSize) + zstdCompressBound(count) + 64
    }

    /// Encodes `source` into `destination`, using `planes` (at least `source.count` bytes) as
    /// scratch. Returns the encoded length.
    static func encode(
        _ source: UnsafeRawBufferPointer,
        elementSize: Int,
        rotate: Bool = true,
        into destination: UnsafeMutableRawBufferPointer,
        planes: UnsafeMutableRawBufferPointer,
        compressor: ZstdCompressor
    ) throws -> Int {
        precondition(elementSize == 2 || elementSize == 4)
        let count = source.count / elementSize
        split(source, count: count, elementSize: elementSize, rotate: rotate, into: planes)
        let out = destination.baseAddress!
        out.storeBytes(of: UInt8(elementSize), as: UInt8.self)
        var header = 1
        var at = headerSize(elementSize: elementSize)
        for k in 0...elementSize {
            let plane: UnsafeRawBufferPointer
            if k < elementSize {
                plane = UnsafeRawBufferPointer(rebasing: planes[k * count..<(k + 1) * count])
            } else {
                plane = UnsafeRawBufferPointer(rebasing: source[(count * elementSize)...])
            }
            var mode: UInt8 = 0
            var length = plane.count
            if k < elementSize, plane.count >= 64,
                try worthCompressing(plane, destination: destination, at: at, compressor)
            {
                let room = UnsafeMutableRawBufferPointer(rebasing: destination[at...])
                let n = try compressor.compress(plane, into: room)
                if n < plane.count {
                    mode = 1
                    length = n
                }
            }
            if mode == 0, length > 0 {
                (out + at).copyMemory(from: plane.baseAddress!, byteCount: length)
            }
            out.storeBytes(of: mode, toByteOffset: header, as: UInt8.self)
            out.storeBytes(of: UInt32(length).littleEndian, toByteOffset: header + 1, as: UInt32.self)
            header += 5
            at += length
        }
        return at
    }

    /// Whether a plane is worth handing to zstd: mantissa planes of trained weights are close to
    /// random, and zstd spends as long failing on them as it does on the rest. A 4 KiB sample that
    /// does not shrink by 3 % says the plane is stored raw.
    private static func worthCompressing(
        _ plane: UnsafeRawBufferPointer,
        destination: UnsafeMutableRawBufferPointer,
        at: Int,
        _ compressor: ZstdCompressor
    ) throws -> Bool {
        let sampleSize = 4096
        guard plane.count > 4 * sampleSize else { return true }
        let sample = UnsafeRawBufferPointer(rebasing: plane[0..<sampleSize])
        let n = try compressor.compress(sample, into: UnsafeMutableRawBufferPointer(rebasing: destination[at...]))
        return n < sampleSize * 97 / 100
    }

    /// Decodes an encoding into `destination` (exactly the raw length), using `planes` as scratch.
    static func decode(
        _ source: UnsafeRawBufferPointer,
        rotate: Bool = true,
        into destination: UnsafeMutableRawBufferPointer,
        planes: UnsafeMutableRawBufferPointer,
        decompressor: ZstdDecompressor
    ) throws {
        guard source.count >= 1 else { throw CairnStoreError(.corruption, "empty byte-plane encoding") }
        let elementSize = Int(source[0])
        guard elementSize == 2 || elementSize == 4, source.count >= headerSize(elementSize: elementSize) else {
            throw CairnStoreError(.corruption, "malformed byte-plane header")
        }
        let count = destination.count / elementSize
        var header = 1
        var at = headerSize(elementSize: elementSize)
        // Where each plane's bytes are: in `source` when stored raw (joined from there, not copied
        // first), else decompressed into `planes`.
        var planePointers: [UnsafePointer<UInt8>] = []
        planePointers.reserveCapacity(elementSize)
        for k in 0...elementSize {
            let mode = source[header]
            let length = Int(UInt32(littleEndian: source.loadUnaligned(fromByteOffset: header + 1, as: UInt32.self)))
            header += 5
            guard at + length <= source.count else { throw CairnStoreError(.corruption, "byte plane \(k) is cut off") }
            let payload = UnsafeRawBufferPointer(rebasing: source[at..<at + length])
            let target =
                k < elementSize
                ? UnsafeMutableRawBufferPointer(rebasing: planes[k * count..<(k + 1) * count])
                : UnsafeMutableRawBufferPointer(rebasing: destination[(count * elementSize)...])
            switch mode {
            case 0:
                guard length == target.count else {
                    throw CairnStoreError(.corruption, "byte plane \(k) has the wrong length")
                }
                if k < elementSize {
                    if count > 0 { planePointers.append(payload.baseAddress!.assumingMemoryBound(to: UInt8.self)) }
                } else if length > 0 {
                    target.baseAddress!.copyMemory(from: payload.baseAddress!, byteCount: length)
                }
            case 1:
                let n = try decompressor.decompress(payload, into: target)
                guard n == target.count else {
                    throw CairnStoreError(.corruption, "byte plane \(k) has the wrong length")
                }
                if k < elementSize, count > 0 {
                    planePointers.append(UnsafePointer(target.baseAddress!.assumingMemoryBound(to: UInt8.self)))
                }
            default:
                throw CairnStoreError(.corruption, "byte plane \(k) has unknown mode \(mode)")
            }
            at += length
        }
        guard at == source.count else { throw CairnStoreError(.corruption, "trailing bytes after the byte planes") }
        join(planePointers, count: count, elementSize: elementSize, rotate: rotate, into: destination)
    }

    // The loops below run over every byte stored and read, so each element size has its own
    // small function with one pointer per plane: inlined into `encode`, or indexing one pointer
    // with `k * count + i`, LLVM kept them scalar (bf16 split 2.6 GB/s in a profile, join 2.2 GB/s;
    // as separate functions they vectorize: 16 and 33 GB/s in a micro benchmark).

    /// Rotates each element left by one bit and scatters its bytes (most significant first) to planes.
    private static func split(
        _ source: UnsafeRawBufferPointer,
        count: Int,
        elementSize: Int,
        rotate: Bool,
        into planes: UnsafeMutableRawBufferPointer
    ) {
        let s = source.baseAddress!
        let p = planes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        if elementSize == 2 {
            split16(s, count: count, by: rotate ? 1 : 0, p, p + count)
        } else {
            split32(s, count: count, by: rotate ? 1 : 0, p, p + count, p + 2 * count, p + 3 * count)
        }
    }

    @inline(never)
    private static func split16(
        _ s: UnsafeRawPointer,
        count: Int,
        by: UInt16,
        _ p0: UnsafeMutablePointer<UInt8>,
        _ p1: UnsafeMutablePointer<UInt8>
    ) {
        for i in 0..<count {
            let v = UInt16(littleEndian: s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
            let r = (v &<< by) | (v &>> ((16 &- by) & 15))
            p0[i] = UInt8(truncatingIfNeeded: r &>> 8)
            p1[i] = UInt8(truncatingIfNeeded: r)
        }
    }

    @inline(never)
    private static func split32(
        _ s: UnsafeRawPointer,
        count: Int,
        by: UInt32,
        _ p0: UnsafeMutablePointer<UInt8>,
        _ p1: UnsafeMutablePointer<UInt8>,
        _ p2: UnsafeMutablePointer<UInt8>,
        _ p3: UnsafeMutablePointer<UInt8>
    ) {
        for i in 0..<count {
            let v = UInt32(littleEndian: s.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
            let r = (v &<< by) | (v &>> ((32 &- by) & 31))
            p0[i] = UInt8(truncatingIfNeeded: r &>> 24)
            p1[i] = UInt8(truncatingIfNeeded: r &>> 16)
            p2[i] = UInt8(truncatingIfNeeded: r &>> 8)
            p3[i] = UInt8(truncatingIfNeeded: r)
        }
    }

    /// The inverse of ``split``: `planes` points at each plane's `count` bytes.
    private static func join(
        _ planes: [UnsafePointer<UInt8>],
        count: Int,
        elementSize: Int,
        rotate: Bool,
        into destination: UnsafeMutableRawBufferPointer
    ) {
        guard count > 0 else { return }
        let d = destination.baseAddress!
        if elementSize == 2 {
            join16(planes[0], planes[1], count: count, by: rotate ? 1 : 0, into: d)
        } else {
            join32(planes[0], planes[1], planes[2], planes[3], count: count, by: rotate ? 1 : 0, into: d)
        }
    }

    @inline(never)
    private static func join16(
        _ p0: UnsafePointer<UInt8>,
        _ p1: UnsafePointer<UInt8>,
        count: Int,
        by: UInt16,
        into d: UnsafeMutableRawPointer
    ) {
        for i in 0..<count {
            let r = UInt16(p0[i]) &<< 8 | UInt16(p1[i])
            let v = (r &>> by) | (r &<< ((16 &- by) & 15))
            d.storeBytes(of: v.littleEndian, toByteOffset: 2 * i, as: UInt16.self)
        }
    }

    @inline(never)
    private static func join32(
        _ p0: UnsafePointer<UInt8>,
        _ p1: UnsafePointer<UInt8>,
        _ p2: UnsafePointer<UInt8>,
        _ p3: UnsafePointer<UInt8>,
        count: Int,
        by: UInt32,
        into d: UnsafeMutableRawPointer
    ) {
        for i in 0..<count {
            let r = UInt32(p0[i]) &<< 24 | UInt32(p1[i]) &<< 16 | UInt32(p2[i]) &<< 8 | UInt32(p3[i])
            let v = (r &>> by) | (r &<< ((32 &- by) & 31))
            d.storeBytes(of: v.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
        }
    }

    // MARK: Differences against a reference (the delta codec)
    //
    // Each element is mapped to an integer whose order is the float's order (sign-magnitude to
    // offset binary: positive values get the top bit set, negative ones are inverted), and the
    // child's integer minus the reference's, wrapping, is zigzag-encoded. A fine-tune's small
    // changes become small numbers, even where a value crosses a power of two, so the planes of
    // the result are mostly zero bytes.

    /// `target = zigzag(ordered(target) − ordered(reference))`, element by element.
    static func subtract(_ target: UnsafeMutableRawBufferPointer, reference: UnsafeRawBufferPointer, elementSize: Int) {
        let t = target.baseAddress!
        let r = reference.baseAddress!
        if elementSize == 2 {
            for i in 0..<(target.count / 2) {
                let a = ordered16(t.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                let b = ordered16(r.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                let d = Int16(bitPattern: a &- b)
                t.storeBytes(of: UInt16(bitPattern: (d &<< 1) ^ (d &>> 15)), toByteOffset: 2 * i, as: UInt16.self)
            }
        } else {
            for i in 0..<(target.count / 4) {
                let a = ordered32(t.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                let b = ordered32(r.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                let d = Int32(bitPattern: a &- b)
                t.storeBytes(of: UInt32(bitPattern: (d &<< 1) ^ (d &>> 31)), toByteOffset: 4 * i, as: UInt32.self)
            }
        }
    }

    /// The inverse of ``subtract(_:reference:elementSize:)``.
    static func add(_ target: UnsafeMutableRawBufferPointer, reference: UnsafeRawBufferPointer, elementSize: Int) {
        let t = target.baseAddress!
        let r = reference.baseAddress!
        if elementSize == 2 {
            for i in 0..<(target.count / 2) {
                let z = t.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
                let d = (z &>> 1) ^ (0 &- (z & 1))
                let b = ordered16(r.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                t.storeBytes(of: unordered16(b &+ d), toByteOffset: 2 * i, as: UInt16.self)
            }
        } else {
            for i in 0..<(target.count / 4) {
                let z = t.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
                let d = (z &>> 1) ^ (0 &- (z & 1))
                let b = ordered32(r.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                t.storeBytes(of: unordered32(b &+ d), toByteOffset: 4 * i, as: UInt32.self)
            }
        }
    }

    @inline(__always) private static func ordered16(_ v: UInt16) -> UInt16 { v & 0x8000 != 0 ? ~v : v | 0x8000 }
    @inline(__always) private static func unordered16(_ u: UInt16) -> UInt16 { u & 0x8000 != 0 ? u & 0x7FFF : ~u }
    @inline(__always) private static func ordered32(_ v: UInt32) -> UInt32 {
        v & 0x8000_0000 != 0 ? ~v : v | 0x8000_0000
    }
    @inline(__always) private static func unordered32(_ u: UInt32) -> UInt32 {
        u & 0x8000_0000 != 0 ? u & 0x7FFF_FFFF : ~u
    }
}
