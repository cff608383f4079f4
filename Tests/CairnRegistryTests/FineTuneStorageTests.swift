import CairnFixtures
import CairnRegistry
import Digest
import Foundation
import Glibc
import Synchronization
import Testing

@testable import CairnStore

/// Byte planes and deltas against the parent: lossless for every dtype, chains stay one deep,
/// parents can be collected, corruption of a reference is found in every version that needs it.
@Suite struct FineTuneStorageTests {
    /// Pseudo-random floats of a trained layer (about N(0, 0.02)) as raw little-endian bytes.
    static func weights(_ count: Int, dtype: String, seed: UInt64, perturb: (UInt64, Float)? = nil) -> [UInt8] {
        var base = SplitMix64(seed: seed)
        var noise = SplitMix64(seed: perturb?.0 ?? 0)
        var out: [UInt8] = []
        out.reserveCapacity(count * 4)
        func normal(_ g: inout SplitMix64) -> Float {
            var s: Float = 0
            for _ in 0..<4 { s += Float(g.next() >> 40) / Float(1 << 24) }
            return (s - 2) * 1.7
        }
        for _ in 0..<count {
            var x = normal(&base) * 0.02
            if let (_, scale) = perturb { x += normal(&noise) * scale }
            switch dtype {
            case "F32": withUnsafeBytes(of: x.bitPattern.littleEndian) { out += $0 }
            case "F16": withUnsafeBytes(of: Float16(x).bitPattern.littleEndian) { out += $0 }
            case "BF16":
                let bits = x.bitPattern
                let rounded = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
                withUnsafeBytes(of: rounded.littleEndian) { out += $0 }
            case "I8": out.append(UInt8(bitPattern: Int8(clamping: Int(x * 3000))))
            case "BOOL": out.append(x > 0 ? 1 : 0)
            default: fatalError("dtype")
            }
        }
        return out
    }

    /// A model with one tensor of each kind; `perturb` changes the float tensors a little.
    static func writeModel(_ dir: URL, perturb: (UInt64, Float)? = nil) throws {
        let specs: [(String, String, [Int])] = [
            ("big.bf16", "BF16", [300, 513]),  // 307,800 bytes: slices plus a shorter last one
            ("small.bf16", "BF16", [3, 7]),  // smaller than one slice
            ("odd.f32", "F32", [1001]),
            ("half.f16", "F16", [129, 257]),
            ("codes.i8", "I8", [7777]),
            ("mask.bool", "BOOL", [333]),
        ]
        let tensors = specs.enumerated().map { i, spec in
            SafetensorsTensor(
                name: spec.0,
                dtype: spec.1,
                shape: spec.2,
                data: weights(
                    spec.2.reduce(1, *),
                    dtype: spec.1,
                    seed: UInt64(i + 1),
                    perturb: spec.1.hasPrefix("F") || spec.1 == "BF16" ? perturb : nil
                )
            )
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data(SafetensorsWriter.encode(tensors: tensors, metadata: ["format": "pt"])).write(
            to: dir.appendingPathComponent("model.safetensors")
        )
    }

    func pullMatches(_ f: RegistryFixture, _ ref: String, _ original: URL) throws -> Bool {
        let out = f.dir("out-\(UUID().uuidString)")
        try f.registry.pull(try f.registry.resolve(try Reference(parsing: ref)), to: out.path)
        return try Data(contentsOf: out.appendingPathComponent("model.safetensors"))
            == Data(contentsOf: original.appendingPathComponent("model.safetensors"))
    }

    func codecs(_ f: RegistryFixture) throws -> [String: Int] {
        Dictionary(uniqueKeysWithValues: try f.registry.store.statistics().codecs.map { ($0.codec, $0.chunks) })
    }

    /// Pushes a base model as m@1 and a fine-tune of it (perturbed with `seed`) as m@2, naming m@1
    /// as its parent; the fine-tune's push result.
    @discardableResult
    func pushBaseAndFineTune(_ f: RegistryFixture, seed: UInt64) throws -> PushResult {
        try Self.writeModel(f.dir("base"))
        try Self.writeModel(f.dir("ft"), perturb: (seed, 0.0005))
        _ = try f.registry.push(directory: f.dir("base").path, request: PushRequest(model: "m", actor: "a"))
        var request = PushRequest(model: "m", actor: "a")
        request.parents = ["m@1"]
        return try f.registry.push(directory: f.dir("ft").path, request: request)
    }

    @Test func everyDTypeRoundTripsThroughPlanesAndDeltas() throws {
        let f = try RegistryFixture()
        let ft = try pushBaseAndFineTune(f, seed: 99)
        #expect(try pullMatches(f, "m@1", f.dir("base")))
        #expect(try pullMatches(f, "m@2", f.dir("ft")))
        let used = try codecs(f)
        #expect((used["byte-grouped"] ?? 0) > 0, "\(used)")
        #expect((used["delta"] ?? 0) > 0, "\(used)")
        // The fine-tune's float tensors are stored as deltas at well under half their size.
        #expect(ft.storedBytes < ft.newBytes / 2, "stored \(ft.storedBytes) of \(ft.newBytes)")
        // What each codec saved is reported by the push, by stats, and per file by show.
        let pushCodecs = try #require(ft.codecs)
        let delta = try #require(pushCodecs.first { $0.codec == "delta" })
        #expect(delta.storedBytes < delta.rawBytes / 2)
        #expect(pushCodecs.reduce(0) { $0 + $1.rawBytes } == ft.newBytes)
        let stats = try f.registry.statistics()
        #expect(try #require(stats.codecs).reduce(0) { $0 + $1.storedBytes } == stats.compressedBytes)
        let manifest = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "m@2")))
        let perFile = try f.registry.storedBytesByFile(manifest)
        #expect(perFile["model.safetensors"]! > 0 && perFile["model.safetensors"]! < manifest.files[0].size)
        #expect(try f.registry.store.verify(deep: true).isHealthy)
    }

    /// The bundle export pieces describe, read from the packs they name; and how many of its bytes
    /// came from the packs.
    static func assemble(_ pieces: Store.ExportPieces) -> (bytes: [UInt8], fromPacks: Int) {
        var assembled: [UInt8] = []
        var fromPacks = 0
        for piece in pieces.pieces {
            switch piece {
            case .bytes(let range):
                assembled += pieces.bytes[range]
            case .pack(let file, let offset, let length):
                var bytes = [UInt8](repeating: 0, count: length)
                let got = bytes.withUnsafeMutableBytes {
                    pread(pieces.descriptors[file], $0.baseAddress!, length, off_t(offset))
                }
                #expect(got == length)
                assembled += bytes
                fromPacks += length
            }
        }
        return (assembled, fromPacks)
    }

    /// What a server sends from files (`sendfile`) is the bundle `export` writes, byte for byte:
    /// chunks stored as they are named by their range in a pack, deltas decoded into the bytes.
    @Test func exportPiecesAssembleTheExportedBundle() throws {
        let f = try RegistryFixture()
        try pushBaseAndFineTune(f, seed: 7)
        #expect((try codecs(f)["delta"] ?? 0) > 0)
        let store = f.registry.store
        let manifest = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "m@2")))
        let ids = manifest.files.flatMap { $0.chunks.map(\.id) }
        let plan = try store.planExport(ids, maxBytes: 256 << 20)
        let expected = try store.exportChunks(ids, maxBytes: 256 << 20)
        let pieces = try store.exportPieces(plan)
        defer { for descriptor in pieces.descriptors { close(descriptor) } }
        let (assembled, fromPacks) = Self.assemble(pieces)
        #expect(pieces.size == expected.count)
        #expect(assembled == expected)
        // Both kinds: the fine-tune's deltas are decoded, its unchanged chunks come from the packs.
        #expect(fromPacks > 0 && fromPacks < expected.count / 2)
    }

    /// Sent to a receiver that holds their references, deltas travel as stored (codec delta, their
    /// stored bytes, from the packs); a store never takes such a bundle as an upload.
    @Test func exportsSendDeltasAsStoredWhenAskedAndUploadsRefuseThem() throws {
        let f = try RegistryFixture()
        try pushBaseAndFineTune(f, seed: 8)
        let store = f.registry.store
        let manifest = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "m@2")))
        let ids = manifest.files.flatMap { $0.chunks.map(\.id) }
        let deltas = try #require(try store.statistics().codecs.first { $0.codec == "delta" })
        func bundle(_ sendingDeltas: Bool) throws -> [UInt8] {
            let plan = try store.planExport(ids, maxBytes: 256 << 20, sendingDeltas: sendingDeltas)
            var out = [UInt8](repeating: 0, count: plan.bound)
            let n = try out.withUnsafeMutableBytes { try store.export(plan, into: $0) }
            // The pieces a server sends from files are the same bundle, byte for byte.
            let pieces = try store.exportPieces(plan)
            defer { for descriptor in pieces.descriptors { close(descriptor) } }
            #expect(Self.assemble(pieces).bytes == Array(out[0..<n]))
            return Array(out[0..<n])
        }
        let asStored = try bundle(true)
        let decoded = try bundle(false)
        let storedEntries = try asStored.withUnsafeBytes {
            try ChunkBundle.parse($0, maxChunk: 1 << 24, allowingDeltas: true)
        }
        #expect(storedEntries.filter { $0.codecRaw == Codec.delta.rawValue }.count == deltas.chunks)
        #expect(
            try decoded.withUnsafeBytes { try ChunkBundle.parse($0, maxChunk: 1 << 24) }.count == storedEntries.count
        )
        #expect(asStored.count < decoded.count)
        // Not allowed for, a bundle with deltas is malformed: an upload of it stores nothing.
        #expect(throws: CairnStoreError.self) {
            _ = try asStored.withUnsafeBytes { try ChunkBundle.parse($0, maxChunk: 1 << 24) }
        }
        let other = try Store.create(at: f.dir("other").path)
        #expect(throws: CairnStoreError.self) { _ = try asStored.withUnsafeBytes { try other.storeChunks(bundle: $0) } }
        #expect(try other.statistics().chunkCount == 0)
    }

    /// A receiver rebuilds the deltas it holds the references of and sets the others aside to be
    /// fetched whole; such a verification can never be stored (its deltas kept no raw bytes).
    @Test func deltasWithoutTheirReferenceAreSetAsideNotStored() throws {
        let f = try RegistryFixture()
        try pushBaseAndFineTune(f, seed: 9)
        let store = f.registry.store
        let manifest = try f.registry.manifest(of: try f.registry.resolve(try Reference(parsing: "m@2")))
        let ids = manifest.files.flatMap { $0.chunks.map(\.id) }
        let plan = try store.planExport(ids, maxBytes: 256 << 20, sendingDeltas: true)
        var bundle = [UInt8](repeating: 0, count: plan.bound)
        let n = try bundle.withUnsafeMutableBytes { try store.export(plan, into: $0) }
        let entries = try bundle.withUnsafeBytes {
            try ChunkBundle.parse(UnsafeRawBufferPointer(rebasing: $0[0..<n]), maxChunk: 1 << 24, allowingDeltas: true)
        }
        let deltaIDs = Set(entries.filter { $0.codecRaw == Codec.delta.rawValue }.map(\.id))
        #expect(!deltaIDs.isEmpty)

        // A receiver holding no reference: every delta set aside, every other chunk verified.
        let receiver = try Store.create(at: f.dir("receiver").path)
        let unbuilt = Store.UnbuiltDeltas()
        let verifiedIDs = Mutex(Set<SHA256Digest>())
        let verified = try bundle.withUnsafeBytes { raw in
            try receiver.verifyBundle(
                UnsafeRawBufferPointer(rebasing: raw[0..<n]),
                compressRaw: false,
                references: { _, _, _ in nil },
                unbuilt: unbuilt
            ) { id, _ in verifiedIDs.withLock { _ = $0.insert(id) } }
        }
        #expect(Set(unbuilt.all.map(\.chunk.id)) == deltaIDs)
        #expect(unbuilt.all.allSatisfy { !$0.referenceDiffers })
        #expect(verifiedIDs.withLock { $0 } == Set(entries.map(\.id)).subtracting(deltaIDs))
        let upload = try ChunkUpload(store: receiver)
        #expect(throws: CairnStoreError.self) {
            _ = try bundle.withUnsafeBytes {
                try upload.stage(verified, bundle: UnsafeRawBufferPointer(rebasing: $0[0..<n]))
            }
        }
        upload.abandon()

        // Holding the references (the sender's own store): every delta rebuilt and verified.
        let all = Mutex(Set<SHA256Digest>())
        let none = Store.UnbuiltDeltas()
        _ = try bundle.withUnsafeBytes { raw in
            try store.verifyBundle(
                UnsafeRawBufferPointer(rebasing: raw[0..<n]),
                compressRaw: false,
                references: { id, length, ctx in try? store.loadReference(id, length: length, context: ctx) },
                unbuilt: none
            ) { id, _ in all.withLock { _ = $0.insert(id) } }
        }
        #expect(none.all.isEmpty)
        #expect(all.withLock { $0 } == Set(entries.map(\.id)))
    }

    @Test func fineTuneOfAFineTuneStaysOneDeepAndSurvivesItsParentsDeletion() throws {
        let f = try RegistryFixture()
        try Self.writeModel(f.dir("base"))
        try Self.writeModel(f.dir("ft1"), perturb: (1, 0.0005))
        try Self.writeModel(f.dir("ft2"), perturb: (2, 0.0005))  // also close to base, another direction
        _ = try f.registry.push(directory: f.dir("base").path, request: PushRequest(model: "m", actor: "a"))
        for (n, dir) in [(1, "ft1"), (2, "ft2")] {
            var request = PushRequest(model: "m", actor: "a")
            request.parents = ["m@\(n)"]
            _ = try f.registry.push(directory: f.dir(dir).path, request: request)
        }
        // m@3 names m@2 as parent, whose slices are deltas: its deltas refer to base's chunks instead.
        // Delete the middle version and collect: m@3 still reads back exactly.
        try f.registry.delete(try Reference(parsing: "m@2"), actor: "a")
        let report = try f.registry.collectGarbage(gracePeriod: 0)
        #expect(report.removedChunks > 0)
        #expect(try pullMatches(f, "m@3", f.dir("ft2")))
        // And with the base deleted and collected too, both remaining chains still resolve.
        try f.registry.delete(try Reference(parsing: "m@1"), actor: "a")
        _ = try f.registry.collectGarbage(gracePeriod: 0)
        #expect(try pullMatches(f, "m@3", f.dir("ft2")))
        #expect(try f.registry.store.verify(deep: true).isHealthy)
    }

    @Test func corruptReferenceIsReportedForEveryVersionThatNeedsIt() throws {
        let f = try RegistryFixture()
        try pushBaseAndFineTune(f, seed: 5)
        // Damage the base's packs (they hold the reference chunks): flip a byte in the middle of the
        // big tensor's records of the first pack written.
        let packs = try FileManager.default.subpathsOfDirectory(atPath: f.registry.store.root + "/packs")
            .filter { $0.hasSuffix(".pack") }.map { f.registry.store.root + "/packs/" + $0 }
        let base = try #require(
            packs.min {
                (try? FileManager.default.attributesOfItem(atPath: $0)[.modificationDate] as? Date ?? .distantPast)!
                    < (try? FileManager.default.attributesOfItem(atPath: $1)[.modificationDate] as? Date ?? .distantPast)!
            }
        )
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: base))
        try handle.seek(toOffset: 60_000)
        let byte = try handle.read(upToCount: 1)!
        try handle.seek(toOffset: 60_000)
        try handle.write(contentsOf: Data([byte[0] ^ 0x55]))
        try handle.close()

        let report = try f.registry.verify(deep: true)
        #expect(!report.store.isHealthy)
        let versions = Set(report.affected.map(\.version))
        #expect(versions == [1, 2], "affected: \(report.affected)")
        #expect(report.store.problems.contains { $0.message.contains("delta") || $0.kind == .corruptChunk })
        #expect(throws: RegistryError.self) { try pullMatches(f, "m@2", f.dir("ft")) }
    }
}
