import CairnFixtures

/// The dimensions and variant counts of a workload.
struct Scale: Sendable {
    /// The scale's name on the command line.
    var name: String
    /// The model (embedding) width.
    var hidden: Int
    /// The MLP width.
    var intermediate: Int
    /// The number of transformer layers.
    var layers: Int
    /// The number of tokens: rows of the embedding and of the LM head.
    var vocab: Int
    /// The number of attention heads (config.json only).
    var heads: Int
    /// The number of LoRA adapters, partial fine-tunes and full fine-tunes.
    var loras: Int, partials: Int, fullFineTunes: Int

    /// About 256 MB: hidden 512, 4 layers, vocab 8,000; 4 LoRA adapters, 3 partial and 1 full fine-tune.
    static let small = Scale(
        name: "small",
        hidden: 512,
        intermediate: 1408,
        layers: 4,
        vocab: 8000,
        heads: 8,
        loras: 4,
        partials: 3,
        fullFineTunes: 1
    )
    /// About 3.05 GB: hidden 1,024, 8 layers, vocab 32,000; 10 LoRA adapters, 5 partial and 2 full fine-tunes.
    static let full = Scale(
        name: "full",
        hidden: 1024,
        intermediate: 2816,
        layers: 8,
        vocab: 32000,
        heads: 16,
        loras: 10,
        partials: 5,
        fullFineTunes: 2
    )
    /// Every scale, by name.
    static let all = [small, full]
}

/// One bf16 tensor of the model: its Hugging Face name, shape and kind.
struct TensorSpec: Sendable {
    /// The tensor's name in safetensors files and the shard index.
    var name: String
    /// The dimensions, row-major.
    var shape: [Int]
    /// Norm scales are ~N(1, 0.02), everything else ~N(0, 0.02).
    var isNorm: Bool
    /// The layer the tensor belongs to, nil for the embeddings, the final norm and the LM head.
    var layer: Int?

    /// The number of elements.
    var count: Int { shape.reduce(1, *) }
    /// The number of bytes (bf16).
    var byteCount: Int { 2 * count }
}

/// The names, shards and JSON files of the workload's models.
enum Layout {
    /// The stored weight standard deviation (also config.json's `initializer_range`).
    static let weightStd = 0.02
    /// The rank of every LoRA adapter.
    static let loraRank = 16
    /// The name of the safetensors index file.
    static let indexFile = "model.safetensors.index.json"

    /// The tensors of a LLaMA-shaped decoder, in model order: embeddings, per layer four attention
    /// projections, three MLP projections and two norms, then the final norm and the LM head.
    static func tensors(_ scale: Scale) -> [TensorSpec] {
        let (h, i, v) = (scale.hidden, scale.intermediate, scale.vocab)
        var out = [TensorSpec(name: "model.embed_tokens.weight", shape: [v, h], isNorm: false, layer: nil)]
        for layer in 0..<scale.layers {
            let p = "model.layers.\(layer)."
            let parts: [(String, [Int])] = [
                ("self_attn.q_proj.weight", [h, h]), ("self_attn.k_proj.weight", [h, h]),
                ("self_attn.v_proj.weight", [h, h]), ("self_attn.o_proj.weight", [h, h]),
                ("mlp.gate_proj.weight", [i, h]), ("mlp.up_proj.weight", [i, h]), ("mlp.down_proj.weight", [h, i]),
                ("input_layernorm.weight", [h]), ("post_attention_layernorm.weight", [h]),
            ]
            for (name, shape) in parts {
                out.append(TensorSpec(name: p + name, shape: shape, isNorm: shape.count == 1, layer: layer))
            }
        }
        out.append(TensorSpec(name: "model.norm.weight", shape: [h], isNorm: true, layer: nil))
        out.append(TensorSpec(name: "lm_head.weight", shape: [v, h], isNorm: false, layer: nil))
        return out
    }

    /// The usual two-shard split: the embeddings and the first half of the layers, then the rest;
    /// each shard sorted by name, as the safetensors serializer writes tensors of one dtype.
    static func baseShards(_ specs: [TensorSpec], scale: Scale) -> [[TensorSpec]] {
        let half = scale.layers / 2
        let first = specs.filter { spec in
            spec.name.hasPrefix("model.embed_tokens") || (spec.layer.map { $0 < half } ?? false)
        }
        let second = specs.filter { spec in
            !(spec.name.hasPrefix("model.embed_tokens") || (spec.layer.map { $0 < half } ?? false))
        }
        return [sortedByName(first), sortedByName(second)]
    }

    /// The same tensors in a different order (a seeded Fisher–Yates shuffle), cut into `count`
    /// shards of about equal bytes: a shard ends once the bytes so far reach its share of the total.
    static func reshardedShards(_ specs: [TensorSpec], seed: UInt64, count: Int = 3) -> [[TensorSpec]] {
        var order = specs
        var rng = SplitMix64(seed: Sampling.seed(seed, Stream.order.rawValue))
        for i in stride(from: order.count - 1, to: 0, by: -1) {
            order.swapAt(i, rng.next(below: i + 1))
        }
        let total = order.reduce(0) { $0 + $1.byteCount }
        var shards: [[TensorSpec]] = []
        var current: [TensorSpec] = []
        var bytes = 0
        for spec in order {
            current.append(spec)
            bytes += spec.byteCount
            if shards.count < count - 1 && bytes * count >= total * (shards.count + 1) {
                shards.append(current)
                current = []
            }
        }
        shards.append(current)
        return shards
    }

    /// The tensors of one LoRA adapter (`q_proj` and `v_proj` of every layer), sorted by name:
    /// `lora_A` is [rank, hidden], `lora_B` is [hidden, rank].
    static func loraTensors(_ scale: Scale) -> [TensorSpec] {
        var out: [TensorSpec] = []
        for layer in 0..<scale.layers {
            for projection in ["q_proj", "v_proj"] {
                let p = "base_model.model.model.layers.\(layer).self_attn.\(projection)."
                out.append(
                    TensorSpec(name: p + "lora_A.weight", shape: [loraRank, scale.hidden], isNorm: false, layer: layer)
                )
                out.append(
                    TensorSpec(name: p + "lora_B.weight", shape: [scale.hidden, loraRank], isNorm: false, layer: layer)
                )
            }
        }
        return sortedByName(out)
    }

    /// The name of shard `k` (from 1) of `count`, as Hugging Face writes it.
    static func shardFile(_ k: Int, of count: Int) -> String {
        "model-\(fiveDigits(k))-of-\(fiveDigits(count)).safetensors"
    }

    /// `specs` sorted by the UTF-8 bytes of their names (Python's `sorted`).
    static func sortedByName(_ specs: [TensorSpec]) -> [TensorSpec] {
        specs.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
    }

    private static func fiveDigits(_ n: Int) -> String {
        let s = String(n)
        return String(repeating: "0", count: max(0, 5 - s.count)) + s
    }

    // MARK: - JSON files (written the way Python's json.dump(obj, indent=2) writes them)

    /// `{"metadata": {"total_size": N}, "weight_map": {name: file, …}}`, names sorted.
    static func indexJSON(weightMap: [(name: String, file: String)], totalSize: Int) -> String {
        let entries = weightMap.sorted { $0.name.utf8.lexicographicallyPrecedes($1.name.utf8) }
        var out = "{\n  \"metadata\": {\n    \"total_size\": \(totalSize)\n  },\n  \"weight_map\": {\n"
        for (i, entry) in entries.enumerated() {
            out += "    \"\(entry.name)\": \"\(entry.file)\"" + (i + 1 < entries.count ? ",\n" : "\n")
        }
        return out + "  }\n}\n"
    }

    /// A LLaMA `config.json` for `scale`, naming the model `nameOrPath`.
    static func configJSON(_ scale: Scale, nameOrPath: String) -> String {
        """
        {
          "_name_or_path": "\(nameOrPath)",
          "architectures": [
            "LlamaForCausalLM"
          ],
          "attention_bias": false,
          "attention_dropout": 0.0,
          "bos_token_id": 1,
          "eos_token_id": 2,
          "hidden_act": "silu",
          "hidden_size": \(scale.hidden),
          "initializer_range": \(weightStd),
          "intermediate_size": \(scale.intermediate),
          "max_position_embeddings": 4096,
          "model_type": "llama",
          "num_attention_heads": \(scale.heads),
          "num_hidden_layers": \(scale.layers),
          "num_key_value_heads": \(scale.heads),
          "pretraining_tp": 1,
          "rms_norm_eps": 1e-05,
          "rope_scaling": null,
          "rope_theta": 10000.0,
          "tie_word_embeddings": false,
          "torch_dtype": "bfloat16",
          "transformers_version": "4.40.0",
          "use_cache": true,
          "vocab_size": \(scale.vocab)
        }

        """
    }

    /// A PEFT LoRA `adapter_config.json` (q_proj and v_proj, rank ``loraRank``, alpha 32).
    static func adapterConfigJSON() -> String {
        """
        {
          "alpha_pattern": {},
          "auto_mapping": null,
          "base_model_name_or_path": "bench/base",
          "bias": "none",
          "fan_in_fan_out": false,
          "inference_mode": true,
          "init_lora_weights": true,
          "layers_pattern": null,
          "layers_to_transform": null,
          "lora_alpha": 32,
          "lora_dropout": 0.05,
          "modules_to_save": null,
          "peft_type": "LORA",
          "r": \(loraRank),
          "rank_pattern": {},
          "revision": null,
          "target_modules": [
            "q_proj",
            "v_proj"
          ],
          "task_type": "CAUSAL_LM",
          "use_rslora": false
        }

        """
    }
}

/// The first seed part after `--seed` of each random stream, so that streams never collide.
enum Stream: UInt64 {
    /// A base tensor: (seed, base, name).
    case base = 1
    /// A tensor of a partial fine-tune: (seed, partial, k, name).
    case partial = 2
    /// A tensor of a full fine-tune: (seed, fullFineTune, k, name).
    case fullFineTune = 3
    /// A LoRA tensor: (seed, lora, k, name).
    case lora = 4
    /// The tokenizer's vocabulary.
    case tokenizer = 5
    /// The tensor order of the re-sharded copy.
    case order = 6
}
