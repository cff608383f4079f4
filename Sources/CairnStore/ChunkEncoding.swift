import Digest
import Zstd

// How a new chunk is encoded for a pack: the one rule for pushes and received bundles.

/// How a chunk is stored in a pack: its codec, the length of its stored bytes, and for a delta
/// the chunk it is stored against.
struct StoredForm: Sendable, Equatable {
    var codec: Codec
    var length: Int
    var reference: SHA256Digest? = nil
}

extension Store {
    /// Room to reserve for ``encodeForStore(_:elementSize:reference:into:_:)`` of `count` bytes.
    static func encodingRoom(_ count: Int) -> Int {
        Swift.max(ByteGrouping.bound(count, elementSize: 4) + 32, zstdCompressBound(count), count)
    }

    /// Encodes a new chunk in the smallest form tried — the one rule for pushes and uploads: a delta
    /// against `reference` (or its own reference, so chains stay one deep) when that is under 0.6 of
    /// the raw size, else the smaller of that delta and byte planes for float data (`elementSize` 2
    /// or 4), or zstd for anything else; raw when nothing is smaller. A reference that is not stored
    /// or cannot be read is ignored. `slot` needs room for ``ByteGrouping/bound(_:elementSize:)`` + 32.
    func encodeForStore(
        _ bytes: UnsafeRawBufferPointer,
        elementSize: Int,
        reference: SHA256Digest?,
        into slot: UnsafeMutableRawBufferPointer,
        _ ctx: WorkerContext
    ) throws -> StoredForm {
        var best = bytes.count
        var form = StoredForm(codec: .raw, length: bytes.count)
        if elementSize != 0, let reference,
            let location = try lmdb({ try environment.read { try self.location(of: reference, in: $0) } })
        {
            let base = location.reference ?? reference  // chains stay one deep
            if let baseBytes = try? loadReference(base, length: bytes.count, context: ctx) {
                let input = UnsafeMutableRawBufferPointer(rebasing: ctx.deltaInput.memory[0..<bytes.count])
                input.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                ByteGrouping.subtract(input, reference: baseBytes, elementSize: elementSize)
                let n = try ByteGrouping.encode(
                    UnsafeRawBufferPointer(input),
                    elementSize: elementSize,
                    rotate: false,
                    into: UnsafeMutableRawBufferPointer(rebasing: slot[32...]),
                    planes: ctx.planes.memory,
                    compressor: ctx.planeCompressor
                )
                if 32 + n < best {
                    base.store(to: slot.baseAddress!)
                    best = 32 + n
                    form = StoredForm(codec: .delta, length: best, reference: base)
                }
                // As in ingest: a delta well below the size byte planes reach is kept without trying them.
                if best < bytes.count * 6 / 10 { return form }
            }
        }
        if elementSize != 0 {
            let out = UnsafeMutableRawBufferPointer(
                rebasing: ctx.deltaOutput.memory[0..<ByteGrouping.bound(bytes.count, elementSize: elementSize)]
            )
            let n = try ByteGrouping.encode(
                bytes,
                elementSize: elementSize,
                into: out,
                planes: ctx.planes.memory,
                compressor: ctx.planeCompressor
            )
            if n < best {
                slot.baseAddress!.copyMemory(from: out.baseAddress!, byteCount: n)
                best = n
                form = StoredForm(codec: .byteGrouped, length: n)
            }
        } else {
            let n = try ctx.compressor.compress(bytes, into: slot)
            if n < best {
                best = n
                form = StoredForm(codec: .zstd, length: n)
            }
        }
        if form.codec == .raw, bytes.count > 0 {
            slot.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        return form
    }
}
