import Foundation

/// `make-workload`: writes the benchmarks' synthetic workload, many variants of one LLaMA-shaped bf16
/// model, the kind of data a team's model registry holds:
///
///     base/          2 shards + config.json + tokenizer.json + model.safetensors.index.json
///     lora-XX/       PEFT LoRA adapter (q_proj/v_proj of every layer, r=16, bf16) + adapter_config.json
///     partial-XX/    copy of base; last 2 layers + lm_head perturbed (N(0, 0.002²), re-rounded to bf16)
///     fullft-XX/     copy of base; every tensor perturbed (N(0, 0.0005²), re-rounded to bf16)
///     resharded/     base tensors byte-identical, in 3 shards and a different tensor order
///     ORDER.txt      the directories in push order (base first), written last
///     MANIFEST.tsv   path, bytes and SHA-256 of every file (unless --no-manifest)
///
/// The output depends only on `--scale` and `--seed` (and the platform's floating-point math):
/// every tensor is made from random streams derived from the seed and the tensor's name.
@main
struct MakeWorkload {
    /// The usage text.
    static let usage = """
        usage: make-workload --out DIR [--scale small|full] [--seed N] [--no-manifest]

          --out DIR       where to write the model directories (created if needed)
          --scale S       small (~256 MB: hidden 512, 4 layers, vocab 8000; 4 LoRA, 3 partial, 1 full
                          fine-tune) or full (~3.05 GB: hidden 1024, 8 layers, vocab 32000; 10 LoRA,
                          5 partial, 2 full fine-tunes); default full
          --seed N        the seed of every random stream; default 42
          --no-manifest   do not write DIR/MANIFEST.tsv (path, bytes, SHA-256 of every file)
        """

    /// The parsed command line.
    struct Options {
        /// `--out`.
        var out = ""
        /// `--scale`.
        var scale = Scale.full
        /// `--seed`.
        var seed: UInt64 = 42
        /// Whether to write MANIFEST.tsv.
        var manifest = true
    }

    /// Runs the command and exits with 0, or 1 on an error, 2 on a bad command line.
    static func main() {
        let options: Options
        do {
            options = try parse(Array(CommandLine.arguments.dropFirst()))
        } catch {
            FileHandle.standardError.write(Data("make-workload: \(error)\n\n\(usage)\n".utf8))
            exit(2)
        }
        do {
            try run(options)
        } catch {
            FileHandle.standardError.write(Data("make-workload: \(error)\n".utf8))
            exit(1)
        }
    }

    /// Parses the arguments after the program name.
    static func parse(_ arguments: [String]) throws -> Options {
        var options = Options()
        var rest = arguments[...]
        func value(_ flag: String) throws -> String {
            guard let next = rest.popFirst() else { throw WorkloadError("\(flag) needs a value") }
            return next
        }
        while let argument = rest.popFirst() {
            var flag = argument
            if let equals = argument.firstIndex(of: "="), argument.hasPrefix("--") {
                flag = String(argument[..<equals])
                rest.insert(String(argument[argument.index(after: equals)...]), at: rest.startIndex)
            }
            switch flag {
            case "--out": options.out = try value(flag)
            case "--scale":
                let name = try value(flag)
                guard let scale = Scale.all.first(where: { $0.name == name }) else {
                    throw WorkloadError("unknown scale \(name) (small or full)")
                }
                options.scale = scale
            case "--seed":
                let text = try value(flag)
                guard let seed = UInt64(text) else { throw WorkloadError("--seed takes a non-negative integer") }
                options.seed = seed
            case "--no-manifest": options.manifest = false
            case "-h", "--help":
                print(usage)
                exit(0)
            default: throw WorkloadError("unknown argument \(argument)")
            }
        }
        guard !options.out.isEmpty else { throw WorkloadError("--out DIR is required") }
        return options
    }

    /// Writes the workload, the manifest and ORDER.txt, and prints one line per directory.
    static func run(_ options: Options) throws {
        guard 1.littleEndian == 1 else { throw WorkloadError("this generator writes little-endian data only") }
        let start = Date()
        let out = options.out
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        // ORDER.txt marks a complete workload: gone until this run has written everything.
        for stale in ["ORDER.txt", "MANIFEST.tsv"] where FileManager.default.fileExists(atPath: out + "/" + stale) {
            try FileManager.default.removeItem(atPath: out + "/" + stale)
        }

        let generator = Generator(out: out, scale: options.scale, seed: options.seed)
        try generator.writeAll()
        let generated = Date().timeIntervalSince(start)

        var rows: [WorkloadFile] = []
        var total = 0
        for directory in generator.order {
            let names = try Files.names(in: out + "/" + directory)
            let sizes = try names.map { try Files.size(of: out + "/" + directory + "/" + $0) }
            let bytes = sizes.reduce(0, +)
            total += bytes
            rows += zip(names, sizes).map { WorkloadFile(path: directory + "/" + $0, size: $1) }
            print(
                pad(directory, 12) + " " + pad(String(names.count), 3, left: true) + " files "
                    + pad(grouped(bytes), 14, left: true) + " B"
            )
        }
        let megabytes = String(format: "%.1f MB, %.3f GiB", Double(total) / 1e6, Double(total) / 1_073_741_824)
        print(
            pad("TOTAL", 12) + " " + pad(String(rows.count), 3, left: true) + " files "
                + pad(grouped(total), 14, left: true)
                + " B  (\(megabytes))  scale=\(options.scale.name) seed=\(options.seed)  "
                + String(format: "%.1fs", generated)
        )

        if options.manifest {
            let hashes = try Files.sha256(of: rows.map(\.path), in: out)
            var text =
                "# scale=\(options.scale.name) seed=\(options.seed) generator=make-workload\npath\tbytes\tsha256\n"
            for (row, hash) in zip(rows, hashes) {
                text += "\(row.path)\t\(row.size)\t\(hash)\n"
            }
            try OutputFile.write(Array(text.utf8), to: out + "/MANIFEST.tsv")
            print(
                "MANIFEST.tsv: SHA-256 of \(rows.count) files, "
                    + String(format: "%.1fs", Date().timeIntervalSince(start) - generated)
            )
        }
        try OutputFile.write(Array((generator.order.joined(separator: "\n") + "\n").utf8), to: out + "/ORDER.txt")

        let expected = Set(generator.order + ["ORDER.txt", "MANIFEST.tsv"])
        let extra = try Files.names(in: out).filter { !expected.contains($0) }
        if !extra.isEmpty {
            let list = extra.joined(separator: ", ")
            FileHandle.standardError.write(
                Data("make-workload: warning: \(out) also holds \(list) (not in ORDER.txt)\n".utf8)
            )
        }
    }

    private static func pad(_ text: String, _ width: Int, left: Bool = false) -> String {
        let fill = String(repeating: " ", count: max(0, width - text.count))
        return left ? fill + text : text + fill
    }
}
