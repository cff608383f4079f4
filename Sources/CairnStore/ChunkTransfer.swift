import Digest
import Foundation
import Glibc
import Synchronization
import Zstd

// Moving chunks between stores (the server's chunk protocol): which chunks are missing, chunk
// bundles (the wire format of a batch of chunks), storing a bundle after verifying every chunk,
// exporting stored chunks as a bundle, committing a manifest whose chunks are all present, and
// scanning a tree into a manifest without storing anything (what a remote push sends).

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
    public static let magic: [UInt8] = Array("CAIRNCB1".utf8)
    public static let headerSize = 16
    public static let entryHeaderSize = 44

    /// One chunk of a bundle: where its stored bytes sit in the bundle, and its hints.
    public struct Entry: Sendable, Equatable {
        public var id: SHA256Digest
        public var codecRaw: UInt8
        public var rawLength: Int
        /// Offset of the stored bytes in the bundle.
        public var dataOffset: Int
        public var storedLength: Int
        /// Bytes per float element (2, 4), or 0.
        public var elementSize: Int
        /// The chunk to store this one as a delta against, if any.
        public var reference: SHA256Digest?
    }

    /// Bytes a bundle of chunks with these stored lengths (and no references) takes.
    public static func size(storedLengths: some Sequence<Int>) -> Int {
        storedLengths.reduce(headerSize) { $0 + entryHeaderSize + $1 }
    }

    /// Bytes of an entry's header (with its reference, if any).
    public static func entryHeaderSize(hasReference: Bool) -> Int { entryHeaderSize + (hasReference ? 32 : 0) }

    /// Writes the bundle header at `p`.
    public static func writeHeader(count: Int, to p: UnsafeMutableRawPointer) {
        magic.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: 8) }
        p.storeBytes(of: UInt32(count).littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
    }

    /// Writes an entry header at `p` (and the reference after it); the stored bytes follow.
    /// Returns the header's size.
    @discardableResult
    public static func writeEntryHeader(
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
    public static func parse(_ b: UnsafeRawBufferPointer, maxChunk: Int, allowingDeltas: Bool = false) throws -> [Entry] {
        func bad(_ what: String) -> CairnStoreError { CairnStoreError(.invalidArgument, "malformed chunk bundle: \(what)") }
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
            guard codec == Codec.raw.rawValue || codec == Codec.zstd.rawValue || codec == Codec.byteGrouped.rawValue
                || (allowingDeltas && codec == Codec.delta.rawValue)
            else {
                throw bad("chunk \(id.shortHex)… uses codec \(codec); bundles carry raw, zstd or byte-plane chunks only")
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
                    id: id, codecRaw: codec, rawLength: raw, dataOffset: at, storedLength: stored, elementSize: elementSize,
                    reference: reference))
            at += stored
        }
        guard at == b.count else { throw bad("trailing bytes") }
        return entries
    }
}

/// A chunk of a local file to send: the file, where the chunk starts, its id and length.
public struct ChunkSource: Sendable, Equatable {
    public var path: String
    public var offset: Int64
    public var chunk: ChunkRef
    /// Hints for the receiver's codecs (see ``ChunkBundle``).
    public var elementSize: Int
    public var reference: SHA256Digest?

    public init(path: String, offset: Int64, chunk: ChunkRef, elementSize: Int = 0, reference: SHA256Digest? = nil) {
        self.path = path
        self.offset = offset
        self.chunk = chunk
        self.elementSize = elementSize
        self.reference = reference
    }
}

/// A tree chunked and hashed exactly as ``Store/stage(files:planner:progress:)`` would, with nothing
/// stored: its manifest, and where each chunk can be read again.
public struct ScannedTree: Sendable {
    public let manifest: Manifest
    /// Relative path → absolute path of each file.
    public let sources: [String: String]
    /// Codec hints of the plans' chunks: element size (float tensors) and delta reference.
    let hints: [SHA256Digest: (elementSize: Int, reference: SHA256Digest?)]

    /// The tree with the ids of chunks scanned without hashing filled in from `assigned` (by
    /// absolute path and offset, as in ``ChunkSource``), and their codec hints kept.
    ///
    /// - Throws: ``CairnStoreError`` `.invalidArgument` if a chunk has no id and none was assigned.
    public func assigning(_ assigned: [ChunkSource]) throws -> ScannedTree {
        var byPlace: [String: [Int64: ChunkSource]] = [:]
        for source in assigned { byPlace[source.path, default: [:]][source.offset] = source }
        var hints = self.hints
        var files: [FileEntry] = []
        for var file in manifest.files {
            let path = sources[file.path] ?? ""
            var offset: Int64 = 0
            for c in file.chunks.indices {
                if file.chunks[c].id == .zero {
                    guard let source = byPlace[path]?[offset], source.chunk.id != .zero else {
                        throw CairnStoreError(.invalidArgument, "\(file.path): no id for the chunk at \(offset)")
                    }
                    file.chunks[c].id = source.chunk.id
                    if source.elementSize != 0 || source.reference != nil, hints[source.chunk.id] == nil {
                        hints[source.chunk.id] = (source.elementSize, source.reference)
                    }
                }
                offset += Int64(file.chunks[c].length)
            }
            files.append(file)
        }
        return ScannedTree(manifest: Manifest(files: files), sources: sources, hints: hints)
    }

    /// Where each chunk of `ids` can be read (the first occurrence of each id).
    public func chunkSources(_ ids: Set<SHA256Digest>) -> [ChunkSource] {
        var out: [ChunkSource] = []
        var seen = Set<SHA256Digest>()
        for file in manifest.files {
            guard let path = sources[file.path] else { continue }
            var offset: Int64 = 0
            for chunk in file.chunks {
                if ids.contains(chunk.id), seen.insert(chunk.id).inserted {
                    let hint = hints[chunk.id]
                    out.append(
                        ChunkSource(
                            path: path, offset: offset, chunk: chunk, elementSize: hint?.elementSize ?? 0,
                            reference: hint?.reference))
                }
                offset += Int64(chunk.length)
            }
        }
        return out
    }
}

/// What ``Store/storeChunks(bundle:)`` did.
public struct ChunkStoreResult: Sendable, Equatable, Codable {
    /// Chunks in the bundle.
    public var received: Int
    /// Chunks added to the index (the others were already stored).
    public var newChunks: Int
    /// Raw bytes of the chunks added.
    public var newBytes: Int64
    /// Bytes of pack files written.
    public var storedBytes: Int64
    /// With ids assigned by the receiver: every chunk's id (hex), in bundle order.
    public var ids: [String]?

    public init(received: Int, newChunks: Int, newBytes: Int64, storedBytes: Int64, ids: [String]? = nil) {
        self.received = received
        self.newChunks = newChunks
        self.newBytes = newBytes
        self.storedBytes = storedBytes
        self.ids = ids
    }

    enum CodingKeys: String, CodingKey {
        case received, ids
        case newChunks = "new_chunks"
        case newBytes = "new_bytes"
        case storedBytes = "stored_bytes"
    }
}

/// Thrown by ``Store/commit(manifest:_:)`` when chunks the manifest references are not indexed
/// (never uploaded, or dropped by a garbage collection since): upload them and commit again.
public struct MissingChunksError: CodedError {
    /// The chunks that are not stored.
    public let ids: [SHA256Digest]

    public init(ids: [SHA256Digest]) { self.ids = ids }

    /// Always ``ErrorCode/missingChunks``.
    public var code: ErrorCode { .missingChunks }

    public var message: String {
        "\(ids.count) chunk\(ids.count == 1 ? " is" : "s are") not stored (first: \(ids.first?.hex ?? "")); upload \(ids.count == 1 ? "it" : "them") first"
    }
}

/// Serializes the "which chunks are new → write a pack → index it" section of ``Store/storeChunks(bundle:)``
/// within a process, so two uploads of overlapping chunks store each chunk once.
private let chunkIngestLock = Mutex(())

extension Store {
    /// A number that changes whenever anything commits to the index (in any process): a cache of
    /// values read from the index stays valid while it is unchanged.
    public func indexGeneration() throws -> Int {
        try lmdb { try environment.lastTransactionID() }
    }

    /// The ids among `ids` that are not indexed, in the order given (each once).
    public func missingChunks(_ ids: [SHA256Digest]) throws -> [SHA256Digest] {
        try lmdb {
            try environment.read { txn in
                var seen = Set<SHA256Digest>()
                var missing: [SHA256Digest] = []
                for id in ids where seen.insert(id).inserted {
                    if try !id.withUnsafeBytes({ try txn.contains(chunksDB, key: $0) }) { missing.append(id) }
                }
                return missing
            }
        }
    }

    /// Stores the chunks of a bundle (``ChunkBundle``): every chunk is decoded and its SHA-256
    /// checked against its id first, in parallel; if any does not match, nothing is stored.
    /// Chunks not yet indexed are then written to a new pack (fsynced) and indexed in one
    /// transaction, so they are durable before any manifest can reference them.
    ///
    /// zstd data that is smaller than the raw bytes is stored as received (it was just verified to
    /// decode to them); raw data is compressed with the store's level unless `compressRaw` is false
    /// (a bundle from a store that found those chunks incompressible).
    ///
    /// - Parameter onVerified: called with each chunk's raw bytes once they are verified, from
    ///   several threads at once (a pull writes them straight into its files, ``RestoreSession``).
    ///
    /// - Throws: ``CairnStoreError``: `.invalidArgument` for a malformed bundle, `.corruption` naming
    ///   the first chunk whose bytes do not match its id (nothing stored), `.io`.
    @discardableResult
    public func storeChunks(
        bundle: UnsafeRawBufferPointer,
        compressRaw: Bool = true,
        onVerified: ((SHA256Digest, UnsafeRawBufferPointer) throws -> Void)? = nil
    ) throws -> ChunkStoreResult {
        let verified = try verifyBundle(bundle, compressRaw: compressRaw, onVerified: onVerified)
        if verified.entries.isEmpty { return ChunkStoreResult(received: 0, newChunks: 0, newBytes: 0, storedBytes: 0) }
        return try chunkIngestLock.withLock { _ in
            let lease = try StoreLock.sharedPushLease(root: root)
            defer { withExtendedLifetime(lease) {} }
            // Chunks to write: not indexed, each once.
            let absent = Set(try missingChunks(verified.entries.map(\.id)))
            let writer = PackWriter(root: root, targetSize: config.packSize)
            do {
                _ = try verified.append(to: writer, bundle: bundle, where: { absent.contains($0) })
                try writer.finish()
            } catch {
                writer.abandon()
                throw error
            }
            let (newChunks, newBytes, storedBytes) = try indexWritten(writer)
            return ChunkStoreResult(
                received: verified.entries.count,
                newChunks: newChunks,
                newBytes: newBytes,
                storedBytes: storedBytes
            )
        }
    }

    /// Parses a bundle and verifies every chunk in parallel (see ``storeChunks(bundle:compressRaw:onVerified:)``).
    ///
    /// With `assignIDs`, an entry whose id is all zeros takes the SHA-256 of its bytes as its id
    /// (a sender that did not hash its chunks); any other id must still match.
    ///
    /// With `references`, entries may be deltas: each is rebuilt from the reference chunk
    /// `references` gives (its raw bytes, or nil when it has none), then verified like any chunk.
    /// With `unbuilt`, a delta that cannot be rebuilt is recorded there and left out (no
    /// `onVerified`), and the result cannot be staged; without it, it fails the bundle.
    func verifyBundle(
        _ bundle: UnsafeRawBufferPointer,
        compressRaw: Bool,
        assignIDs: Bool = false,
        decodeInto: ((SHA256Digest, Int) -> UnsafeMutableRawBufferPointer?)? = nil,
        references: ReferenceSource? = nil,
        unbuilt: UnbuiltDeltas? = nil,
        onVerified: ((SHA256Digest, UnsafeRawBufferPointer) throws -> Void)?
    ) throws -> VerifiedBundle {
        var entries = try ChunkBundle.parse(bundle, maxChunk: config.chunker.max, allowingDeltas: references != nil)
        let digests = UnsafeMutableBufferPointer<SHA256Digest>.allocate(capacity: Swift.max(entries.count, 1))
        digests.initialize(repeating: .zero)
        defer { digests.deallocate() }
        // Where each chunk's stored form goes when it is not the received bytes.
        var slots = [Int](repeating: -1, count: entries.count)
        var outputSize = 0
        // Deltas rebuilt here are kept as raw bytes in a slot, should the bundle be staged (their
        // references may not be stored); not when it never is.
        for (i, e) in entries.enumerated()
        where (compressRaw && e.codecRaw == Codec.raw.rawValue) || (e.codecRaw != Codec.raw.rawValue && e.codecRaw != Codec.delta.rawValue && e.storedLength >= e.rawLength)
            || (e.codecRaw == Codec.delta.rawValue && unbuilt == nil)
        {
            slots[i] = outputSize
            outputSize += Self.encodingRoom(e.rawLength)
        }
        let output = BufferPool.take(capacity: outputSize)
        let forms = UnsafeMutableBufferPointer<(codec: Codec, length: Int, reference: SHA256Digest?)>.allocate(
            capacity: Swift.max(entries.count, 1))
        let errors = FirstError()
        parallelFor(entries.count) { i in
            if errors.isSet { return }
            do {
                (forms[i], digests[i]) = try verifyEntry(
                    entries[i], bundle: bundle, slot: slots[i], output: output, assignID: assignIDs, decodeInto: decodeInto,
                    references: references, unbuilt: unbuilt, onVerified: onVerified)
            } catch {
                errors.record(error)
            }
        }
        do {
            try errors.rethrow()
        } catch {
            forms.deallocate()
            BufferPool.give(output)
            throw error
        }
        if assignIDs { for i in entries.indices { entries[i].id = digests[i] } }
        let hasDeltas = entries.contains { $0.codecRaw == Codec.delta.rawValue }
        return VerifiedBundle(entries: entries, slots: slots, output: output, forms: forms, stageable: unbuilt == nil || !hasDeltas)
    }

    /// Decodes and hashes one bundle entry; returns its stored form (writing it to `output` at `slot`
    /// when the received bytes are not kept). A compressed entry is decoded into the memory
    /// `decodeInto` gives for its id and raw length (exactly that long; else into scratch memory).
    private func verifyEntry(
        _ e: ChunkBundle.Entry,
        bundle: UnsafeRawBufferPointer,
        slot: Int,
        output: AlignedBuffer,
        assignID: Bool,
        decodeInto: ((SHA256Digest, Int) -> UnsafeMutableRawBufferPointer?)?,
        references: ReferenceSource? = nil,
        unbuilt: UnbuiltDeltas? = nil,
        onVerified: ((SHA256Digest, UnsafeRawBufferPointer) throws -> Void)?
    ) throws -> (form: (codec: Codec, length: Int, reference: SHA256Digest?), id: SHA256Digest) {
        let data = UnsafeRawBufferPointer(rebasing: bundle[e.dataOffset..<e.dataOffset + e.storedLength])
        func mismatch(_ what: String) -> CairnStoreError {
            var error = CairnStoreError(
                .corruption,
                "chunk \(e.id.hex) \(what); the whole batch was rejected and nothing was stored"
            )
            error.damagedChunk = e.id
            return error
        }
        return try workers.withContext { ctx in
            func target() -> UnsafeMutableRawBufferPointer {
                if let given = decodeInto?(e.id, e.rawLength), given.count == e.rawLength { return given }
                return UnsafeMutableRawBufferPointer(rebasing: ctx.scratch.memory[0..<e.rawLength])
            }
            let raw: UnsafeRawBufferPointer
            switch Codec(rawValue: e.codecRaw)! {
            case .raw:
                guard data.count == e.rawLength else {
                    throw mismatch("has \(data.count) bytes, expected \(e.rawLength)")
                }
                raw = data
            case .zstd:
                let target = target()
                let n: Int
                do {
                    n = try ctx.decompressor.decompress(data, into: target)
                } catch {
                    throw mismatch("cannot be decompressed (\(error))")
                }
                guard n == e.rawLength else { throw mismatch("decompresses to \(n) bytes, expected \(e.rawLength)") }
                raw = UnsafeRawBufferPointer(target)
            case .byteGrouped:
                let target = target()
                do {
                    try ByteGrouping.decode(data, into: target, planes: ctx.planes.memory, decompressor: ctx.decompressor)
                } catch {
                    throw mismatch("cannot be decoded (\(error))")
                }
                raw = UnsafeRawBufferPointer(target)
            case .delta:
                // Rebuilt from its reference, which must be held here; else left to be fetched
                // whole (with `unbuilt`) or failing the bundle.
                guard let references, data.count > 33 else { throw mismatch("is a delta, which was not asked for") }
                let referenceID = SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: data[0..<32]))
                func unusable(differs: Bool) throws -> (form: (codec: Codec, length: Int, reference: SHA256Digest?), id: SHA256Digest) {
                    guard let unbuilt else {
                        throw CairnStoreError(
                            .notFound,
                            "chunk \(e.id.hex) came as a delta against chunk \(referenceID.hex), which \(differs ? "does not rebuild it" : "is not held") here")
                    }
                    unbuilt.add(UnbuiltDelta(chunk: ChunkRef(id: e.id, length: UInt32(e.rawLength)), reference: referenceID, referenceDiffers: differs))
                    return ((.raw, 0, nil), e.id)
                }
                guard let base = references(referenceID, e.rawLength, ctx), base.count == e.rawLength else {
                    return try unusable(differs: false)
                }
                let target = target()
                do {
                    try Self.rebuildDelta(data, reference: base, into: target, context: ctx)
                } catch {
                    throw mismatch("cannot be decoded (\(error))")
                }
                ctx.hasher.update(UnsafeRawBufferPointer(target))
                guard ctx.hasher.finalize() == e.id else { return try unusable(differs: true) }
                try onVerified?(e.id, UnsafeRawBufferPointer(target))
                // Kept as its raw bytes where the bundle may be staged (its reference may not be).
                if slot >= 0 { (output.memory.baseAddress! + slot).copyMemory(from: target.baseAddress!, byteCount: e.rawLength) }
                return ((.raw, e.rawLength, nil), e.id)
            default:
                throw mismatch("uses codec \(e.codecRaw), which bundles do not carry")
            }
            ctx.hasher.update(raw)
            let digest = ctx.hasher.finalize()
            guard digest == e.id || (assignID && e.id == .zero) else {
                throw mismatch("does not match its content (SHA-256 \(digest.shortHex)…)")
            }
            try onVerified?(digest, raw)
            // Kept as received: zstd smaller than raw, or raw when not asked to compress.
            if slot < 0 { return ((Codec(rawValue: e.codecRaw)!, data.count, nil), digest) }
            let room = UnsafeMutableRawBufferPointer(rebasing: output.memory[slot..<slot + Self.encodingRoom(e.rawLength)])
            return (try encodeForStore(raw, elementSize: e.elementSize, reference: e.reference, into: room, ctx), digest)
        }
    }

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
        _ bytes: UnsafeRawBufferPointer, elementSize: Int, reference: SHA256Digest?,
        into slot: UnsafeMutableRawBufferPointer, _ ctx: WorkerContext
    ) throws -> (codec: Codec, length: Int, reference: SHA256Digest?) {
        var best = bytes.count
        var form: (codec: Codec, length: Int, reference: SHA256Digest?) = (.raw, bytes.count, nil)
        if elementSize != 0, let reference, let location = try lmdb({ try environment.read { try self.location(of: reference, in: $0) } }) {
            let base = location.reference ?? reference  // chains stay one deep
            if let baseBytes = try? loadReference(base, length: bytes.count, context: ctx) {
                let input = UnsafeMutableRawBufferPointer(rebasing: ctx.deltaInput.memory[0..<bytes.count])
                input.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
                ByteGrouping.subtract(input, reference: baseBytes, elementSize: elementSize)
                let n = try ByteGrouping.encode(
                    UnsafeRawBufferPointer(input), elementSize: elementSize, rotate: false,
                    into: UnsafeMutableRawBufferPointer(rebasing: slot[32...]), planes: ctx.planes.memory,
                    compressor: ctx.planeCompressor)
                if 32 + n < best {
                    base.store(to: slot.baseAddress!)
                    best = 32 + n
                    form = (.delta, best, base)
                }
                // As in ingest: a delta well below the size byte planes reach is kept without trying them.
                if best < bytes.count * 6 / 10 { return form }
            }
        }
        if elementSize != 0 {
            let out = UnsafeMutableRawBufferPointer(
                rebasing: ctx.deltaOutput.memory[0..<ByteGrouping.bound(bytes.count, elementSize: elementSize)])
            let n = try ByteGrouping.encode(
                bytes, elementSize: elementSize, into: out, planes: ctx.planes.memory, compressor: ctx.planeCompressor)
            if n < best {
                slot.baseAddress!.copyMemory(from: out.baseAddress!, byteCount: n)
                best = n
                form = (.byteGrouped, n, nil)
            }
        } else {
            let n = try ctx.compressor.compress(bytes, into: slot)
            if n < best {
                best = n
                form = (.zstd, n, nil)
            }
        }
        if form.codec == .raw, bytes.count > 0 {
            slot.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
        }
        return form
    }

    /// Indexes what `writer` wrote, in one transaction (entries in key order; chunks another writer
    /// indexed meanwhile are skipped). Returns new chunks, their raw bytes, and bytes of packs recorded.
    func indexWritten(_ writer: PackWriter) throws -> (Int, Int64, Int64) {
        let sorted = writer.written.sorted { $0.id < $1.id }
        let now = Int64(Date().timeIntervalSince1970)
        return try lmdb {
            try environment.write { txn in
                var newChunks = 0
                var newBytes: Int64 = 0
                var usedPacks = Set<UInt64>()
                for entry in sorted {
                    let inserted = try entry.id.withUnsafeBytes { key -> Bool in
                        if try txn.contains(chunksDB, key: key) { return false }
                        try entry.location.encoded().withUnsafeBytes { try txn.put(chunksDB, key: key, value: $0) }
                        return true
                    }
                    if inserted {
                        newChunks += 1
                        newBytes += Int64(entry.location.rawLength)
                        usedPacks.insert(entry.location.packID)
                    }
                }
                var storedBytes: Int64 = 0
                for pack in writer.sealed.sorted(by: { $0.id < $1.id }) where usedPacks.contains(pack.id) {
                    let record = PackRecord(size: pack.size, chunkCount: UInt32(pack.chunkCount), createdAt: now)
                    try txn.put(packsDB, key: PackRecord.key(pack.id), value: record.encoded())
                    storedBytes += pack.size
                }
                return (newChunks, newBytes, storedBytes)
            }
        }
    }

    /// Chunks located for a bundle (``ChunkBundle``) by ``planExport(_:maxBytes:)``, sorted by
    /// where they are stored; ``export(_:into:)`` writes the bundle.
    public struct ChunkExport: Sendable {
        fileprivate let located: [(id: SHA256Digest, location: ChunkLocation)]
        /// The most bytes the bundle can take: a buffer of this size holds it.
        public let bound: Int
        /// Whether chunks stored as deltas travel as stored (for a receiver that holds their
        /// references) instead of decoded.
        public let sendsDeltas: Bool

        /// Whether a chunk travels as stored: raw, zstd and byte planes do, and deltas when the
        /// plan sends them; other deltas are decoded.
        fileprivate func sentAsStored(_ l: ChunkLocation) -> Bool {
            l.codecRaw == Codec.raw.rawValue || l.codecRaw == Codec.zstd.rawValue || l.codecRaw == Codec.byteGrouped.rawValue
                || (sendsDeltas && l.codecRaw == Codec.delta.rawValue)
        }
    }

    /// Locates the stored chunks `ids` (each once) for a bundle of at most `maxBytes`. With
    /// `sendingDeltas`, chunks stored as deltas go as stored: codec delta, their stored bytes being
    /// the reference's id and the byte planes of the difference (the receiver must hold the
    /// reference to decode them).
    ///
    /// - Throws: ``CairnStoreError``: `.notFound` naming the first chunk not stored,
    ///   `.invalidArgument` when the bundle could exceed `maxBytes`.
    public func planExport(_ ids: [SHA256Digest], maxBytes: Int, sendingDeltas: Bool = false) throws -> ChunkExport {
        var unique: [SHA256Digest] = []
        var seen = Set<SHA256Digest>()
        for id in ids where seen.insert(id).inserted { unique.append(id) }
        var located: [(id: SHA256Digest, location: ChunkLocation)] = []
        located.reserveCapacity(unique.count)
        try lmdb {
            try environment.read { txn in
                for id in unique {
                    guard let location = try location(of: id, in: txn) else {
                        throw CairnStoreError(.notFound, "chunk \(id.hex) is not stored")
                    }
                    located.append((id, location))
                }
            }
        }
        // At most: stored bytes as they are, decoded chunks no larger than raw (zstd or raw).
        let sendsAsStored = ChunkExport(located: [], bound: 0, sendsDeltas: sendingDeltas).sentAsStored
        let bound = ChunkBundle.size(
            storedLengths: located.map {
                sendsAsStored($0.location) ? Int($0.location.storedLength) : Int($0.location.rawLength)
            }
        )
        guard bound <= maxBytes else {
            throw CairnStoreError(
                .invalidArgument,
                "the chunks asked for take up to \(bound) bytes, more than the limit of \(maxBytes) per batch"
            )
        }
        located.sort { ($0.location.packID, $0.location.offset) < ($1.location.packID, $1.location.offset) }
        return ChunkExport(located: located, bound: bound, sendsDeltas: sendingDeltas)
    }

    /// Writes the bundle of `plan`'s chunks into `out` (at least `plan.bound` bytes); returns its
    /// size. Chunks stored raw, as zstd or as byte planes are sent as stored, without decoding them
    /// (the receiver verifies every chunk): their bytes are read from the packs straight into
    /// place. Chunks stored as deltas against a parent chunk are decoded, verified and sent as byte
    /// planes (or raw), after the others, so a bundle never depends on chunks the receiver may
    /// lack — unless the plan sends deltas as stored (``planExport(_:maxBytes:sendingDeltas:)``).
    /// Each record's header is checked against the index.
    ///
    /// - Throws: ``CairnStoreError``: `.corruption` for a damaged or truncated record.
    public func export(_ plan: ChunkExport, into out: UnsafeMutableRawBufferPointer) throws -> Int {
        precondition(out.count >= plan.bound, "an export buffer holds at least the plan's bound")
        let located = plan.located
        // Where each entry sent as stored begins (its header; the stored bytes follow); -1 for
        // entries decoded here, which follow the others.
        var positions = [Int](repeating: -1, count: located.count)
        var at = ChunkBundle.headerSize
        for (i, item) in located.enumerated() where plan.sentAsStored(item.location) {
            positions[i] = at
            at += ChunkBundle.entryHeaderSize + Int(item.location.storedLength)
        }
        // Spans of adjacent records in one pack, read with one scattered read each.
        var spans: [Range<Int>] = []
        var start = 0
        for i in 1...max(located.count, 1) where i <= located.count {
            if i < located.count {
                let a = located[i - 1].location
                let b = located[i].location
                let spanStart = Int64(located[start].location.offset)
                if a.packID == b.packID, Int64(b.offset) - (Int64(a.offset) + Int64(a.recordLength)) <= Self.largestGap,
                    Int64(b.offset) + Int64(b.recordLength) - spanStart <= Int64(Self.readSpan)
                {
                    continue
                }
            }
            spans.append(start..<i)
            start = i
        }
        // Decoded entries: codec and bytes.
        let decoded = UnsafeMutableBufferPointer<(codec: Codec, bytes: [UInt8])>.allocate(capacity: max(located.count, 1))
        decoded.initialize(repeating: (.raw, []))
        defer {
            decoded.deinitialize()
            decoded.deallocate()
        }
        // One span after the other: reading them is mostly copying from the page cache, and a
        // server answers several fetches at once (a pull keeps three on their way), so spreading
        // one over the cores only made it compete with the others (and, on one machine, with the
        // client decoding them: remote pull of base 0.41 -> 0.39 s when read in order).
        for span in spans {
            try exportSpan(located, range: span, positions: positions, out: out, decoded: decoded)
        }
        let p = out.baseAddress!
        ChunkBundle.writeHeader(count: located.count, to: p)
        for (i, item) in located.enumerated() where positions[i] < 0 {
            let entry = decoded[i]
            at += ChunkBundle.writeEntryHeader(
                id: item.id, codec: entry.codec, rawLength: Int(item.location.rawLength), storedLength: entry.bytes.count,
                to: p + at)
            entry.bytes.withUnsafeBytes {
                if $0.count > 0 { (p + at).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            }
            at += entry.bytes.count
        }
        return at
    }

    /// A plan's bundle as pieces to send in order, for a sender that copies file ranges to a
    /// socket itself (`sendfile`): the stored bytes of chunks sent as stored stay in their packs
    /// and are named by range; the rest — the bundle's header, the entries' headers, chunks decoded
    /// from deltas (as ``export(_:into:)`` decodes them) — is in ``bytes``. The bundle is the one
    /// ``export(_:into:)`` writes, byte for byte.
    public struct ExportPieces: Sendable {
        public enum Piece: Sendable, Equatable {
            /// A range of ``ExportPieces/bytes``.
            case bytes(Range<Int>)
            /// `length` bytes at `offset` of the pack open at ``ExportPieces/descriptors``[`file`].
            case pack(file: Int, offset: Int64, length: Int)
        }
        public let bytes: [UInt8]
        public let pieces: [Piece]
        /// Descriptors open on the packs the pieces name, owned by the caller, who closes them.
        public let descriptors: [Int32]
        /// Bytes of the whole bundle.
        public var size: Int {
            pieces.reduce(0) {
                switch $1 {
                case .bytes(let range): $0 + range.count
                case .pack(_, _, let length): $0 + length
                }
            }
        }
    }

    /// The pieces of `plan`'s bundle (``ExportPieces``). The packs' records are not read here:
    /// their bytes reach the receiver unchecked by the server, which verifies every chunk anyway;
    /// a pack shorter than its records is refused here.
    ///
    /// - Throws: ``CairnStoreError``: `.corruption` for a missing or truncated pack or a damaged
    ///   delta record.
    public func exportPieces(_ plan: ChunkExport) throws -> ExportPieces {
        let stored = plan.located.filter { plan.sentAsStored($0.location) }
        let others = plan.located.filter { !plan.sentAsStored($0.location) }
        // The bundle's header and the stored chunks' entry headers, then the chunks decoded here:
        // exported as a bundle of their own right after the entry headers, whose 16-byte header
        // the last entry headers then overwrite.
        let headerBytes = ChunkBundle.headerSize + stored.count * ChunkBundle.entryHeaderSize
        var bytes: [UInt8]
        if others.isEmpty {
            bytes = [UInt8](repeating: 0, count: headerBytes)
        } else {
            let sub = ChunkExport(
                located: others, bound: ChunkBundle.size(storedLengths: others.map { Int($0.location.rawLength) }), sendsDeltas: false)
            let at = headerBytes - ChunkBundle.headerSize
            bytes = try [UInt8](unsafeUninitializedCapacity: at + sub.bound) { buffer, count in
                count = 0
                let written = try export(sub, into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[at...])))
                count = at + written
            }
        }
        var descriptors: [Int32] = []
        var files: [UInt64: Int] = [:]
        var packEnds: [UInt64: Int64] = [:]
        do {
            var packStarts: [UInt64: Int64] = [:]
            for (_, location) in stored {
                let end = Int64(location.offset) + Int64(location.recordLength)
                packEnds[location.packID] = max(packEnds[location.packID] ?? 0, end)
                packStarts[location.packID] = min(packStarts[location.packID] ?? .max, Int64(location.offset))
                guard files[location.packID] == nil else { continue }
                // A descriptor of its own (not a duplicate of the shared one, which is set for
                // random reads): the kernel reads ahead for the sender where the bytes are not cached.
                let path = packPath(location.packID)
                let fd: Int32
                do {
                    fd = try FileIO.open(path, O_RDONLY)
                } catch {
                    throw CairnStoreError(.corruption, "pack \(PackFormat.fileName(location.packID)) is missing or unreadable: \(error)")
                }
                descriptors.append(fd)
                files[location.packID] = descriptors.count - 1
            }
            for (id, end) in packEnds {
                let fd = descriptors[files[id]!]
                var info = stat()
                guard fstat(fd, &info) == 0 else {
                    throw CairnStoreError.io("stat", path: packPath(id), errno: errno)
                }
                guard Int64(info.st_size) >= end else {
                    throw CairnStoreError(.corruption, "pack \(PackFormat.fileName(id)) is truncated: its records end at \(end), the file at \(info.st_size)")
                }
                let start = packStarts[id]!
                posix_fadvise(fd, off_t(start), off_t(end - start), POSIX_FADV_WILLNEED)
            }
        } catch {
            descriptors.forEach { close($0) }
            throw error
        }
        var pieces: [ExportPieces.Piece] = []
        pieces.reserveCapacity(2 * stored.count + 2)
        bytes.withUnsafeMutableBytes { out in
            let p = out.baseAddress!
            ChunkBundle.writeHeader(count: plan.located.count, to: p)
            var at = ChunkBundle.headerSize
            var from = 0
            for (id, location) in stored {
                at += ChunkBundle.writeEntryHeader(
                    id: id, codec: Codec(rawValue: location.codecRaw)!, rawLength: Int(location.rawLength),
                    storedLength: Int(location.storedLength), to: p + at)
                pieces.append(.bytes(from..<at))
                from = at
                pieces.append(
                    .pack(
                        file: files[location.packID]!, offset: Int64(location.offset) + Int64(PackFormat.recordHeaderSize),
                        length: Int(location.storedLength)))
            }
            at = out.count  // the decoded chunks, if any, follow
            if at > from { pieces.append(.bytes(from..<at)) }
        }
        countRead(stored.reduce(0) { $0 + Int($1.location.storedLength) })
        return ExportPieces(bytes: bytes, pieces: pieces, descriptors: descriptors)
    }

    /// The stored chunks `ids` as a bundle (``planExport(_:maxBytes:)`` and ``export(_:into:)``).
    public func exportChunks(_ ids: [SHA256Digest], maxBytes: Int) throws -> [UInt8] {
        let plan = try planExport(ids, maxBytes: maxBytes)
        return try [UInt8](unsafeUninitializedCapacity: plan.bound) { buffer, count in
            count = 0
            count = try export(plan, into: UnsafeMutableRawBufferPointer(buffer))
        }
    }

    /// Largest gap between two records read with one scattered read.
    private static let largestGap = 4096

    /// Reads the records `range` of `located` (adjacent in one pack) with one scattered read: the
    /// stored bytes of chunks sent as stored go to their place in `out`, their headers aside;
    /// records to decode go aside whole and are decoded into `decoded`.
    private func exportSpan(
        _ located: [(id: SHA256Digest, location: ChunkLocation)],
        range: Range<Int>,
        positions: [Int],
        out: UnsafeMutableRawBufferPointer,
        decoded: UnsafeMutableBufferPointer<(codec: Codec, bytes: [UInt8])>
    ) throws {
        let first = located[range.lowerBound].location
        let spanStart = Int64(first.offset)
        let headerSize = PackFormat.recordHeaderSize
        // Aside: one gap, the headers, the records to decode.
        let decodedBytes = range.reduce(0) { positions[$1] < 0 ? $0 + located[$1].location.recordLength : $0 }
        let headersAt = Self.largestGap
        let recordsAt = headersAt + range.count * headerSize
        let aside = UnsafeMutableRawBufferPointer.allocate(byteCount: recordsAt + decodedBytes, alignment: 16)
        defer { aside.deallocate() }
        // Where each record's header was read to.
        var headerAt: [Int] = []
        headerAt.reserveCapacity(range.count)
        var segments: [UnsafeMutableRawBufferPointer] = []
        segments.reserveCapacity(range.count * 2 + 1)
        var next = spanStart
        var asideRecord = recordsAt
        for (k, i) in range.enumerated() {
            let loc = located[i].location
            let gap = Int(Int64(loc.offset) - next)
            if gap > 0 { segments.append(UnsafeMutableRawBufferPointer(rebasing: aside[0..<gap])) }
            if positions[i] >= 0 {
                let header = headersAt + k * headerSize
                let data = positions[i] + ChunkBundle.entryHeaderSize
                segments.append(UnsafeMutableRawBufferPointer(rebasing: aside[header..<header + headerSize]))
                segments.append(UnsafeMutableRawBufferPointer(rebasing: out[data..<data + Int(loc.storedLength)]))
                headerAt.append(header)
            } else {
                segments.append(UnsafeMutableRawBufferPointer(rebasing: aside[asideRecord..<asideRecord + loc.recordLength]))
                headerAt.append(asideRecord)
                asideRecord += loc.recordLength
            }
            next = Int64(loc.offset) + Int64(loc.recordLength)
        }
        let got = try readPack(first.packID, into: segments, at: spanStart)
        try workers.withContext { ctx in
            for (k, i) in range.enumerated() {
                let (id, loc) = located[i]
                func damaged(_ what: String) -> CairnStoreError {
                    CairnStoreError(.corruption, "chunk \(id.hex) \(what) in pack \(PackFormat.fileName(loc.packID))")
                }
                guard Int64(loc.offset) + Int64(loc.recordLength) - spanStart <= Int64(got) else {
                    throw damaged("is cut off: its pack is truncated")
                }
                let header = UnsafeRawBufferPointer(rebasing: aside[headerAt[k]..<headerAt[k] + headerSize])
                guard let read = PackFormat.readRecordHeader(header), read.id == id,
                    read.rawLength == Int(loc.rawLength),
                    read.storedLength == Int(loc.storedLength), read.codecRaw == loc.codecRaw
                else { throw damaged("does not match its record") }
                if positions[i] >= 0 {
                    ChunkBundle.writeEntryHeader(
                        id: id, codec: Codec(rawValue: loc.codecRaw)!, rawLength: Int(loc.rawLength),
                        storedLength: Int(loc.storedLength), to: out.baseAddress! + positions[i])
                    continue
                }
                let record = UnsafeRawBufferPointer(rebasing: aside[headerAt[k]..<headerAt[k] + loc.recordLength])
                let rawLength = Int(loc.rawLength)
                let target = UnsafeMutableRawBufferPointer(rebasing: ctx.scratch.memory[0..<rawLength])
                try decodeRecord(
                    record,
                    expected: ChunkRef(id: id, length: loc.rawLength),
                    location: loc,
                    into: target,
                    context: ctx
                ) {
                    CairnStoreError(.corruption, "chunk \(id.hex) \($0)")
                }
                // A delta (the only codec left) needs its reference: it travels as byte planes of
                // the decoded bytes, with the element size its encoding records.
                let elementSize = Int(record[PackFormat.recordHeaderSize + 32])
                guard elementSize == 2 || elementSize == 4 else {
                    decoded[i] = (.raw, Array(UnsafeRawBufferPointer(target)))
                    continue
                }
                let encoded = UnsafeMutableRawBufferPointer(
                    rebasing: ctx.deltaOutput.memory[0..<ByteGrouping.bound(rawLength, elementSize: elementSize)])
                let n = try ByteGrouping.encode(
                    UnsafeRawBufferPointer(target), elementSize: elementSize, into: encoded, planes: ctx.planes.memory,
                    compressor: ctx.planeCompressor)
                decoded[i] =
                    n < rawLength
                    ? (.byteGrouped, Array(UnsafeRawBufferPointer(rebasing: encoded[0..<n])))
                    : (.raw, Array(UnsafeRawBufferPointer(target)))
            }
        }
    }

    /// Records a manifest whose chunks were stored earlier (by ``storeChunks(bundle:)``): in ONE
    /// index write transaction, checks that every chunk it references is indexed, adds the manifest
    /// if it is new, then runs `body` so the layer above records what it means in the same
    /// transaction. `info.newBytes` and `info.storedBytes` are 0: the chunks were added before.
    ///
    /// - Throws: ``MissingChunksError`` listing chunks not indexed (nothing is written; upload them
    ///   and call again); ``CairnStoreError``; errors thrown by `body` (nothing is committed).
    public func commit<T>(manifest: Manifest, _ body: (MetadataTransaction, CommitInfo) throws -> T) throws -> T {
        let encoded = manifest.encoded()
        let id = SHA256Digest.hash(encoded)
        return try lmdb {
            try environment.write { txn in
                var missing: [SHA256Digest] = []
                var checked = Set<SHA256Digest>()
                for file in manifest.files {
                    for chunk in file.chunks where checked.insert(chunk.id).inserted {
                        if try !chunk.id.withUnsafeBytes({ try txn.contains(chunksDB, key: $0) }) {
                            missing.append(chunk.id)
                        }
                    }
                }
                if !missing.isEmpty { throw MissingChunksError(ids: missing) }  // aborts the transaction
                let key = id.bytes
                let isNew = try txn.get(manifestsDB, key: key) == nil
                if isNew { try txn.put(manifestsDB, key: key, value: encoded) }
                let info = CommitInfo(
                    manifestID: id,
                    manifestIsNew: isNew,
                    newBytes: 0,
                    storedBytes: 0,
                    newChunks: 0,
                    codecs: []
                )
                return try body(MetadataTransaction(store: self, txn: txn), info)
            }
        }
    }

    /// Chunks and hashes the files exactly as ``stage(files:planner:progress:)`` does with these
    /// chunking parameters, but stores nothing: what a client computes before asking a server which
    /// chunks it lacks. Runs on every core with bounded memory (two batches of at least 8 MiB).
    ///
    /// - Throws: ``CairnStoreError``: `.invalidArgument`, `.io`, `.conflict` if a file changes while read.
    ///
    /// With `control`, chunk hashing can be turned off between rounds (the ids are then all
    /// zeros, for a receiver that assigns them; see ``ScannedTree/assigning(_:)``). Files are always
    /// hashed.
    public static func scan(
        directory: String,
        parameters: ChunkerParameters,
        planner: ChunkingPlanner? = nil,
        progress: ((TransferProgress) -> Void)? = nil,
        control: ScanControl? = nil,
        onRound: ((ScanRound) throws -> Void)? = nil
    ) throws -> ScannedTree {
        try parameters.validate()
        let files = try FileTree.scan(directory)
        var seenPaths = Set<String>()
        for f in files {
            try RelativePath.validate(f.relativePath)
            guard seenPaths.insert(f.relativePath).inserted else {
                throw CairnStoreError(.invalidArgument, "the path \(f.relativePath) appears twice")
            }
        }
        let plans = files.map { ChunkingPlan.make(for: $0, planner: planner, maxChunk: parameters.max) }
        let scanner = TreeScanner(files: files, plans: plans, parameters: parameters, progress: progress)
        scanner.onRound = onRound
        scanner.control = control
        let manifest = try scanner.run()
        return ScannedTree(
            manifest: manifest,
            sources: Dictionary(files.map { ($0.relativePath, $0.absolutePath) }, uniquingKeysWith: { a, _ in a }),
            hints: scanner.hints
        )
    }

    /// Reads the chunks `sources` from local files in parallel and frames them as one bundle
    /// (``ChunkBundle``) with their codec hints. With `compress`, chunks travel as zstd where that is
    /// smaller (slow links); without, raw, read straight into the bundle, and the receiving store
    /// encodes them with its own codecs as a local push would (byte planes, deltas). With `verify`,
    /// each chunk is checked against its id first (a file changed since it was scanned fails with
    /// `.conflict`); without, the receiver's check catches it.
    public static func bundle(
        _ sources: [ChunkSource],
        compressionLevel: Int,
        maxChunk: Int,
        compress: Bool = true,
        verify: Bool = true
    ) throws -> [UInt8] {
        let pool = WorkerPool(level: Int32(compressionLevel), maxChunk: maxChunk)
        // Where each chunk's data goes: raw, straight into the bundle; compressed, into scratch first.
        var offsets: [Int] = []
        offsets.reserveCapacity(sources.count)
        var room = 0
        for s in sources {
            offsets.append(room)
            room +=
                compress
                ? Swift.max(zstdCompressBound(Int(s.chunk.length)), Int(s.chunk.length))
                : ChunkBundle.entryHeaderSize(hasReference: s.reference != nil) + Int(s.chunk.length)
        }
        var out = [UInt8](repeating: 0, count: compress ? 0 : ChunkBundle.headerSize + room)
        let scratch = AlignedBuffer(capacity: compress ? room : 1)
        let forms = UnsafeMutableBufferPointer<(codec: Codec, length: Int)>.allocate(capacity: Swift.max(sources.count, 1))
        defer { forms.deallocate() }
        let errors = FirstError()
        try out.withUnsafeMutableBytes { whole in
            let outBase = whole.baseAddress
            parallelFor(sources.count) { i in
                if errors.isSet { return }
                let s = sources[i]
                let length = Int(s.chunk.length)
                do {
                    try pool.withContext { ctx in
                        let target: UnsafeMutableRawBufferPointer
                        if compress {
                            target = UnsafeMutableRawBufferPointer(rebasing: ctx.scratch.memory[0..<length])
                        } else {
                            let at = ChunkBundle.headerSize + offsets[i] + ChunkBundle.entryHeaderSize(hasReference: s.reference != nil)
                            target = UnsafeMutableRawBufferPointer(start: outBase! + at, count: length)
                        }
                        let fd = try FileIO.open(s.path, O_RDONLY | O_NOFOLLOW)
                        defer { close(fd) }
                        let got = try FileIO.pread(fd, target, at: s.offset, path: s.path)
                        guard got == length else {
                            throw CairnStoreError(.conflict, "\(s.path) changed while it was being pushed; push again")
                        }
                        if verify {
                            ctx.hasher.update(UnsafeRawBufferPointer(target))
                            guard ctx.hasher.finalize() == s.chunk.id else {
                                throw CairnStoreError(.conflict, "\(s.path) changed while it was being pushed; push again")
                            }
                        }
                        guard compress else {
                            forms[i] = (.raw, length)
                            return
                        }
                        let slot = UnsafeMutableRawBufferPointer(
                            rebasing: scratch.memory[offsets[i]..<offsets[i] + Swift.max(zstdCompressBound(length), length)])
                        let n = try ctx.compressor.compress(UnsafeRawBufferPointer(target), into: slot)
                        if n < length {
                            forms[i] = (.zstd, n)
                        } else {
                            if length > 0 { slot.baseAddress!.copyMemory(from: target.baseAddress!, byteCount: length) }
                            forms[i] = (.raw, length)
                        }
                    }
                } catch {
                    errors.record(error)
                }
            }
            try errors.rethrow()
        }
        if !compress {
            out.withUnsafeMutableBytes { raw in
                let p = raw.baseAddress!
                ChunkBundle.writeHeader(count: sources.count, to: p)
                for (i, s) in sources.enumerated() {
                    ChunkBundle.writeEntryHeader(
                        id: s.chunk.id, codec: .raw, rawLength: Int(s.chunk.length), storedLength: Int(s.chunk.length),
                        elementSize: s.elementSize, reference: s.reference, to: p + ChunkBundle.headerSize + offsets[i])
                }
            }
            return out
        }
        let total =
            ChunkBundle.headerSize
            + sources.indices.reduce(0) { $0 + ChunkBundle.entryHeaderSize(hasReference: sources[$1].reference != nil) + forms[$1].length }
        out = [UInt8](repeating: 0, count: total)
        out.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            ChunkBundle.writeHeader(count: sources.count, to: p)
            var at = ChunkBundle.headerSize
            for (i, s) in sources.enumerated() {
                let form = forms[i]
                at += ChunkBundle.writeEntryHeader(
                    id: s.chunk.id, codec: form.codec, rawLength: Int(s.chunk.length), storedLength: form.length,
                    elementSize: s.elementSize, reference: s.reference, to: p + at)
                if form.length > 0 {
                    (p + at).copyMemory(from: scratch.memory.baseAddress! + offsets[i], byteCount: form.length)
                }
                at += form.length
            }
        }
        return out
    }
}

/// Chunks and hashes files without storing them: the cutting of the ingest pipeline's read stage
/// (same plans, same FastCDC calls, same batch rule), with chunk and file hashing in parallel.
private final class TreeScanner {
    let files: [SourceFile]
    let reader: ChunkedReader
    let progress: ((TransferProgress) -> Void)?
    let pool: WorkerPool
    let fileHasher = SHA256Hasher()
    let errors = FirstError()

    var fileChunks: [[ChunkRef]]
    var fileDigests: [SHA256Digest]
    /// Codec hints of chunks that have any (first occurrence).
    var hints: [SHA256Digest: (elementSize: Int, reference: SHA256Digest?)] = [:]
    /// Called after each round with its chunks and their bytes.
    var onRound: ((ScanRound) throws -> Void)?
    var control: ScanControl?

    final class Batch: ChunkBatch {
        var ids: [SHA256Digest] = []
    }

    init(
        files: [SourceFile],
        plans: [ChunkingPlan],
        parameters: ChunkerParameters,
        progress: ((TransferProgress) -> Void)?
    ) {
        self.files = files
        reader = ChunkedReader(files: files, plans: plans, parameters: parameters)
        self.progress = progress
        pool = WorkerPool(level: 1, maxChunk: parameters.max)
        fileChunks = Array(repeating: [], count: files.count)
        fileDigests = Array(repeating: .zero, count: files.count)
    }

    func run() throws -> Manifest {
        let total = files.reduce(Int64(0)) { $0 + $1.size }
        var done: Int64 = 0
        let batches = [Batch(capacity: reader.batchCapacity), Batch(capacity: reader.batchCapacity)]
        var round = 0
        var hasCurrent = try reader.fill(batches[0])
        while hasCurrent {
            let current = batches[round % 2]
            let next = batches[(round + 1) % 2]
            current.ids = Array(repeating: .zero, count: current.chunkCount)
            let hashesChunks = control?.hashesChunks ?? true
            var hasNext = false
            parallelFor(2 + current.chunkCount) { i in
                if errors.isSet { return }
                do {
                    switch i {
                    case 0: hasNext = try reader.fill(next)
                    case 1:
                        fileHasher.update(UnsafeRawBufferPointer(rebasing: current.input.memory[0..<current.consumed]))
                        if current.isFileEnd { fileDigests[current.fileIndex] = fileHasher.finalize() }
                    default:
                        guard hashesChunks else { return }
                        let bytes = current.chunk(i - 2)
                        current.ids[i - 2] = pool.withContext { ctx in
                            ctx.hasher.update(bytes)
                            return ctx.hasher.finalize()
                        }
                    }
                } catch {
                    errors.record(error)
                }
            }
            try errors.rethrow()
            for c in 0..<current.chunkCount {
                if current.ids[c] != .zero, current.elementSizes[c] != 0 || current.references[c] != nil,
                    hints[current.ids[c]] == nil
                {
                    hints[current.ids[c]] = (current.elementSizes[c], current.references[c])
                }
                fileChunks[current.fileIndex].append(
                    ChunkRef(id: current.ids[c], length: UInt32(current.cuts[c + 1] - current.cuts[c]))
                )
            }
            done += Int64(current.consumed)
            if let onRound {
                let path = files[current.fileIndex].absolutePath
                let chunks = (0..<current.chunkCount).map { c in
                    ChunkSource(
                        path: path, offset: current.fileOffset + Int64(current.cuts[c]),
                        chunk: ChunkRef(id: current.ids[c], length: UInt32(current.cuts[c + 1] - current.cuts[c])),
                        elementSize: current.elementSizes[c], reference: current.references[c])
                }
                try onRound(
                    ScanRound(
                        chunks: chunks, starts: Array(current.cuts.dropLast()),
                        bytes: UnsafeRawBufferPointer(rebasing: current.input.memory[0..<current.consumed])))
            }
            progress?(TransferProgress(doneBytes: done, totalBytes: total, newBytes: 0))
            hasCurrent = hasNext
            round += 1
        }
        return Manifest(
            files: files.indices.map { i in
                FileEntry(
                    path: files[i].relativePath,
                    size: files[i].size,
                    sha256: fileDigests[i],
                    chunks: fileChunks[i]
                )
            }
        )
    }
}

extension TransferProgress {
    /// Progress reported by a layer above the store (a remote transfer).
    public init(done: Int64, of total: Int64, new: Int64) {
        self.init(doneBytes: done, totalBytes: total, newBytes: new)
    }
}

/// A bundle whose chunks were all verified, with each chunk's stored form (in the bundle, or
/// re-encoded in `output`). The bundle's bytes are passed again when the chunks are written.
public final class VerifiedBundle: @unchecked Sendable {
    // @unchecked Sendable: immutable once verification has filled `forms` and `output`.
    let entries: [ChunkBundle.Entry]
    let slots: [Int]
    let output: AlignedBuffer
    let forms: UnsafeMutableBufferPointer<(codec: Codec, length: Int, reference: SHA256Digest?)>
    /// False for a bundle whose deltas were rebuilt (or left out) without keeping their raw bytes.
    let stageable: Bool

    /// Takes ownership of `output` (back to the pool) and `forms` (deallocated).
    init(
        entries: [ChunkBundle.Entry], slots: [Int], output: AlignedBuffer,
        forms: UnsafeMutableBufferPointer<(codec: Codec, length: Int, reference: SHA256Digest?)>, stageable: Bool = true
    ) {
        self.entries = entries
        self.slots = slots
        self.output = output
        self.forms = forms
        self.stageable = stageable
    }

    /// Every chunk's id, in bundle order (as assigned, where the receiver assigned them).
    public var ids: [SHA256Digest] { entries.map(\.id) }

    deinit {
        forms.deallocate()
        BufferPool.give(output)
    }

    /// Chunks in the bundle.
    public var count: Int { entries.count }

    /// Appends to `writer` the chunks `include` accepts, each once; returns their count and raw bytes.
    func append(
        to writer: PackWriter,
        bundle: UnsafeRawBufferPointer,
        where include: (SHA256Digest) -> Bool
    ) throws -> (chunks: Int, rawBytes: Int64) {
        var chosen = Set<SHA256Digest>()
        var count = 0
        var raw: Int64 = 0
        for (i, e) in entries.enumerated() where include(e.id) && chosen.insert(e.id).inserted {
            let form = forms[i]
            let data =
                slots[i] >= 0
                ? UnsafeRawBufferPointer(rebasing: output.memory[slots[i]..<slots[i] + form.length])
                : UnsafeRawBufferPointer(rebasing: bundle[e.dataOffset..<e.dataOffset + e.storedLength])
            try writer.append(id: e.id, codec: form.codec, rawLength: e.rawLength, data: data, reference: form.reference)
            count += 1
            raw += Int64(e.rawLength)
        }
        return (count, raw)
    }
}

/// Chunks received in several bundles (a remote push's uploads, a remote pull's fetches) staged
/// into packs like a local push stages a tree, and committed with the manifest that references
/// them in ONE index transaction (``commit(manifest:_:)``), or indexed on their own
/// (``commitChunks()``). Packs are sealed (fsynced) at the store's pack size and before the commit,
/// so chunks are durable before anything references them, and no fsync is paid per bundle.
///
/// ```swift
/// let upload = try ChunkUpload(store: store)
/// for bundle in bundles { try upload.add(bundle: bundle) }        // each verified before it is written
/// let id = try upload.commit(manifest: manifest) { txn, info in info.manifestID }
/// ```
///
/// Thread-safe: bundles may be added from several threads (verification runs outside the lock).
/// Until committed, the chunks are invisible; an abandoned upload leaves at most unreferenced packs
/// (garbage collection removes them). GC does not delete packs while an upload is open.
public final class ChunkUpload: @unchecked Sendable {
    // @unchecked Sendable: the writer and the set of staged ids are used under `lock` only.
    public let store: Store
    private let lock = NSLock()
    private let writer: PackWriter
    private var staged = Set<SHA256Digest>()
    private var stagedRawBytes: Int64 = 0
    private var closed = false
    private let lease: StoreLock.Lease

    /// - Parameter bypassesPageCache: write packs with direct I/O where the file system allows it,
    ///   else drop their pages from the page cache once on disk (a cache being filled: its packs
    ///   are not read again soon).
    public init(store: Store, bypassesPageCache: Bool = false) throws {
        self.store = store
        writer = PackWriter(root: store.root, targetSize: store.config.packSize, bypassesPageCache: bypassesPageCache)
        lease = try StoreLock.sharedPushLease(root: store.root)
    }

    deinit {
        if !closed { writer.abandon() }
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Verifies every chunk of a bundle (nothing is kept if one does not match its id) and stages
    /// those neither indexed nor staged yet. `newChunks`/`newBytes` count what was staged.
    ///
    /// - Throws: ``CairnStoreError`` as ``Store/storeChunks(bundle:compressRaw:onVerified:)`` does;
    ///   `.conflict` after the upload was committed or abandoned.
    ///
    /// With `assignIDs`, chunks sent with an all-zero id get the SHA-256 of their bytes as id, and
    /// the result lists every chunk's id in bundle order (a sender that did not hash them).
    @discardableResult
    public func add(
        bundle: UnsafeRawBufferPointer,
        compressRaw: Bool = true,
        assignIDs: Bool = false,
        onVerified: ((SHA256Digest, UnsafeRawBufferPointer) throws -> Void)? = nil
    ) throws -> ChunkStoreResult {
        let verified = try store.verifyBundle(bundle, compressRaw: compressRaw, assignIDs: assignIDs, onVerified: onVerified)
        var result = try stage(verified, bundle: bundle)
        if assignIDs { result.ids = verified.ids.map(\.hex) }
        return result
    }

    /// The first half of ``add(bundle:compressRaw:onVerified:)``: verifies every chunk (in
    /// parallel, outside the upload's lock), so one bundle can be verified while the previous one
    /// is written by ``stage(_:bundle:)``.
    ///
    /// - Parameter decodeInto: where to decode a compressed chunk, given its id and raw length: the
    ///   caller's memory of exactly that length, or nil for scratch memory. `onVerified` then gets
    ///   those bytes. Called from several threads at once, never twice for one entry.
    public func verify(
        bundle: UnsafeRawBufferPointer,
        compressRaw: Bool = true,
        decodeInto: ((SHA256Digest, Int) -> UnsafeMutableRawBufferPointer?)? = nil,
        onVerified: ((SHA256Digest, UnsafeRawBufferPointer) throws -> Void)? = nil
    ) throws -> VerifiedBundle {
        try store.verifyBundle(bundle, compressRaw: compressRaw, decodeInto: decodeInto, onVerified: onVerified)
    }

    /// The second half of ``add(bundle:compressRaw:onVerified:)``: stages the verified chunks that
    /// are neither indexed nor staged yet. `bundle` must be the same bytes `verify` saw.
    @discardableResult
    public func stage(_ verified: VerifiedBundle, bundle: UnsafeRawBufferPointer) throws -> ChunkStoreResult {
        guard verified.stageable else {
            throw CairnStoreError(.invalidArgument, "a bundle whose deltas were rebuilt without keeping them cannot be stored")
        }
        let absent = Set(try store.missingChunks(verified.entries.map(\.id)))
        return try locked {
            guard !closed else { throw CairnStoreError(.conflict, "this upload was already committed or abandoned") }
            let (count, raw) = try verified.append(to: writer, bundle: bundle) { absent.contains($0) && !staged.contains($0) }
            for e in verified.entries where absent.contains(e.id) { staged.insert(e.id) }
            stagedRawBytes += raw
            return ChunkStoreResult(received: verified.entries.count, newChunks: count, newBytes: raw, storedBytes: 0)
        }
    }

    /// Whether chunk `id` was staged by this upload.
    public func contains(_ id: SHA256Digest) -> Bool { locked { staged.contains(id) } }

    /// Raw bytes staged so far.
    public var stagedBytes: Int64 { locked { stagedRawBytes } }

    /// Seals the packs, then in ONE index transaction indexes the staged chunks, checks that every
    /// chunk `manifest` references is indexed, stores the manifest and runs `body` (as
    /// ``Store/commit(_:_:)`` does for a local push). `info.newBytes` counts the staged chunks that
    /// were new to the index.
    ///
    /// - Throws: ``MissingChunksError`` when chunks are neither staged nor indexed (nothing is
    ///   written; add them and commit again); ``CairnStoreError``; errors from `body`.
    public func commit<T>(manifest: Manifest, _ body: (MetadataTransaction, CommitInfo) throws -> T) throws -> T {
        try locked {
            guard !closed else { throw CairnStoreError(.conflict, "this upload was already committed or abandoned") }
            var referenced: [SHA256Digest] = []
            var seen = Set<SHA256Digest>()
            for file in manifest.files {
                for chunk in file.chunks where !staged.contains(chunk.id) && seen.insert(chunk.id).inserted {
                    referenced.append(chunk.id)
                }
            }
            let missing = try store.missingChunks(referenced)
            if !missing.isEmpty { throw MissingChunksError(ids: missing) }
            do {
                try writer.finish()
            } catch {
                closed = true
                writer.abandon()
                throw error
            }
            closed = true
            let stagedIngest = StagedIngest(
                manifest: manifest, manifestID: manifest.id, writtenRawBytes: stagedRawBytes,
                writtenPackBytes: writer.bytesWritten, packs: writer.sealed, written: writer.written, sources: [:],
                lease: lease)
            return try store.commit(stagedIngest, body)
        }
    }

    /// Seals the packs and indexes the staged chunks in one transaction, without a manifest (a
    /// pull's cache). Returns what was added.
    @discardableResult
    public func commitChunks() throws -> ChunkStoreResult {
        try locked {
            guard !closed else { throw CairnStoreError(.conflict, "this upload was already committed or abandoned") }
            closed = true
            do {
                try writer.finish()
            } catch {
                writer.abandon()
                throw error
            }
            let (chunks, bytes, stored) = try store.indexWritten(writer)
            return ChunkStoreResult(received: staged.count, newChunks: chunks, newBytes: bytes, storedBytes: stored)
        }
    }

    /// Drops what was staged (the packs already sealed stay unreferenced until GC).
    public func abandon() {
        locked {
            if !closed {
                closed = true
                writer.abandon()
            }
        }
    }
}

/// Turns chunk hashing of a running ``Store/scan(directory:parameters:planner:progress:control:onRound:)``
/// on or off; a change applies from the next round on.
public final class ScanControl: Sendable {
    private let hashing = Atomic<Bool>(true)

    public init() {}

    /// Whether chunks are hashed (their ids are all zeros otherwise).
    public var hashesChunks: Bool {
        get { hashing.load(ordering: .relaxed) }
        set { hashing.store(newValue, ordering: .relaxed) }
    }
}

/// One round of ``Store/scan(directory:parameters:planner:progress:onRound:)``: chunks just cut and
/// hashed, with their bytes (valid only during the callback).
public struct ScanRound {
    public let chunks: [ChunkSource]
    let starts: [Int]
    let bytes: UnsafeRawBufferPointer

    /// The bytes of chunk `i`. Do not keep the pointer past the callback.
    public func bytes(of i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[starts[i]..<starts[i] + Int(chunks[i].chunk.length)])
    }
}
