import CairnFixtures
import CairnStore
import Digest
import Foundation
import LMDB
import Testing
import Zstd

/// The byte-level promises of docs/storage-format.md, read back from what a store writes to disk:
/// config.json (§2), codec ids and encodings (§4), pack files (§5), the index (§6) and manifests
/// (§7). An independent reader relies on exactly these bytes.
@Suite struct StorageFormatTests {
    // MARK: §1–2 The store directory and config.json

    @Test func initWritesTheDocumentedLayoutAndDefaultConfig() throws {
        let dir = TemporaryDirectory()
        _ = try Store.create(at: dir.sub("store"))
        for path in ["packs", "tmp", "index.mdb", "index.mdb-lock", "config.json"] {
            #expect(FileManager.default.fileExists(atPath: dir.sub("store/" + path)), "\(path)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir.sub("store/config.json.tmp")))

        let text = try String(contentsOfFile: dir.sub("store/config.json"), encoding: .utf8)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        #expect(Set(json.keys) == ["chunker", "compression", "format", "pack_size", "version"])
        #expect(json["format"] as? String == "cairn-store")
        #expect(json["version"] as? Int == 1)
        #expect(json["pack_size"] as? Int == 67_108_864)
        let chunker = try #require(json["chunker"] as? [String: Any])
        #expect(Set(chunker.keys) == ["algorithm", "avg", "max", "min", "slice"])
        #expect(chunker["algorithm"] as? String == "fastcdc-gear64-nc2")
        #expect(chunker["min"] as? Int == 16384)
        #expect(chunker["avg"] as? Int == 65536)
        #expect(chunker["max"] as? Int == 262_144)
        #expect(chunker["slice"] as? Int == 131_072)
        let compression = try #require(json["compression"] as? [String: Any])
        #expect(Set(compression.keys) == ["codec", "level"])
        #expect(compression["codec"] as? String == "zstd")
        #expect(compression["level"] as? Int == 3)
        // Pretty-printed (one key per line) with sorted keys.
        let positions = ["chunker", "compression", "format", "pack_size", "version"].map {
            text.range(of: "\n  \"\($0)\"")?.lowerBound
        }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
    }

    /// §2: every key is required except `chunker.slice`, whose absence means min(2·avg, max).
    @Test func everyConfigKeyButSliceIsRequired() throws {
        let dir = TemporaryDirectory()
        // max < 2·avg, so the default slice is max.
        _ = try makeStore(dir, chunker: ChunkerParameters(min: 2 << 10, avg: 8 << 10, max: 12 << 10))
        let path = dir.sub("store/config.json")
        let original = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any]
        )
        func write(without key: [String]) throws {
            var config = original
            if key.count == 1 {
                config.removeValue(forKey: key[0])
            } else {
                var inner = try #require(config[key[0]] as? [String: Any])
                inner.removeValue(forKey: key[1])
                config[key[0]] = inner
            }
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
        }
        let required = [
            ["format"], ["version"], ["pack_size"], ["chunker"], ["compression"],
            ["chunker", "algorithm"], ["chunker", "min"], ["chunker", "avg"], ["chunker", "max"],
            ["compression", "codec"], ["compression", "level"],
        ]
        for key in required {
            try write(without: key)
            #expect(throws: CairnStoreError.self, "\(key.joined(separator: "."))") {
                try Store.open(at: dir.sub("store"))
            }
        }
        try write(without: ["chunker", "slice"])
        let reopened = try Store.open(at: dir.sub("store"))
        #expect(reopened.config.chunker.slice == 12 << 10)
    }

    /// §2's constraints on each value.
    @Test func configValuesAreCheckedAsDocumented() throws {
        func accepted(_ chunker: ChunkerParameters, level: Int = 3, packSize: Int = 64 << 20) -> Bool {
            (try? StoreConfig(chunker: chunker, compressionLevel: level, packSize: packSize).validate()) != nil
        }
        let base = ChunkerParameters(min: 64, avg: 128, max: 256)
        #expect(accepted(base))
        #expect(accepted(ChunkerParameters(min: 1 << 20, avg: 4 << 20, max: 16 << 20)))
        #expect(!accepted(ChunkerParameters(min: 63, avg: 128, max: 256)))  // min below 64
        #expect(!accepted(ChunkerParameters(min: 128, avg: 128, max: 256)))  // min = avg
        #expect(!accepted(ChunkerParameters(min: 64, avg: 256, max: 256)))  // avg = max
        #expect(!accepted(ChunkerParameters(min: 64, avg: 192, max: 256)))  // avg not a power of two
        #expect(!accepted(ChunkerParameters(min: 1 << 20, avg: 4 << 20, max: (16 << 20) + 8)))  // max over 16 MiB
        // Slices: a multiple of 8, 64 ≤ slice ≤ max.
        #expect(accepted(ChunkerParameters(min: 64, avg: 128, max: 256, slice: 64)))
        #expect(accepted(ChunkerParameters(min: 64, avg: 128, max: 256, slice: 256)))
        #expect(!accepted(ChunkerParameters(min: 64, avg: 128, max: 256, slice: 56)))
        #expect(!accepted(ChunkerParameters(min: 64, avg: 128, max: 256, slice: 100)))
        #expect(!accepted(ChunkerParameters(min: 64, avg: 128, max: 256, slice: 264)))
        // Compression level 1…19, pack size 1 MiB … 1 GiB.
        #expect(accepted(base, level: 1) && accepted(base, level: 19))
        #expect(!accepted(base, level: 0) && !accepted(base, level: 20))
        #expect(accepted(base, packSize: 1 << 20) && accepted(base, packSize: 1 << 30))
        #expect(!accepted(base, packSize: (1 << 20) - 1) && !accepted(base, packSize: (1 << 30) + 1))
        // Format name, version and algorithm are fixed.
        var config = StoreConfig(chunker: base)
        config.version = 2
        #expect(throws: CairnStoreError.self) { try config.validate() }
        config = StoreConfig(chunker: base)
        config.format = "cairn"
        #expect(throws: CairnStoreError.self) { try config.validate() }
        var chunker = base
        chunker.algorithm = "fastcdc"
        #expect(!accepted(chunker))
    }

    // MARK: §4–5 Codecs and pack files

    @Test func codecIdsAndNamesAreTheDocumentedOnes() {
        #expect(Codec.allCases.map { "\($0.rawValue) \($0)" } == ["0 raw", "1 zstd", "2 byte-grouped", "3 delta"])
    }

    /// §5, byte by byte: header, records back to back from offset 16, TOC, trailer; and §4: raw
    /// records hold the chunk's bytes, zstd records one zstd frame of them.
    @Test func aPackIsLaidOutAsDocumented() throws {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, packSize: 64 << 20)
        let noise = FixtureData.bytes(count: 300_000, seed: 41)
        let text = FixtureData.text(count: 200_000, seed: 42)
        try writeFile(dir.sub("in/noise.bin"), noise)
        try writeFile(dir.sub("in/text.txt"), text)
        let (manifest, _) = try push(store, dir.sub("in"))
        let packs = packFiles(store.root)
        try #require(packs.count == 1)
        let name = URL(fileURLWithPath: packs[0]).lastPathComponent
        let parent = URL(fileURLWithPath: packs[0]).deletingLastPathComponent().lastPathComponent
        #expect(name.count == 16 + 5 && name.hasSuffix(".pack") && name == name.lowercased())
        #expect(parent == String(name.prefix(2)))
        let packID = try #require(UInt64(name.prefix(16), radix: 16))
        let pack = try readFile(packs[0])

        // Header.
        #expect(Array(pack[0..<8]) == Array("CAIRNPAK".utf8))
        #expect(le(pack, 8, as: UInt32.self) == 1)
        #expect(le(pack, 12, as: UInt32.self) == 0)
        // Trailer.
        let trailer = pack.count - 64
        let tocOffset = Int(le(pack, trailer, as: UInt64.self))
        let count = Int(le(pack, trailer + 8, as: UInt64.self))
        #expect(Array(pack[(trailer + 56)...]) == Array("CAIRNEND".utf8))
        #expect(le(pack, trailer + 48, as: UInt64.self) == packID)
        #expect(tocOffset + 56 * count + 64 == pack.count)
        #expect(
            sha256(Array(pack[tocOffset..<tocOffset + 56 * count])).bytes
                == Array(pack[(trailer + 16)..<(trailer + 48)])
        )

        // Records in file order, each described by the TOC entry of the same index.
        var chunks: [SHA256Digest: [UInt8]] = [:]
        for file in manifest.files {
            let bytes = file.path == "noise.bin" ? noise : text
            for (chunk, offset) in zip(file.chunks, file.chunkOffsets()) {
                chunks[chunk.id] = Array(bytes[Int(offset)..<Int(offset) + Int(chunk.length)])
            }
        }
        var at = 16
        var ids = Set<SHA256Digest>()
        var codecs = Set<UInt8>()
        for i in 0..<count {
            let entry = tocOffset + 56 * i
            let id = SHA256Digest(bytes: pack[entry..<entry + 32])!
            #expect(ids.insert(id).inserted, "each id at most once per pack")
            #expect(le(pack, entry + 32, as: UInt64.self) == UInt64(at))
            let raw = Int(le(pack, entry + 40, as: UInt32.self))
            let stored = Int(le(pack, entry + 44, as: UInt32.self))
            let codec = pack[entry + 48]
            #expect(pack[(entry + 49)..<(entry + 56)].allSatisfy { $0 == 0 })

            #expect(Array(pack[at..<at + 4]) == [0x43, 0x52, 0x45, 0x43])  // "CREC"
            #expect(pack[at + 4] == codec)
            #expect(pack[(at + 5)..<(at + 8)].allSatisfy { $0 == 0 })
            #expect(Int(le(pack, at + 8, as: UInt32.self)) == raw)
            #expect(Int(le(pack, at + 12, as: UInt32.self)) == stored)
            #expect(SHA256Digest(bytes: pack[(at + 16)..<(at + 48)]) == id)
            let data = Array(pack[(at + 48)..<(at + 48 + stored)])
            let original = try #require(chunks[id])
            #expect(original.count == raw)
            switch codec {
            case 0:
                #expect(stored == raw && data == original)
            case 1:
                #expect(Array(data.prefix(4)) == [0x28, 0xB5, 0x2F, 0xFD])  // a zstd frame
                #expect(try unzstd(data, rawLength: raw) == original)
            default:
                Issue.record("codec \(codec) for a plain file")
            }
            #expect(sha256(original) == id)
            codecs.insert(codec)
            at += 48 + stored
        }
        #expect(at == tocOffset, "records end where the TOC starts")
        #expect(ids == Set(chunks.keys))
        #expect(codecs == [0, 1], "noise is stored raw, text as zstd")
    }

    /// §5: a pack is sealed before a record whose header, data and TOC entry, with the trailer,
    /// would take it past `pack_size`. Records of 48 + 8000 bytes and TOC entries of 56: 130 of them
    /// make a pack one byte longer than this pack size, so a full pack holds 129.
    @Test func packsAreSealedBeforeTheyPassThePackSize() throws {
        let slice = 8000
        let packSize = 16 + 130 * (48 + slice + 56) + 64 - 1
        let dir = TemporaryDirectory()
        let store = try makeStore(dir, packSize: packSize)
        try writeFile(dir.sub("in/noise.bin"), FixtureData.bytes(count: 400 * slice, seed: 43))
        let planner: ChunkingPlanner = { file, _ in
            ChunkingPlan(segments: [.init(range: 0..<file.size, method: .fixed(slice))])
        }
        let staged = try store.stage(directory: dir.sub("in"), planner: planner)
        _ = try store.commit(staged) { _, info in info }
        let sizes = try packFiles(store.root).map { try readFile($0).count }.sorted()
        let full = 16 + 129 * (48 + slice + 56) + 64
        #expect(sizes == [16 + 13 * (48 + slice + 56) + 64, full, full, full])
        #expect(sizes.allSatisfy { $0 <= packSize })
    }

    // MARK: §4 and §6 Byte planes, deltas and the index

    /// Float slices are stored as byte planes (codec 2); the same slices of a lightly changed copy,
    /// given the first ones as references, as deltas (codec 3). Both decode by §4's description,
    /// and §6's index entries are 25 bytes, or 57 with the reference for a delta.
    @Test func bytePlanesAndDeltasAreEncodedAndIndexedAsDocumented() throws {
        let slice = 8192
        let dir = TemporaryDirectory()
        var rng = SplitMix64(seed: 44)
        // fp32 of one binade and bf16 with one exponent: their exponent planes compress.
        var f32 = [UInt8]()
        for _ in 0..<(16 * slice / 4) {
            let bits = UInt32(truncatingIfNeeded: rng.next()) & 0x807F_FFFF | 0x3F00_0000
            withUnsafeBytes(of: bits.littleEndian) { f32 += $0 }
        }
        var bf16 = [UInt8]()
        for _ in 0..<(16 * slice / 2) {
            let bits = UInt16(truncatingIfNeeded: rng.next()) & 0x807F | 0x3F00
            withUnsafeBytes(of: bits.littleEndian) { bf16 += $0 }
        }
        // The fine-tune: every 7th element a few units of its last place up or down.
        func tuned(_ bytes: [UInt8], elementSize: Int) -> [UInt8] {
            var out = bytes
            for e in stride(from: 0, to: bytes.count / elementSize, by: 7) {
                let step = UInt8(1 + e % 3)
                out[e * elementSize] = e % 2 == 0 ? out[e * elementSize] &+ step : out[e * elementSize] &- step
            }
            return out
        }
        let base = ["w32.bin": f32, "w16.bin": bf16]
        let tune = ["w32.bin": tuned(f32, elementSize: 4), "w16.bin": tuned(bf16, elementSize: 2)]
        for (name, bytes) in base { try writeFile(dir.sub("base/" + name), bytes) }
        for (name, bytes) in tune { try writeFile(dir.sub("tune/" + name), bytes) }
        func planner(references: [String: [SHA256Digest]]) -> ChunkingPlanner {
            { file, _ in
                let elementSize = file.relativePath == "w32.bin" ? 4 : 2
                return ChunkingPlan(segments: [
                    .init(
                        range: 0..<file.size,
                        method: .fixed(slice),
                        elementSize: elementSize,
                        references: references[file.relativePath]
                    )
                ])
            }
        }

        let baseManifest: Manifest
        let tuneManifest: Manifest
        weak var released: Store?
        do {
            let store = try makeStore(dir, packSize: 64 << 20)
            released = store
            let stagedBase = try store.stage(directory: dir.sub("base"), planner: planner(references: [:]))
            _ = try store.commit(stagedBase) { _, info in info }
            baseManifest = stagedBase.manifest
            let references = Dictionary(uniqueKeysWithValues: baseManifest.files.map { ($0.path, $0.chunks.map(\.id)) })
            let stagedTune = try store.stage(directory: dir.sub("tune"), planner: planner(references: references))
            _ = try store.commit(stagedTune) { _, info in info }
            tuneManifest = stagedTune.manifest
        }

        // Every record of every pack, by chunk id: codec and stored bytes.
        var records: [SHA256Digest: (codec: UInt8, data: [UInt8], pack: UInt64, offset: Int)] = [:]
        var packSizes: [UInt64: (size: Int, count: Int)] = [:]
        for path in packFiles(dir.sub("store")) {
            let pack = try readFile(path)
            let id = try #require(UInt64(URL(fileURLWithPath: path).lastPathComponent.prefix(16), radix: 16))
            let tocOffset = Int(le(pack, pack.count - 64, as: UInt64.self))
            let count = Int(le(pack, pack.count - 56, as: UInt64.self))
            packSizes[id] = (pack.count, count)
            for i in 0..<count {
                let entry = tocOffset + 56 * i
                let at = Int(le(pack, entry + 32, as: UInt64.self))
                let stored = Int(le(pack, entry + 44, as: UInt32.self))
                records[SHA256Digest(bytes: pack[entry..<entry + 32])!] = (
                    pack[entry + 48], Array(pack[(at + 48)..<(at + 48 + stored)]), id, at
                )
            }
        }

        for file in baseManifest.files {
            let elementSize = file.path == "w32.bin" ? 4 : 2
            let bytes = base[file.path]!
            for (i, chunk) in file.chunks.enumerated() {
                let record = try #require(records[chunk.id])
                #expect(record.codec == 2, "\(file.path) slice \(i) is stored as byte planes")
                let raw = Array(bytes[(i * slice)..<((i + 1) * slice)])
                #expect(record.data.count < raw.count)
                let (e, words) = try planes(record.data, rawLength: slice)
                #expect(e == elementSize)
                // w is the element rotated left by one bit: rotating it back gives the element.
                let bitCount = 8 * e
                let mask: UInt64 = e == 4 ? 0xFFFF_FFFF : 0xFFFF
                let decoded = words.map { w in (w >> 1 | w << UInt64(bitCount - 1)) & mask }
                #expect(decoded == elements(raw, size: e))
            }
        }
        for file in tuneManifest.files {
            let elementSize = file.path == "w32.bin" ? 4 : 2
            let parentFile = try #require(baseManifest.file(file.path))
            for (i, chunk) in file.chunks.enumerated() {
                let record = try #require(records[chunk.id])
                #expect(record.codec == 3, "\(file.path) slice \(i) is stored as a delta")
                let reference = parentFile.chunks[i].id
                #expect(SHA256Digest(bytes: record.data.prefix(32)) == reference)
                #expect(record.data.count < slice * 6 / 10)
                let (e, words) = try planes(Array(record.data.dropFirst(32)), rawLength: slice)
                #expect(e == elementSize)
                // ord(c) = ord(r) + unzigzag(w), wrapping at 8E bits.
                let top: UInt64 = 1 << UInt64(8 * e - 1)
                let mask: UInt64 = e == 4 ? 0xFFFF_FFFF : 0xFFFF
                func ord(_ x: UInt64) -> UInt64 { x & top != 0 ? ~x & mask : x | top }
                func unord(_ u: UInt64) -> UInt64 { u & top != 0 ? u & ~top : ~u & mask }
                let r = elements(Array(base[file.path]![(i * slice)..<((i + 1) * slice)]), size: e)
                let decoded = zip(words, r).map { w, r in unord((ord(r) &+ ((w >> 1) ^ (0 &- (w & 1)))) & mask) }
                #expect(decoded == elements(Array(tune[file.path]![(i * slice)..<((i + 1) * slice)]), size: e))
            }
        }

        // §6, read with LMDB once the store is closed.
        #expect(released == nil, "the store is closed before its index is opened again")
        let environment = try Environment(path: dir.sub("store/index.mdb"), maxDatabases: 64)
        defer { environment.close() }
        let chunksDB = try environment.openDatabase("chunks")
        let packsDB = try environment.openDatabase("packs")
        let manifestsDB = try environment.openDatabase("manifests")
        let retiredDB = try environment.openDatabase("retired-packs")
        let metaDB = try environment.openDatabase("store-meta")
        try environment.read { txn in
            let deltas = Set(tuneManifest.files.flatMap { $0.chunks.map(\.id) })
            var seen = 0
            try txn.forEach(chunksDB) { key, value in
                let id = SHA256Digest(bytes: key)
                let entry = Array(value)
                seen += 1
                guard key.count == 32, let record = records[id] else {
                    Issue.record("chunk \(id.hex) is indexed but in no pack")
                    return true
                }
                #expect(entry.count == (deltas.contains(id) ? 57 : 25))
                #expect(le(entry, 0, as: UInt64.self) == record.pack)
                #expect(le(entry, 8, as: UInt64.self) == UInt64(record.offset))
                #expect(Int(le(entry, 16, as: UInt32.self)) == record.data.count)
                #expect(le(entry, 20, as: UInt32.self) == UInt32(slice))
                #expect(entry[24] == record.codec)
                if entry.count == 57 {
                    // The reference: the id the delta's stored bytes begin with.
                    #expect(entry[25..<57] == record.data[0..<32])
                }
                return true
            }
            #expect(seen == records.count)
            var packs = 0
            try txn.forEach(packsDB) { key, value in
                let id = be(Array(key), 0, as: UInt64.self)
                let entry = Array(value)
                #expect(key.count == 8 && entry.count == 20)
                #expect(Int(le(entry, 0, as: UInt64.self)) == packSizes[id]?.size)
                #expect(Int(le(entry, 8, as: UInt32.self)) == packSizes[id]?.count)
                let created = Double(Int64(bitPattern: le(entry, 12, as: UInt64.self)))
                #expect(abs(created - Date().timeIntervalSince1970) < 3600)
                packs += 1
                return true
            }
            #expect(packs == packSizes.count)
            for manifest in [baseManifest, tuneManifest] {
                let stored = try #require(try txn.get(manifestsDB, key: manifest.id.bytes))
                #expect(stored == manifest.encoded() && sha256(stored) == manifest.id)
            }
            #expect(try txn.count(manifestsDB) == 2)
            #expect(try txn.count(retiredDB) == 0 && txn.count(metaDB) == 0)
        }
    }

    // MARK: §7 Manifests

    @Test func theManifestEncodingIsTheDocumentedOne() throws {
        let idA = sha256(Array("a".utf8))
        let idB = sha256(Array("b".utf8))
        let fileSHA = sha256(Array("whole".utf8))
        // Bytewise order: "B" (0x42) before "a" (0x61) before "é" (0xC3 0xA9).
        let manifest = Manifest(files: [
            FileEntry(path: "é/x.bin", size: 0, sha256: sha256([]), chunks: []),
            FileEntry(
                path: "a.txt",
                size: 7,
                sha256: fileSHA,
                chunks: [ChunkRef(id: idA, length: 3), ChunkRef(id: idB, length: 4)]
            ),
            FileEntry(path: "B", size: 1, sha256: idA, chunks: [ChunkRef(id: idA, length: 1)]),
        ])
        var expected = Array("CAIRNMF1".utf8) + le32(3)
        func entry(_ path: String, _ size: UInt64, _ sha: SHA256Digest, _ chunks: [(SHA256Digest, UInt32)]) -> [UInt8] {
            var out = withUnsafeBytes(of: UInt16(path.utf8.count).littleEndian) { Array($0) } + Array(path.utf8)
            out += withUnsafeBytes(of: size.littleEndian) { Array($0) } + sha.bytes + le32(UInt32(chunks.count))
            for (id, length) in chunks { out += id.bytes + le32(length) }
            return out
        }
        expected += entry("B", 1, idA, [(idA, 1)])
        expected += entry("a.txt", 7, fileSHA, [(idA, 3), (idB, 4)])
        expected += entry("é/x.bin", 0, sha256([]), [])
        #expect(manifest.encoded() == expected)
        #expect(manifest.id == sha256(expected))
        #expect(try expected.withUnsafeBytes { try Manifest.decode($0) } == manifest)
    }

    // MARK: Helpers

    /// Decodes §4's byte-plane encoding: the element size E and each element's value w (plane k
    /// holding byte k of w, most significant first). The trailing plane must be empty here.
    private func planes(_ encoding: [UInt8], rawLength: Int) throws -> (Int, [UInt64]) {
        let e = Int(encoding[0])
        try #require(e == 2 || e == 4)
        let n = rawLength / e
        var at = 1 + 5 * (e + 1)
        var planes: [[UInt8]] = []
        for k in 0...e {
            let mode = encoding[1 + 5 * k]
            let length = Int(le(encoding, 2 + 5 * k, as: UInt32.self))
            let bytes = Array(encoding[at..<at + length])
            let size = k < e ? n : rawLength % e
            switch mode {
            case 0: planes.append(bytes)
            case 1: planes.append(try unzstd(bytes, rawLength: size))
            default: Issue.record("plane \(k) has mode \(mode)")
            }
            #expect(planes.last?.count == size)
            at += length
        }
        #expect(at == encoding.count, "the encoding ends after its last plane")
        #expect(planes[e].isEmpty && encoding[1 + 5 * e] == 0)
        let words = (0..<n).map { i in (0..<e).reduce(UInt64(0)) { w, k in w << 8 | UInt64(planes[k][i]) } }
        return (e, words)
    }

    private func elements(_ bytes: [UInt8], size: Int) -> [UInt64] {
        stride(from: 0, to: bytes.count, by: size).map { i in
            size == 4 ? UInt64(le(bytes, i, as: UInt32.self)) : UInt64(le(bytes, i, as: UInt16.self))
        }
    }

    private func unzstd(_ frame: [UInt8], rawLength: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: rawLength)
        let n = try frame.withUnsafeBytes { src in
            try out.withUnsafeMutableBytes { try ZstdDecompressor().decompress(src, into: $0) }
        }
        #expect(n == rawLength)
        return out
    }

    private func le32(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
}

/// The little-endian integer at `offset` of `bytes`.
private func le<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type) -> T {
    (0..<MemoryLayout<T>.size).reduce(T(0)) { value, k in value | T(bytes[offset + k]) << (8 * k) }
}

/// The big-endian integer at `offset` of `bytes`.
private func be<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type) -> T {
    (0..<MemoryLayout<T>.size).reduce(T(0)) { value, k in value << 8 | T(bytes[offset + k]) }
}
