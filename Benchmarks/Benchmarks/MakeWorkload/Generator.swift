import CairnFixtures
import Foundation

/// The bf16 elements of one tensor, in memory owned by this object.
final class TensorBuffer {
    /// The elements (bf16 bit patterns, native byte order, which is little-endian here).
    let elements: UnsafeMutableBufferPointer<UInt16>

    /// Uninitialized memory for `count` elements.
    init(count: Int) {
        elements = .allocate(capacity: count)
    }

    deinit {
        elements.deallocate()
    }

    /// The elements as read-only memory.
    var readOnly: UnsafeBufferPointer<UInt16> { UnsafeBufferPointer(elements) }
}

/// Writes the model directories of one workload into `out`.
///
/// The base model's tensors are kept in memory (338 MB at full scale); a variant's changed tensors
/// are made one at a time, into one scratch buffer, just before they are written.
final class Generator {
    /// The directory the model directories go in.
    let out: String
    /// The dimensions and counts.
    let scale: Scale
    /// The `--seed`.
    let seed: UInt64

    /// Perturbation of the last two layers and the LM head in partial fine-tunes.
    static let partialStd = 0.002
    /// Perturbation of every tensor in full fine-tunes.
    static let fullFineTuneStd = 0.0005

    private let specs: [TensorSpec]
    private let baseShards: [[TensorSpec]]
    private var base: [String: TensorBuffer] = [:]
    private let scratch: TensorBuffer
    private let tokenizer: [UInt8]

    /// A generator of the workload of `scale` and `seed` into `out`.
    init(out: String, scale: Scale, seed: UInt64) {
        self.out = out
        self.scale = scale
        self.seed = seed
        specs = Layout.tensors(scale)
        baseShards = Layout.baseShards(specs, scale: scale)
        scratch = TensorBuffer(count: specs.map(\.count).max() ?? 0)
        tokenizer = Tokenizer.json(vocab: scale.vocab, seed: seed)
    }

    /// The directories in push order: base, the LoRA adapters, the partial and full fine-tunes, the re-sharded copy.
    var order: [String] {
        ["base"] + (1..<scale.loras + 1).map { "lora-" + twoDigits($0) }
            + (1..<scale.partials + 1).map { "partial-" + twoDigits($0) }
            + (1..<scale.fullFineTunes + 1).map { "fullft-" + twoDigits($0) } + ["resharded"]
    }

    /// Writes every directory of ``order``.
    func writeAll() throws {
        makeBase()
        try writeModel("base", shards: baseShards) { self.base[$0.name]!.readOnly }
        for k in 1..<scale.loras + 1 {
            try writeLoRA(k)
        }
        let partialTable = NormalTable(std: Self.partialStd)
        let lastLayers = scale.layers - 2..<scale.layers
        for k in 1..<scale.partials + 1 {
            try writeModel("partial-" + twoDigits(k), shards: baseShards) { spec in
                let changed = spec.name == "lm_head.weight" || spec.layer.map(lastLayers.contains) == true
                guard changed else { return self.base[spec.name]!.readOnly }
                return self.perturbed(spec, stream: .partial, k: k, table: partialTable)
            }
        }
        let fullTable = NormalTable(std: Self.fullFineTuneStd)
        for k in 1..<scale.fullFineTunes + 1 {
            try writeModel("fullft-" + twoDigits(k), shards: baseShards) { spec in
                self.perturbed(spec, stream: .fullFineTune, k: k, table: fullTable)
            }
        }
        let resharded = Layout.reshardedShards(specs, seed: seed)
        try writeModel("resharded", shards: resharded) { self.base[$0.name]!.readOnly }
    }

    /// Makes every base tensor: matrices ~N(0, 0.02), norm scales ~N(1, 0.02), each from the
    /// streams of (seed, base, name).
    private func makeBase() {
        let weights = NormalTable(std: Layout.weightStd)
        for spec in specs {
            let buffer = TensorBuffer(count: spec.count)
            let seed = Sampling.seed(seed, Stream.base.rawValue, Sampling.nameHash(spec.name))
            Sampling.fill(buffer.elements, seed: seed, table: weights, offset: spec.isNorm ? 1 : 0)
            base[spec.name] = buffer
        }
    }

    /// The base tensor of `spec` perturbed by `table`, from the streams of (seed, stream, k, name),
    /// in the scratch buffer (valid until the next call).
    private func perturbed(
        _ spec: TensorSpec,
        stream: Stream,
        k: Int,
        table: NormalTable
    ) -> UnsafeBufferPointer<UInt16> {
        let target = UnsafeMutableBufferPointer(rebasing: scratch.elements[0..<spec.count])
        let seed = Sampling.seed(seed, stream.rawValue, UInt64(k), Sampling.nameHash(spec.name))
        Sampling.perturb(base[spec.name]!.readOnly, into: target, seed: seed, table: table)
        return UnsafeBufferPointer(target)
    }

    /// Writes a model directory: the shards (`model-0000k-of-0000n.safetensors`, each tensor's data as
    /// `tensor` gives it, in shard order), the index, `config.json` and `tokenizer.json`.
    private func writeModel(
        _ name: String,
        shards: [[TensorSpec]],
        tensor: (TensorSpec) -> UnsafeBufferPointer<UInt16>
    ) throws {
        let directory = try makeDirectory(name)
        var weightMap: [(name: String, file: String)] = []
        for (k, shard) in shards.enumerated() {
            let file = Layout.shardFile(k + 1, of: shards.count)
            try writeSafetensors(directory + "/" + file, shard, tensor: tensor)
            weightMap += shard.map { ($0.name, file) }
        }
        let total = shards.joined().reduce(0) { $0 + $1.byteCount }
        let index = Layout.indexJSON(weightMap: weightMap, totalSize: total)
        try OutputFile.write(Array(index.utf8), to: directory + "/" + Layout.indexFile)
        let config = Layout.configJSON(scale, nameOrPath: "bench/" + name)
        try OutputFile.write(Array(config.utf8), to: directory + "/config.json")
        try OutputFile.write(tokenizer, to: directory + "/tokenizer.json")
    }

    /// Writes a LoRA adapter: `lora_A` ~N(0, 1/hidden) and `lora_B` ~N(0, 0.002²) for q_proj and v_proj
    /// of every layer (from the streams of (seed, lora, k, name)), and `adapter_config.json`.
    private func writeLoRA(_ k: Int) throws {
        let directory = try makeDirectory("lora-" + twoDigits(k))
        let tableA = NormalTable(std: Double(Float(1 / Double(scale.hidden).squareRoot())))
        let tableB = NormalTable(std: Self.partialStd)
        let tensors = Layout.loraTensors(scale)
        var buffers: [String: TensorBuffer] = [:]
        for spec in tensors {
            let buffer = TensorBuffer(count: spec.count)
            let seed = Sampling.seed(seed, Stream.lora.rawValue, UInt64(k), Sampling.nameHash(spec.name))
            let table = spec.name.hasSuffix("lora_A.weight") ? tableA : tableB
            Sampling.fill(buffer.elements, seed: seed, table: table, offset: 0)
            buffers[spec.name] = buffer
        }
        try writeSafetensors(directory + "/adapter_model.safetensors", tensors) { buffers[$0.name]!.readOnly }
        try OutputFile.write(Array(Layout.adapterConfigJSON().utf8), to: directory + "/adapter_config.json")
    }

    /// Writes one safetensors file (metadata `{"format": "pt"}`) holding `specs` in that order.
    private func writeSafetensors(
        _ path: String,
        _ specs: [TensorSpec],
        tensor: (TensorSpec) -> UnsafeBufferPointer<UInt16>
    ) throws {
        let file = try OutputFile(path)
        let layout = specs.map { (name: $0.name, dtype: "BF16", shape: $0.shape) }
        try file.write(SafetensorsWriter.header(for: layout, metadata: ["format": "pt"]))
        for spec in specs {
            let data = tensor(spec)
            precondition(data.count == spec.count, "tensor \(spec.name) has \(data.count) elements")
            try file.write(UnsafeRawBufferPointer(data))
        }
        try file.close()
    }

    private func makeDirectory(_ name: String) throws -> String {
        let path = out + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    private func twoDigits(_ n: Int) -> String {
        n < 10 ? "0\(n)" : "\(n)"
    }
}
