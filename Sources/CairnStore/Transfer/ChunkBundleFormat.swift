import Digest

// The chunk bundle: the format in which a batch of chunks moves between stores.

/// A batch of chunks on the wire. Integers are little-endian.
///
/// ```
/// header   16 B   "CAIRNCB1" · chunk count u32 · reserved u32 (0)
/// entry    44 B   chunk id [32] · codec u8 · element size u8 · flags u8 · 0 · raw length u32 · stored length u32
///          with flags bit 0: the id of a reference chunk [32]
///          stored length bytes: the raw bytes (codec 0), one zstd frame of them (codec 1), or
///          their byte planes (codec 2, ``ByteGrouping``)
/// …        more entries
/// ```
///
/// The element size (2 or 4 for float tensors, else 0) and the reference (the same slice of a
/// parent version) are hints for the receiving store's codecs: it stores float data as byte
/// planes, and slices of a fine-tune as deltas against their reference, as a local push would.
/// Deltas never travel (they depend on their reference): ``Store/export(_:into:)``
/// decodes them and sends their byte planes.
///
/// A chunk's id is the SHA-256 of its raw bytes. A receiver never trusts it: ``Store/storeChunks(bundle:compressRaw:onVerified:)``
/// decodes and re-hashes every chunk before anything is written.
public enum ChunkBundle {
    /// The first 8 bytes of every bundle: "CAIRNCB1".
    public static let magic: [UInt8] = Array("CAIRNCB1".utf8)
    /// Bytes of the bundle header.
    public static let headerSize = 16
    /// Bytes of an entry header without a reference.
    public static let entryHeaderSize = 44

    /// One chunk of a bundle: where its stored bytes sit in the bundle, and its hints.
    package struct Entry: Sendable, Equatable {
        package var id: SHA256Digest
        package var codecRaw: UInt8
        package var rawLength: Int
        /// Offset of the stored bytes in the bundle.
        package var dataOffset: Int
        package var storedLength: Int
        /// Bytes per float element (2, 4), or 0.
        package var elementSize: Int
        /// The chunk to store this one as a delta against, if any.
        package var reference: SHA256Digest?
    }

    /// Bytes a bundle of chunks with these stored lengths (and no references) takes.
    public static func size(storedLengths: some Sequence<Int>) -> Int {
        storedLengths.reduce(headerSize) { $0 + entryHeaderSize + $1 }
    }

    /// Bytes of an entry's header (with its reference, if any).
    package static func entryHeaderSize(hasReference: Bool) -> Int { entryHeaderSize + (hasReference ? 32 : 0) }

    /// Writes the bundle header at `p`.
    package static func writeHeader(count: Int, to p: UnsafeMutableRawPointer) {
        magic.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: 8) }
        p.storeBytes(of: UInt32(count).littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
    }

    /// Writes an entry header at `p` (and the reference after it); the stored bytes follow.
    /// Returns the header's size.
    @discardableResult
    package static func writeEntryHeader(
        id: SHA256Digest,
        codec: Codec,
        rawLength: Int,
        storedLength: Int,
        elementSize: Int = 0,
        reference: SHA256Digest? = nil,
        to p: UnsafeMutableRawPointer
    ) -> Int {
        id.store(to: p)
        p.storeBytes(of: codec.rawValue, toByteOffset: 32, as: UInt8.self)
        p.storeBytes(of: UInt8(elementSize), toByteOffset: 33, as: UInt8.self)
        p.storeBytes(of: UInt8(reference == nil ? 0 : 1), toByteOffset: 34, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: 35, as: UInt8.self)
        p.storeBytes(of: UInt32(rawLength).littleEndian, toByteOffset: 36, as: UInt32.self)
        p.storeBytes(of: UInt32(storedLength).littleEndian, toByteOffset: 40, as: UInt32.self)
        if let reference { reference.store(to: p + entryHeaderSize) }
        return entryHeaderSize(hasReference: reference != nil)
    }

    /// Parses a bundle's structure (not its contents: nothing is decoded or hashed here).
    ///
    /// - Parameter maxChunk: the largest raw length accepted (the store's maximum chunk size).
    /// - Throws: ``CairnStoreError`` with `.invalidArgument` for a malformed bundle, a chunk larger
    ///   than `maxChunk`, or an unknown codec.
    /// With `allowingDeltas`, entries may also be deltas as a store keeps them (codec delta: the
    /// reference's id, then the byte planes of the difference), for a receiver that holds the
    /// references (``Store/planExport(_:maxBytes:sendingDeltas:)``).
    package static func parse(
        _ b: UnsafeRawBufferPointer,
        maxChunk: Int,
        allowingDeltas: Bool = false
    ) throws -> [Entry] {
        func bad(_ what: String) -> CairnStoreError {
            CairnStoreError(.invalidArgument, "malformed chunk bundle: \(what)")
        }
        guard b.count >= headerSize, Array(b[0..<8]) == magic else { throw bad("bad magic") }
        let count = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        guard count <= (b.count - headerSize) / entryHeaderSize else { throw bad("truncated") }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var at = headerSize
        for _ in 0..<count {
            guard at + entryHeaderSize <= b.count else { throw bad("truncated") }
            let id = SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[at..<at + 32]))
            let codec = b[at + 32]
            let elementSize = Int(b[at + 33])
            let flags = b[at + 34]
            let raw = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at + 36, as: UInt32.self)))
            let stored = Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: at + 40, as: UInt32.self)))
            at += entryHeaderSize
            guard
                codec == Codec.raw.rawValue || codec == Codec.zstd.rawValue || codec == Codec.byteGrouped.rawValue
                    || (allowingDeltas && codec == Codec.delta.rawValue)
            else {
                throw bad(
                    "chunk \(id.shortHex)… uses codec \(codec); bundles carry raw, zstd or byte-plane chunks only"
                )
            }
            guard elementSize == 0 || elementSize == 2 || elementSize == 4, flags & ~1 == 0 else {
                throw bad("chunk \(id.shortHex)… has an unknown element size or flag")
            }
            var reference: SHA256Digest?
            if flags & 1 != 0 {
                guard at + 32 <= b.count else { throw bad("truncated") }
                reference = SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[at..<at + 32]))
                at += 32
            }
            guard raw <= maxChunk else {
                throw bad("chunk \(id.shortHex)… is \(raw) bytes, more than the maximum chunk size \(maxChunk)")
            }
            guard stored <= b.count - at else { throw bad("truncated data of chunk \(id.shortHex)…") }
            entries.append(
                Entry(
                    id: id,
                    codecRaw: codec,
                    rawLength: raw,
                    dataOffset: at,
                    storedLength: stored,
                    elementSize: elementSize,
                    reference: reference
                )
            )
            at += stored
        }
        guard at == b.count else { throw bad("trailing bytes") }
        return entries
    }
}
