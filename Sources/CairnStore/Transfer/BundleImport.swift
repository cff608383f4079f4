import Digest
import Foundation
import Synchronization
import Zstd

// Storing a bundle's chunks: every chunk decoded and verified against its id first, then written
// to a new pack and indexed.

/// What ``Store/storeChunks(bundle:compressRaw:onVerified:)`` did.
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

    /// A result with these counts.
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

/// Serializes the "which chunks are new → write a pack → index it" section of ``Store/storeChunks(bundle:compressRaw:onVerified:)``
/// within a process, so two uploads of overlapping chunks store each chunk once.
private let chunkIngestLock = Mutex(())

extension Store {
    /// Stores the chunks of a bundle (``ChunkBundle``): every chunk is decoded and its SHA-256
    /// checked against its id first, in parallel; if any does not match, nothing is stored.
    /// Chunks not yet indexed are then written to a new pack (fsynced) and indexed in one
    /// transaction, so they are durable before any manifest can reference them.
    ///
    /// zstd data that is smaller than the raw bytes is stored as received (it was just verified to
    /// decode to them); raw data is compressed with the store's level unless `compressRaw` is false
    /// (a bundle from a store that found those chunks incompressible).
    ///
    /// ```swift
    /// let result = try bundle.withUnsafeBytes { try store.storeChunks(bundle: $0) }
    /// ```
    ///
    /// - Parameter onVerified: called with each chunk's id and raw bytes once they are verified,
    ///   from several threads at once (a caller can write them straight where they belong).
    /// - Throws: ``CairnStoreError``: `.invalidArgument` for a malformed bundle, `.corruption` naming
    ///   the first chunk whose bytes do not match its id (nothing stored), `.io`; errors thrown by
    ///   `onVerified` (nothing stored).
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
        var digests = [SHA256Digest](repeating: .zero, count: entries.count)
        // Where each chunk's stored form goes when it is not the received bytes.
        var slots = [Int](repeating: -1, count: entries.count)
        var outputSize = 0
        // Deltas rebuilt here are kept as raw bytes in a slot, should the bundle be staged (their
        // references may not be stored); not when it never is.
        for (i, e) in entries.enumerated()
        where (compressRaw && e.codecRaw == Codec.raw.rawValue)
            || (e.codecRaw != Codec.raw.rawValue && e.codecRaw != Codec.delta.rawValue && e.storedLength >= e.rawLength)
            || (e.codecRaw == Codec.delta.rawValue && unbuilt == nil)
        {
            slots[i] = outputSize
            outputSize += Self.encodingRoom(e.rawLength)
        }
        let output = BufferPool.shared.take(capacity: outputSize)
        var forms = [StoredForm](repeating: StoredForm(codec: .raw, length: 0), count: entries.count)
        let errors = FirstError()
        // Each iteration writes its own entry of `forms` and `digests`.
        forms.withUnsafeMutableBufferPointer { forms in
            digests.withUnsafeMutableBufferPointer { digests in
                parallelFor(entries.count) { i in
                    if errors.isSet { return }
                    do {
                        (forms[i], digests[i]) = try verifyEntry(
                            entries[i],
                            bundle: bundle,
                            slot: slots[i],
                            output: output,
                            assignID: assignIDs,
                            decodeInto: decodeInto,
                            references: references,
                            unbuilt: unbuilt,
                            onVerified: onVerified
                        )
                    } catch {
                        errors.record(error)
                    }
                }
            }
        }
        do {
            try errors.rethrow()
        } catch {
            BufferPool.shared.give(output)
            throw error
        }
        if assignIDs { for i in entries.indices { entries[i].id = digests[i] } }
        let hasDeltas = entries.contains { $0.codecRaw == Codec.delta.rawValue }
        return VerifiedBundle(
            entries: entries,
            slots: slots,
            output: output,
            forms: forms,
            stageable: unbuilt == nil || !hasDeltas
        )
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
    ) throws -> (form: StoredForm, id: SHA256Digest) {
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
                    try ByteGrouping.decode(
                        data,
                        into: target,
                        planes: ctx.planes.memory,
                        decompressor: ctx.decompressor
                    )
                } catch {
                    throw mismatch("cannot be decoded (\(error))")
                }
                raw = UnsafeRawBufferPointer(target)
            case .delta:
                // Rebuilt from its reference, which must be held here; else left to be fetched
                // whole (with `unbuilt`) or failing the bundle.
                guard let references, data.count > 33 else { throw mismatch("is a delta, which was not asked for") }
                let referenceID = SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: data[0..<32]))
                func unusable(
                    differs: Bool
                ) throws -> (form: StoredForm, id: SHA256Digest) {
                    guard let unbuilt else {
                        throw CairnStoreError(
                            .notFound,
                            "chunk \(e.id.hex) came as a delta against chunk \(referenceID.hex), which \(differs ? "does not rebuild it" : "is not held") here"
                        )
                    }
                    unbuilt.add(
                        UnbuiltDelta(
                            chunk: ChunkRef(id: e.id, length: UInt32(e.rawLength)),
                            reference: referenceID,
                            referenceDiffers: differs
                        )
                    )
                    return (StoredForm(codec: .raw, length: 0), e.id)
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
                if slot >= 0 {
                    (output.memory.baseAddress! + slot).copyMemory(from: target.baseAddress!, byteCount: e.rawLength)
                }
                return (StoredForm(codec: .raw, length: e.rawLength), e.id)
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
            if slot < 0 { return (StoredForm(codec: Codec(rawValue: e.codecRaw)!, length: data.count), digest) }
            let room = UnsafeMutableRawBufferPointer(
                rebasing: output.memory[slot..<slot + Self.encodingRoom(e.rawLength)]
            )
            return (
                try encodeForStore(raw, elementSize: e.elementSize, reference: e.reference, into: room, ctx), digest
            )
        }
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
}

/// A bundle whose chunks were all verified, with each chunk's stored form (in the bundle, or
/// re-encoded in `output`). The bundle's bytes are passed again when the chunks are written.
package final class VerifiedBundle: Sendable {
    let entries: [ChunkBundle.Entry]
    let slots: [Int]
    let output: AlignedBuffer
    /// Each chunk's stored form, in bundle order.
    let forms: [StoredForm]
    /// False for a bundle whose deltas were rebuilt (or left out) without keeping their raw bytes.
    let stageable: Bool

    /// Takes ownership of `output` (given back to the pool with the value).
    init(
        entries: [ChunkBundle.Entry],
        slots: [Int],
        output: AlignedBuffer,
        forms: [StoredForm],
        stageable: Bool = true
    ) {
        self.entries = entries
        self.slots = slots
        self.output = output
        self.forms = forms
        self.stageable = stageable
    }

    /// Every chunk's id, in bundle order (as assigned, where the receiver assigned them).
    package var ids: [SHA256Digest] { entries.map(\.id) }

    deinit {
        BufferPool.shared.give(output)
    }

    /// Chunks in the bundle.
    package var count: Int { entries.count }

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
            try writer.append(
                id: e.id,
                codec: form.codec,
                rawLength: e.rawLength,
                data: data,
                reference: form.reference
            )
            count += 1
            raw += Int64(e.rawLength)
        }
        return (count, raw)
    }
}
