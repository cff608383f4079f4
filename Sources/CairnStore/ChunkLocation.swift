import Digest

/// Where a stored chunk lives: the value of the `chunks` database (little-endian: pack id u64 ·
/// record offset u64 · stored length u32 · raw length u32 · codec u8 — 25 bytes — followed, for a
/// delta chunk, by the 32-byte id of its reference chunk: 57 bytes).
struct ChunkLocation: Sendable, Equatable {
    var packID: UInt64
    /// Offset of the chunk's record header in the pack; its data follows the 48-byte header.
    var offset: UInt64
    var storedLength: UInt32
    var rawLength: UInt32
    var codecRaw: UInt8
    /// For a delta chunk: the chunk it is stored against (never itself a delta).
    var reference: SHA256Digest?

    static let encodedSize = 25
    static let encodedSizeWithReference = 57

    var dataOffset: Int64 { Int64(offset) + Int64(PackFormat.recordHeaderSize) }
    /// Bytes of the record in the pack: header plus stored data.
    var recordLength: Int { PackFormat.recordHeaderSize + Int(storedLength) }

    /// The index value.
    func encoded() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: reference == nil ? Self.encodedSize : Self.encodedSizeWithReference)
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            p.storeBytes(of: packID.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: offset.littleEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: storedLength.littleEndian, toByteOffset: 16, as: UInt32.self)
            p.storeBytes(of: rawLength.littleEndian, toByteOffset: 20, as: UInt32.self)
            p.storeBytes(of: codecRaw, toByteOffset: 24, as: UInt8.self)
            reference?.store(to: p + 25)
        }
        return out
    }

    init(
        packID: UInt64,
        offset: UInt64,
        storedLength: UInt32,
        rawLength: UInt32,
        codecRaw: UInt8,
        reference: SHA256Digest? = nil
    ) {
        self.packID = packID
        self.offset = offset
        self.storedLength = storedLength
        self.rawLength = rawLength
        self.codecRaw = codecRaw
        self.reference = reference
    }

    /// Reads an index value; nil when it is malformed: not 25 or 57 bytes, a reference on a chunk
    /// that is not a delta (or none on one that is), or lengths no chunk of this store can have
    /// (raw bytes over `maxChunk`, stored bytes over twice that) — a damaged index must not make a
    /// read reserve or address more than a chunk.
    init?(_ b: UnsafeRawBufferPointer, maxChunk: Int) {
        guard b.count == Self.encodedSize || b.count == Self.encodedSizeWithReference else { return nil }
        packID = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        offset = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        storedLength = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        rawLength = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        codecRaw = b[24]
        reference =
            b.count == Self.encodedSizeWithReference
            ? SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[25..<57])) : nil
        // A delta chunk has a reference and nothing else has one.
        guard (codecRaw == Codec.delta.rawValue) == (reference != nil) else { return nil }
        guard Int(rawLength) <= maxChunk, Int(storedLength) <= 2 * maxChunk else { return nil }
    }
}

extension SHA256Digest {
    /// The id an index key holds; nil when the key is not 32 bytes (a damaged index).
    init?(indexKey key: UnsafeRawBufferPointer) {
        guard key.count == 32 else { return nil }
        self.init(bytes: key)
    }
}
