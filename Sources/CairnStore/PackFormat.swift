import Digest

/// The layout of a pack file. All integers are little-endian. See docs/storage-format.md.
///
/// ```
/// header   16 B   "CAIRNPAK" · version u32 (1) · reserved u32 (0)
/// record   48 B   "CREC" · codec u8 · 3 × 0 · raw_length u32 · stored_length u32 · chunk id [32]
///          stored_length bytes of chunk data
/// …        more records
/// toc      56 B per record, in file order:
///                 chunk id [32] · record offset u64 · raw_length u32 · stored_length u32 · codec u8 · 7 × 0
/// trailer  64 B   toc offset u64 · record count u64 · SHA-256 of the toc [32] · pack id u64 · "CAIRNEND"
/// ```
enum PackFormat {
    static let headerMagic: [UInt8] = Array("CAIRNPAK".utf8)
    static let trailerMagic: [UInt8] = Array("CAIRNEND".utf8)
    static let recordMagic: UInt32 = 0x4345_5243  // "CREC" read as little-endian
    static let version: UInt32 = 1
    static let headerSize = 16
    static let recordHeaderSize = 48
    static let tocEntrySize = 56
    static let trailerSize = 64

    /// The file name of a pack: 16 lower-case hex digits of its id.
    static func fileName(_ id: UInt64) -> String {
        let hex = String(id, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex + ".pack"
    }

    /// The path of a pack under the store's `packs/` directory: `packs/ab/abcdef0123456789.pack`.
    static func relativePath(_ id: UInt64) -> String {
        let name = fileName(id)
        return "packs/\(name.prefix(2))/\(name)"
    }

    static func writeHeader(to p: UnsafeMutableRawPointer) {
        headerMagic.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: 8) }
        p.storeBytes(of: version.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
    }

    static func writeRecordHeader(
        to p: UnsafeMutableRawPointer,
        id: SHA256Digest,
        codec: Codec,
        rawLength: Int,
        storedLength: Int
    ) {
        p.storeBytes(of: recordMagic.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: UInt32(codec.rawValue).littleEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: UInt32(rawLength).littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(storedLength).littleEndian, toByteOffset: 12, as: UInt32.self)
        id.store(to: p + 16)
    }

    /// A record header as read back from a pack.
    struct RecordHeader: Equatable {
        var id: SHA256Digest
        var codecRaw: UInt8
        var rawLength: Int
        var storedLength: Int
    }

    static func readRecordHeader(_ b: UnsafeRawBufferPointer) -> RecordHeader? {
        guard b.count >= recordHeaderSize,
            UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) == recordMagic
        else { return nil }
        return RecordHeader(
            id: SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[16..<48])),
            codecRaw: b[4],
            rawLength: Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self))),
            storedLength: Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        )
    }

    /// One entry of a pack's table of contents.
    struct TOCEntry: Equatable {
        var id: SHA256Digest
        var offset: UInt64
        var rawLength: UInt32
        var storedLength: UInt32
        var codecRaw: UInt8
    }

    static func encodeTOC(_ entries: [TOCEntry]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: entries.count * tocEntrySize)
        out.withUnsafeMutableBytes { raw in
            for (i, e) in entries.enumerated() {
                let p = raw.baseAddress! + i * tocEntrySize
                e.id.store(to: p)
                p.storeBytes(of: e.offset.littleEndian, toByteOffset: 32, as: UInt64.self)
                p.storeBytes(of: e.rawLength.littleEndian, toByteOffset: 40, as: UInt32.self)
                p.storeBytes(of: e.storedLength.littleEndian, toByteOffset: 44, as: UInt32.self)
                p.storeBytes(of: e.codecRaw, toByteOffset: 48, as: UInt8.self)
            }
        }
        return out
    }

    static func decodeTOC(_ b: UnsafeRawBufferPointer) -> [TOCEntry] {
        let n = b.count / tocEntrySize
        return (0..<n).map { i in
            let base = i * tocEntrySize
            return TOCEntry(
                id: SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[base..<base + 32])),
                offset: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: base + 32, as: UInt64.self)),
                rawLength: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: base + 40, as: UInt32.self)),
                storedLength: UInt32(littleEndian: b.loadUnaligned(fromByteOffset: base + 44, as: UInt32.self)),
                codecRaw: b[base + 48]
            )
        }
    }

    struct Trailer: Equatable {
        var tocOffset: UInt64
        var count: UInt64
        var tocDigest: SHA256Digest
        var packID: UInt64
    }

    static func encodeTrailer(_ t: Trailer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: trailerSize)
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            p.storeBytes(of: t.tocOffset.littleEndian, toByteOffset: 0, as: UInt64.self)
            p.storeBytes(of: t.count.littleEndian, toByteOffset: 8, as: UInt64.self)
            t.tocDigest.store(to: p + 16)
            p.storeBytes(of: t.packID.littleEndian, toByteOffset: 48, as: UInt64.self)
            trailerMagic.withUnsafeBytes { (p + 56).copyMemory(from: $0.baseAddress!, byteCount: 8) }
        }
        return out
    }

    static func decodeTrailer(_ b: UnsafeRawBufferPointer) -> Trailer? {
        guard b.count == trailerSize, Array(b[56..<64]) == trailerMagic else { return nil }
        return Trailer(
            tocOffset: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
            count: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
            tocDigest: SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[16..<48])),
            packID: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: 48, as: UInt64.self))
        )
    }
}
