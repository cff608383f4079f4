import CairnFixtures
import CairnFormats
import CairnRegistry
import CairnStore
import Foundation
import Testing

/// The parsed header of a safetensors file on disk.
func readHeader(_ url: URL) throws -> (header: SafetensorsHeader, bytes: [UInt8]) {
    let bytes = [UInt8](try Data(contentsOf: url))
    let n = try SafetensorsHeader.headerLength(bytes.prefix(8), fileSize: Int64(bytes.count))
    return (try SafetensorsHeader.parse(headerBytes: bytes[8..<8 + n], fileSize: Int64(bytes.count)), bytes)
}

/// A tensor's bytes in a file's bytes.
func tensorBytes(_ t: SafetensorsHeader.Tensor, in file: [UInt8]) -> [UInt8] {
    Array(file[Int(t.fileRange.lowerBound)..<Int(t.fileRange.upperBound)])
}

extension RegistryFixture {
    @discardableResult
    func push(
        _ directory: URL,
        model: String = "m",
        configure: (inout PushRequest) -> Void = { _ in }
    ) throws -> VersionRecord {
        var request = PushRequest(model: model, actor: "alice")
        configure(&request)
        let result = try registry.push(directory: directory.path, request: request)
        return try registry.resolve(try Reference(parsing: "\(model)@\(result.version)"))
    }
}

@Suite struct TensorPullTests {
    @Test func pulledTensorsAreByteExactUnderANewHeader() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeBase(to: f.dir("base"), shape: .tiny, seed: 4)
        let version = try f.push(f.dir("base"))
        let out = f.dir("out")
        let result = try f.registry.pullTensors(
            version,
            matching: ["model.layers.0.*", "lm_head.weight"],
            to: out.path
        )
        #expect(result.tensors == 10)

        var written: [String: String] = [:]  // tensor → shard
        var total: Int64 = 0
        for shard in FixtureModels.baseShardFiles {
            let (original, originalBytes) = try readHeader(f.dir("base").appendingPathComponent(shard))
            let (pulled, pulledBytes) = try readHeader(out.appendingPathComponent(shard))
            #expect(pulled.metadata == original.metadata && pulled.metadata == ["format": "pt"])
            let expected = original.tensors.filter {
                $0.name.hasPrefix("model.layers.0.") || $0.name == "lm_head.weight"
            }
            #expect(pulled.tensors.map(\.name) == expected.map(\.name), "\(shard): same tensors, same order")
            #expect(
                Int64(pulledBytes.count) == pulled.dataStart + expected.reduce(0) { $0 + $1.byteCount },
                "no gaps, nothing extra"
            )
            for t in expected {
                let p = try #require(pulled.tensor(named: t.name))
                #expect(p.dtype == t.dtype && p.shape == t.shape)
                #expect(tensorBytes(p, in: pulledBytes) == tensorBytes(t, in: originalBytes), "\(t.name)")
                written[t.name] = shard
                total += t.byteCount
            }
        }
        #expect(written.count == 10 && result.tensorBytes == total)
        // The index lists exactly the written tensors; other files are not written.
        let index =
            try JSONSerialization.jsonObject(
                with: Data(contentsOf: out.appendingPathComponent(FixtureModels.indexFile))
            ) as! [String: Any]
        #expect(index["weight_map"] as? [String: String] == written)
        #expect(((index["metadata"] as? [String: Any])?["total_size"] as? NSNumber)?.int64Value == total)
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(names == FixtureModels.baseShardFiles + [FixtureModels.indexFile])
    }

    @Test func shardedModelsWorkAcrossShards() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeResharded(to: f.dir("resharded"), shape: .tiny, seed: 2)
        let version = try f.push(f.dir("resharded"))
        let originalIndex = try SafetensorsIndex.parse(
            [UInt8](Data(contentsOf: f.dir("resharded").appendingPathComponent(FixtureModels.indexFile)))
        )
        let wanted = FixtureModels.tensorNames(ofLayer: 2)
        let shardsWithLayer2 = Set(wanted.map { originalIndex.weightMap[$0]! })
        #expect(shardsWithLayer2.count > 1, "the shuffle spreads a layer over shards")

        let out = f.dir("out")
        let result = try f.registry.pullTensors(version, matching: ["model.layers.2.*"], to: out.path)
        #expect(result.tensors == wanted.count)
        let files = Set(try FileManager.default.contentsOfDirectory(atPath: out.path))
        #expect(files == shardsWithLayer2.union([FixtureModels.indexFile]), "only shards with a match are written")
        var found: [String: String] = [:]
        for shard in shardsWithLayer2 {
            let (original, originalBytes) = try readHeader(f.dir("resharded").appendingPathComponent(shard))
            let (pulled, pulledBytes) = try readHeader(out.appendingPathComponent(shard))
            for t in pulled.tensors {
                found[t.name] = shard
                #expect(
                    tensorBytes(t, in: pulledBytes)
                        == tensorBytes(try #require(original.tensor(named: t.name)), in: originalBytes)
                )
            }
        }
        #expect(found == originalIndex.weightMap.filter { wanted.contains($0.key) })
        let index = try SafetensorsIndex.parse(
            [UInt8](Data(contentsOf: out.appendingPathComponent(FixtureModels.indexFile)))
        )
        #expect(index.weightMap == found)
    }

    @Test func tensorPatternsCombineWithFileSelection() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeBase(to: f.dir("base"), shape: .tiny, seed: 1)
        let version = try f.push(f.dir("base"))
        // Only the second shard is selected: layer 0 (first shard) is not found there.
        let second = try FileSelection(exclude: [FixtureModels.baseShardFiles[0]])
        #expect {
            try f.registry.pullTensors(version, matching: ["model.layers.0.*"], to: f.dir("a").path, selection: second)
        } throws: {
            let e = $0 as? RegistryError
            return e?.code == .notFound && e!.message.contains("matches model.layers.0.*")
                && e!.message.contains("selected files")
        }
        #expect(!FileManager.default.fileExists(atPath: f.dir("a").path + "/" + FixtureModels.baseShardFiles[1]))
        // An include of config.json brings it along; the index is not selected so it is not written.
        let selection = try FileSelection(include: ["*.safetensors", "config.json"])
        let result = try f.registry.pullTensors(
            version,
            matching: ["model.norm.weight", "model.layers.5.*"],
            to: f.dir("b").path,
            selection: selection
        )
        #expect(result.files.map(\.path) == [FixtureModels.baseShardFiles[1], FixtureModels.configFile])
        #expect(
            try Data(contentsOf: f.dir("b").appendingPathComponent(FixtureModels.configFile))
                == Data(contentsOf: f.dir("base").appendingPathComponent(FixtureModels.configFile))
        )
        // No match at all names the patterns.
        #expect {
            try f.registry.pullTensors(version, matching: ["nope.*", "also.nope"], to: f.dir("c").path)
        } throws: {
            ($0 as? RegistryError)?.code == .notFound && "\($0)" == "no tensor of m@1 matches nope.*, also.nope"
        }
        // The adapter only.
        try FixtureModels.writeLoRA(to: f.dir("lora"), shape: .tiny, seed: 1, variantSeed: 2)
        let lora = try f.push(f.dir("lora"), model: "lora")
        let adapter = try f.registry.pullTensors(lora, matching: ["*.lora_A.weight"], to: f.dir("d").path)
        #expect(
            adapter.tensors == 2 * FixtureModels.Shape.tiny.layers
                && adapter.files.map(\.path) == [FixtureModels.adapterFile]
        )
    }

    @Test func oneTensorReadsOnlyItsOwnChunks() throws {
        let f = try RegistryFixture()
        let shape = FixtureModels.Shape.small
        try FixtureModels.writeBase(to: f.dir("base"), shape: shape, seed: 3)
        let version = try f.push(f.dir("base"))
        let manifest = try f.registry.manifest(of: version)
        let shard = try #require(manifest.file(FixtureModels.baseShardFiles[1]))
        let name = "model.layers.6.mlp.up_proj.weight"
        let (header, _) = try readHeader(f.dir("base").appendingPathComponent(shard.path))
        let tensor = try #require(header.tensor(named: name))
        #expect(shard.size > 3_000_000 && tensor.byteCount == 196_608)
        // The tensor starts and ends on chunk boundaries.
        let offsets = shard.chunkOffsets()
        #expect(offsets.contains(tensor.fileRange.lowerBound) && offsets.contains(tensor.fileRange.upperBound))

        let store = f.registry.store
        let before = store.bytesReadFromPacks
        try f.registry.pullTensors(version, matching: [name], to: f.dir("one").path)
        let read = store.bytesReadFromPacks - before
        let headerChunk = Int64(shard.chunks[0].length)
        let slack: Int64 = 4096
        #expect(
            read <= tensor.byteCount + headerChunk + slack,
            "read \(read) bytes for a tensor of \(tensor.byteCount)"
        )
        #expect(read * 15 < shard.size, "read \(read) of a \(shard.size)-byte file")

        let fullBefore = store.bytesReadFromPacks
        try f.registry.pull(version, to: f.dir("all").path)
        let full = store.bytesReadFromPacks - fullBefore
        #expect(read * 30 < full, "one tensor \(read) vs full pull \(full)")
    }
}

@Suite struct TensorListingTests {
    @Test func showTensorsListsEveryTensorFromTheHeadersOnly() throws {
        let f = try RegistryFixture()
        let shape = FixtureModels.Shape.small
        try FixtureModels.writeBase(to: f.dir("base"), shape: shape, seed: 1)
        try FixtureModels.writeLoRA(to: f.dir("base"), shape: shape, seed: 1, variantSeed: 5)
        let version = try f.push(f.dir("base"))
        let before = f.registry.store.bytesReadFromPacks
        let tensors = try f.registry.tensors(of: version)
        let read = f.registry.store.bytesReadFromPacks - before
        let expectedNames = FixtureModels.tensorNames(shape: shape)
        #expect(tensors.filter { $0.file != FixtureModels.adapterFile }.map(\.name).sorted() == expectedNames)
        #expect(tensors.filter { $0.file == FixtureModels.adapterFile }.count == 4 * shape.layers)
        let down = try #require(tensors.first { $0.name == "model.layers.2.mlp.down_proj.weight" })
        #expect(
            down.file == FixtureModels.baseShardFiles[0] && down.dtype == "BF16" && down.shape == [192, 512]
                && down.bytes == 196_608
        )
        // Offsets are real: the bytes at `offset` are the tensor's.
        let (header, _) = try readHeader(f.dir("base").appendingPathComponent(down.file))
        #expect(header.tensor(named: down.name)?.fileRange.lowerBound == down.offset)
        // Only the header chunks were read (three files, a few KB each), not the 8 MB of tensors.
        let manifest = try f.registry.manifest(of: version)
        let headerChunks = manifest.files.filter { $0.path.hasSuffix(".safetensors") }.reduce(Int64(0)) {
            $0 + Int64($1.chunks[0].length)
        }
        #expect(read <= headerChunks + 3 * 4096, "read \(read) bytes for headers of \(headerChunks)")
    }
}

@Suite struct DiffTests {
    @Test func variantWithTwoChangedLayers() throws {
        let f = try RegistryFixture()
        let shape = FixtureModels.Shape.small
        try FixtureModels.writeBase(to: f.dir("base"), shape: shape, seed: 1)
        try FixtureModels.writeVariant(to: f.dir("ft"), shape: shape, seed: 1, changedLayers: [1, 5], variantSeed: 9)
        try FileManager.default.createDirectory(at: f.dir("ds"), withIntermediateDirectories: true)
        try Data("base".utf8).write(to: f.dir("ds").appendingPathComponent("data.txt"))
        _ = try f.push(f.dir("ds"), model: "corpus")
        let base = try f.push(f.dir("base")) {
            $0.metrics = ["eval_loss": 2.0, "accuracy": 0.5, "old_metric": 1]
            $0.params = ["lr": "1e-4", "epochs": "3"]
            $0.tags = ["dataset": "tickets-v6", "owner": "ml"]
            $0.datasets = ["tickets-v6"]
        }
        try f.registry.promote(try Reference(parsing: "m@1"), to: .staging, actor: "alice")
        let ft = try f.push(f.dir("ft")) {
            $0.metrics = ["eval_loss": 1.75, "accuracy": 0.5, "bleu": 30]
            $0.params = ["lr": "2e-4", "epochs": "3", "warmup": "100"]
            $0.tags = ["dataset": "tickets-v7"]
            $0.parents = ["m@1"]
            $0.datasets = ["tickets-v7"]
            $0.source = "runs/42"
        }
        let from = try f.registry.resolve(try Reference(parsing: "m@1"))
        #expect(from.stage == .staging && base.version == 1)
        let d = try f.registry.diff(from, ft)

        #expect(d.from.reference == "m@1" && d.to.reference == "m@2")
        let m = d.metadata
        #expect(m.metrics.map(\.name) == ["accuracy", "bleu", "eval_loss", "old_metric"])
        #expect(m.metrics[2].from == 2.0 && m.metrics[2].to == 1.75 && m.metrics[2].delta == -0.25)
        #expect(
            m.metrics[0].delta == 0 && m.metrics[1].from == nil && m.metrics[1].delta == nil && m.metrics[3].to == nil
        )
        #expect(m.params == [.init(name: "lr", from: "1e-4", to: "2e-4"), .init(name: "warmup", from: nil, to: "100")])
        #expect(
            m.tags == [
                .init(name: "dataset", from: "tickets-v6", to: "tickets-v7"), .init(name: "owner", from: "ml", to: nil),
            ]
        )
        #expect(m.stage == .init(from: .staging, to: .experimental, changed: true))
        #expect(m.lineage.parentsAdded == ["m@1"] && m.lineage.parentsRemoved.isEmpty)
        #expect(m.lineage.datasetsAdded == ["tickets-v7"] && m.lineage.datasetsRemoved == ["tickets-v6"])
        #expect(m.lineage.source == .init(name: "source", from: nil, to: "runs/42"))

        #expect(
            d.files.changed.map(\.path) == FixtureModels.baseShardFiles,
            "layer 1 is in shard 1, layer 5 in shard 2"
        )
        #expect(d.files.unchanged == [FixtureModels.configFile, FixtureModels.indexFile, FixtureModels.tokenizerFile])
        #expect(d.files.added.isEmpty && d.files.removed.isEmpty)

        let changed = (FixtureModels.tensorNames(ofLayer: 1) + FixtureModels.tensorNames(ofLayer: 5)).sorted()
        #expect(d.tensors.changed.map(\.name).sorted() == changed)
        #expect(d.tensors.changed.allSatisfy { !$0.shapeChanged && !$0.dtypeChanged && $0.fromFile == $0.toFile })
        #expect(d.tensors.added.isEmpty && d.tensors.removed.isEmpty && d.tensors.moved.isEmpty)
        #expect(d.tensors.unchanged == FixtureModels.tensorNames(shape: shape).count - changed.count)
        #expect(d.tensors.comparedByHash == 0, "slice-aligned tensors are compared by chunk ids")

        // Storage: the changed layers are the only bytes not shared (the headers are identical).
        let changedBytes = Int64(
            FixtureModels.tensorBytes(of: 1, shape: shape) + FixtureModels.tensorBytes(of: 5, shape: shape)
        )
        #expect(d.storage.uniqueFromBytes == changedBytes && d.storage.uniqueToBytes == changedBytes)
        #expect(d.storage.sharedBytes == base.logicalBytes - changedBytes)

        // JSON keys are snake_case.
        let json = String(decoding: try JSONEncoder().encode(d), as: UTF8.self)
        for key in [
            "\"unique_from_bytes\"", "\"shared_bytes\"", "\"parents_added\"", "\"shape_changed\"", "\"from_sha256\"",
            "\"compared_by_chunks\"",
        ] {
            #expect(json.contains(key), "\(key)")
        }
    }

    @Test func reshardedCopyHasOnlyMovedTensors() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeBase(to: f.dir("base"), shape: .tiny, seed: 1)
        try FixtureModels.writeResharded(to: f.dir("re"), shape: .tiny, seed: 1)
        let a = try f.push(f.dir("base"))
        let b = try f.push(f.dir("re"))
        let d = try f.registry.diff(a, b)
        #expect(d.tensors.changed.isEmpty && d.tensors.added.isEmpty && d.tensors.removed.isEmpty)
        #expect(d.tensors.moved.count == FixtureModels.tensorNames(shape: .tiny).count && d.tensors.unchanged == 0)
        #expect(d.tensors.comparedByHash == 0)
        #expect(
            d.files.added.map(\.path) == FixtureModels.reshardedShardFiles
                && d.files.removed.map(\.path) == FixtureModels.baseShardFiles
        )
        #expect(d.storage.uniqueToBytes < 20_000)
    }

    @Test func shapeAndDtypeChangesAreCalledOut() throws {
        let f = try RegistryFixture()
        func write(_ dir: String, _ tensors: [(SafetensorsEncoder.Entry, [UInt8])]) throws -> URL {
            let url = f.dir(dir)
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            try Data(try SafetensorsEncoder.file(tensors, metadata: ["format": "pt"])).write(
                to: url.appendingPathComponent("model.safetensors")
            )
            return url
        }
        let data = (0..<48).map { UInt8($0) }
        let a = try f.push(
            try write(
                "a",
                [
                    (.init(name: "w", dtype: .f32, shape: [3, 4]), data),
                    (.init(name: "same", dtype: .u8, shape: [4]), [1, 2, 3, 4]),
                    (.init(name: "gone", dtype: .u8, shape: [1]), [9]),
                    (.init(name: "cast", dtype: .f32, shape: [2]), Array(data[0..<8])),
                ]
            )
        )
        let b = try f.push(
            try write(
                "b",
                [
                    (.init(name: "w", dtype: .f32, shape: [4, 3]), data),
                    (.init(name: "same", dtype: .u8, shape: [4]), [1, 2, 3, 4]),
                    (.init(name: "new", dtype: .u8, shape: [1]), [9]),
                    (.init(name: "cast", dtype: .bf16, shape: [4]), Array(data[0..<8])),
                ]
            )
        )
        let d = try f.registry.diff(a, b)
        let byName = Dictionary(uniqueKeysWithValues: d.tensors.changed.map { ($0.name, $0) })
        #expect(
            byName["w"]?.shapeChanged == true && byName["w"]?.dtypeChanged == false && byName["w"]?.fromShape == [3, 4]
        )
        #expect(
            byName["cast"]?.dtypeChanged == true && byName["cast"]?.shapeChanged == true
                && byName["cast"]?.toDtype == "BF16"
        )
        #expect(
            d.tensors.added.map(\.name) == ["new"] && d.tensors.removed.map(\.name) == ["gone"]
                && d.tensors.unchanged == 1
        )
    }

    @Test func tensorsCutDifferentlyAreComparedByHashing() throws {
        let f = try RegistryFixture()
        let shape = FixtureModels.Shape.tiny
        try FixtureModels.writeBase(to: f.dir("base"), shape: shape, seed: 1)
        try FixtureModels.writeVariant(to: f.dir("ft"), shape: shape, seed: 1, changedLayers: [2], variantSeed: 3)
        let base = try f.push(f.dir("base"))
        // The variant stored without tensor slicing (content-defined chunks only), as by an older
        // writer, and described by a version record that points at its manifest.
        let store = f.registry.store
        let staged = try store.stage(directory: f.dir("ft").path, planner: nil)
        try store.commit(staged) { _, _ in }
        var record = base
        record.version = 99
        record.manifest = staged.manifestID.hex
        let d = try f.registry.diff(base, record)
        #expect(d.tensors.changed.map(\.name).sorted() == FixtureModels.tensorNames(ofLayer: 2))
        #expect(d.tensors.comparedByHash > 0)
        #expect(d.tensors.unchanged == FixtureModels.tensorNames(shape: shape).count - 9)
    }
}

/// Malformed safetensors files: stored as plain files, and a clear error naming the file and the
/// problem for tensor pulls, tensor listings and diffs.
@Suite struct MalformedSafetensorsTests {
    /// A file from a JSON header text (padded to 8 bytes) and `dataCount` bytes of data.
    static func file(_ json: String, dataCount: Int) -> [UInt8] {
        var header = Array(json.utf8)
        while (8 + header.count) % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.count).littleEndian) { out += $0 }
        return out + header + (0..<dataCount).map { UInt8(truncatingIfNeeded: $0) }
    }

    static let valid = file(#"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}}"#, dataCount: 8)

    static let cases: [(String, [UInt8], String)] = [
        ("shorter than the length field", [1, 2, 3, 4, 5], "truncated: shorter than the 8-byte header length"),
        (
            "truncated header", Array(valid.prefix(30)),
            "header length \(valid.count - 16) is larger than the file (30 bytes)"
        ),
        (
            "header length larger than the file",
            [0x3F, 0x42, 0x0F, 0, 0, 0, 0, 0] + Array(#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#.utf8)
                + [UInt8](repeating: 0x20, count: 112 - 53),
            "header length 999999 is larger than the file (120 bytes)"
        ),
        ("bad JSON", file(#"{"a":{"dtype":"U8","#, dataCount: 8), "header is not valid JSON"),
        (
            "out-of-range offsets", file(#"{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}"#, dataCount: 8),
            "reach past the end of the data (8 bytes)"
        ),
        (
            "overlapping offsets",
            file(
                #"{"a":{"dtype":"U8","shape":[6],"data_offsets":[0,6]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#,
                dataCount: 8
            ),
            #"tensors "a" and "b" overlap"#
        ),
        (
            "unknown dtype", file(#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#, dataCount: 16),
            #"tensor "a": unknown dtype "F128""#
        ),
        (
            "shape/offset mismatch", file(#"{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}}"#, dataCount: 8),
            "needs 6 bytes, data_offsets span 8"
        ),
    ]

    @Test(arguments: 0..<cases.count) func malformedFileIsStoredAndGivesClearErrors(_ i: Int) throws {
        let (what, bytes, problem) = Self.cases[i]
        let f = try RegistryFixture()
        let good = f.dir("good")
        try FileManager.default.createDirectory(at: good, withIntermediateDirectories: true)
        try Data(Self.valid).write(to: good.appendingPathComponent("model.safetensors"))
        let bad = f.dir("bad")
        try FileManager.default.createDirectory(at: bad, withIntermediateDirectories: true)
        try Data(bytes).write(to: bad.appendingPathComponent("model.safetensors"))
        try Data("{}".utf8).write(to: bad.appendingPathComponent("config.json"))
        let v1 = try f.push(good)
        // Pushed as a plain file; a plain pull gives it back.
        let v2 = try f.push(bad)
        try f.registry.pull(v2, to: f.dir("plain").path)
        #expect(
            try Data(contentsOf: f.dir("plain").appendingPathComponent("model.safetensors")) == Data(bytes),
            "\(what)"
        )

        func expectProblem(_ label: String, prefix: String = "", _ body: () throws -> Void) {
            #expect(throws: RegistryError.self, "\(what): \(label)") { try body() }
            do {
                try body()
            } catch let error as RegistryError {
                #expect(error.code == .invalidArgument, "\(what): \(label)")
                #expect(error.message.hasPrefix(prefix + "model.safetensors: "), "\(what): \(label): \(error.message)")
                #expect(error.message.contains(problem), "\(what): \(label): \(error.message)")
            } catch {
                Issue.record("\(what): \(label): unexpected \(error)")
            }
        }
        expectProblem("--tensor") { try f.registry.pullTensors(v2, matching: ["*"], to: f.dir("out").path) }
        #expect(!FileManager.default.fileExists(atPath: f.dir("out").path + "/model.safetensors"), "nothing written")
        expectProblem("--tensors") { _ = try f.registry.tensors(of: v2) }
        expectProblem("diff", prefix: "m@2: ") { _ = try f.registry.diff(v1, v2) }
        // Excluding the file leaves nothing to match, which is a plain not-found.
        #expect {
            try f.registry.pullTensors(
                v2,
                matching: ["*"],
                to: f.dir("x").path,
                selection: try FileSelection(exclude: ["model.safetensors"])
            )
        } throws: { ($0 as? RegistryError)?.code == .notFound }
    }

    @Test func malformedIndexIsAClearError() throws {
        let f = try RegistryFixture()
        try FixtureModels.writeBase(to: f.dir("base"), shape: .tiny, seed: 1)
        try Data("{\"weight_map\": 3}".utf8).write(to: f.dir("base").appendingPathComponent(FixtureModels.indexFile))
        let v = try f.push(f.dir("base"))
        #expect {
            try f.registry.pullTensors(v, matching: ["lm_head.weight"], to: f.dir("out").path)
        } throws: {
            "\($0)" == "model.safetensors.index.json: index has no weight_map object"
        }
    }
}
