/// Where a stored chunk lives: the value of the `chunks` database (25 bytes, little-endian:
/// pack id u64 · record offset u64 · stored length u32 · raw length u32 · codec u8).
public struct ChunkLocation: Sendable, Equatable {
    public var packID: UInt64
    /// Offset of the chunk's record header in the pack; its data follows the 48-byte header.
    public var offset: UInt64
    public var storedLength: UInt32
    public var rawLength: UInt32
    public var codecRaw: UInt8

    static let encodedSize = 25

    var dataOffset: Int64 { Int64(offset) + Int64(PackFormat.recordHeaderSize) }
    /// Bytes of the record in the pack: header plus stored data.
    var recordLength: Int { PackFormat.recordHeaderSize + Int(storedLength) }

    func encode(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: packID.littleEndian, toByteOffset: 0, as: UInt64.self)
        p.storeBytes(of: offset.littleEndian, toByteOffset: 8, as: UInt64.self)
        p.storeBytes(of: storedLength.littleEndian, toByteOffset: 16, as: UInt32.self)
        p.storeBytes(of: rawLength.littleEndian, toByteOffset: 20, as: UInt32.self)
        p.storeBytes(of: codecRaw, toByteOffset: 24, as: UInt8.self)
    }

    init(packID: UInt64, offset: UInt64, storedLength: UInt32, rawLength: UInt32, codecRaw: UInt8) {
        self.packID = packID
        self.offset = offset
        self.storedLength = storedLength
        self.rawLength = rawLength
        self.codecRaw = codecRaw
    }

    init?(_ b: UnsafeRawBufferPointer) {
        guard b.count == Self.encodedSize else { return nil }
        packID = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        offset = UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        storedLength = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 16, as: UInt32.self))
        rawLength = UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 20, as: UInt32.self))
        codecRaw = b[24]
    }
}
