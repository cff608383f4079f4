import ArgumentParser
import CairnAPI
import CairnRegistry
import CairnRemote
import CairnStore
import Foundation
import Glibc

extension Cairn {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an empty store.",
            discussion: "Chunk sizes are fixed for the store's lifetime: changing them would break dedup."
        )

        @OptionGroup var global: GlobalOptions

        @Option(help: "Minimum chunk size in bytes.") var minChunk = ChunkerParameters.default.min
        @Option(help: "Average chunk size in bytes (a power of two).") var avgChunk = ChunkerParameters.default.avg
        @Option(help: "Maximum chunk size in bytes.") var maxChunk = ChunkerParameters.default.max
        @Option(help: "zstd compression level (1-19).") var compressionLevel = 3

        func run() throws {
            let config = StoreConfig(
                chunker: ChunkerParameters(min: minChunk, avg: avgChunk, max: maxChunk),
                compressionLevel: compressionLevel
            )
            let store = try Store.create(at: global.storePath, config: config)
            if global.json {
                try Output.json(InitOutput(store: store.root, config: store.config))
            } else {
                Output.line("initialized empty cairn store at \(store.root)")
            }
        }

        struct InitOutput: Encodable {
            var store: String
            var config: StoreConfig
        }
    }

    struct Push: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Store a model directory (or one file) as the model's next version.",
            discussion: """
                Every regular file under PATH is stored by its relative path; symlinks and special files are refused and nothing is stored. Only chunks the store does not have are written. Every push creates a new version, even when the content equals an earlier one (it then adds 0 bytes).
                """
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "Directory (or file) to push.") var path: String
        @Option(help: "Model name: [a-z0-9][a-z0-9._-]*, optionally org/name.") var model: String
        @Option(help: "A note on this version.") var message = ""
        @Option(help: ArgumentHelp("A metric, K=V with a number V (repeatable).", valueName: "K=V")) var metric:
            [String] = []
        @Option(help: ArgumentHelp("A parameter, K=V (repeatable).", valueName: "K=V")) var param: [String] = []
        @Option(help: ArgumentHelp("A tag, K=V (repeatable).", valueName: "K=V")) var tag: [String] = []
        @Option(help: ArgumentHelp("A version this one derives from (repeatable).", valueName: "REF")) var parent:
            [String] = []
        @Option(help: ArgumentHelp("A dataset id used for training (repeatable).", valueName: "ID")) var dataset:
            [String] = []
        @Option(help: ArgumentHelp("The run that produced it.", valueName: "URI")) var source: String?
        @Option(help: "Initial stage: experimental (default) or staging.") var stage: Choice<Stage>?
        @Flag(help: "Store a version even when PATH holds no files (refused otherwise).") var allowEmpty = false

        func validate() throws {
            _ = try stage?.value(for: "--stage")
            _ = try metrics()
            for (values, name) in [(param, "param"), (tag, "tag")] { _ = try parsePairs(values, what: name) }
        }

        /// The `--metric` values as numbers.
        func metrics() throws -> [String: Double] {
            var numbers: [String: Double] = [:]
            for (k, v) in try parsePairs(metric, what: "metric") {
                guard let number = DecimalNumber.parse(v) else {
                    throw BadArgument("--metric \(k)=\(v): the value must be a decimal number")
                }
                numbers[k] = number
            }
            return numbers
        }

        func run() throws {
            let registry = try global.openRegistry()
            var request = PushRequest(model: model, actor: global.actor)
            request.message = message
            request.metrics = try metrics()
            request.params = try parsePairs(param, what: "param")
            request.tags = try parsePairs(tag, what: "tag")
            request.parents = parent
            request.datasets = dataset
            request.source = source
            request.stage = try stage?.value(for: "--stage")
            request.allowEmpty = allowEmpty
            let progress = ProgressLine("push", quiet: global.json)
            let report = try registry.pushReport(directory: path, request: request, progress: progress.update)
            let result = report.result
            progress.finish()
            if global.json {
                try Output.json(report)
            } else {
                Output.line(
                    "pushed \(result.model)@\(result.version): \(result.files) files, \(Output.bytes(result.logicalBytes)), "
                        + "\(Output.bytes(result.newBytes)) new (\(Output.bytes(result.storedBytes)) stored), manifest \(result.manifest.prefix(12))"
                        + (report.transferredBytes.map { ", \(Output.bytes($0)) sent" } ?? "")
                )
            }
        }
    }

    struct Pull: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write a version's files (or some of them, or some tensors) to a directory.",
            discussion: """
                Every chunk is verified against its SHA-256; a damaged chunk fails the pull and no wrong bytes are written. --out must be new or empty (or give --force to write into it; files of the version replace files of the same name there), and outside the store. Each file is written under a temporary name and renamed into place once whole: a pull that fails keeps the files it finished, removes the one it was writing and writes none after it.

                With --tensor, each safetensors file (of those --include/--exclude select) that has tensors matching a pattern is written under its own name holding only those tensors, with their original bytes and a new header that keeps __metadata__; a shard index (model.safetensors.index.json) is rewritten to list only them. Other files are written only when an --include pattern names them. Only the chunks the chosen tensors overlap are read, so one tensor of a large checkpoint costs about its own size. A safetensors file that is malformed is an error naming it (exclude it with --exclude).
                """
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String
        @Option(help: "Directory to write into: new or empty (created if needed).") var out: String
        @Flag(help: "Write into --out even when it is not empty.") var force = false
        @Option(
            help: ArgumentHelp(
                "Only files matching this glob (*, **, ?; repeatable; without '/', matches file names at any depth).",
                valueName: "GLOB"
            )
        )
        var include: [String] = []
        @Option(help: ArgumentHelp("Skip files matching this glob (repeatable).", valueName: "GLOB"))
        var exclude: [String] = []
        @Option(
            help: ArgumentHelp(
                "Only tensors whose name matches this glob, e.g. 'model.layers.0.*' (repeatable). Writes each safetensors file that has a match with just those tensors.",
                valueName: "PATTERN"
            )
        )
        var tensor: [String] = []

        /// Refuses an --out that is a file, that is a directory with something in it (without
        /// --force), or that lies inside the local store (a pull would write into its packs).
        func checkOutputDirectory() throws {
            if global.remoteURL == nil {
                let store = URL(fileURLWithPath: global.storePath).standardized.resolvingSymlinksInPath().path
                let target = URL(fileURLWithPath: out).standardized.resolvingSymlinksInPath().path
                if target == store || target.hasPrefix(store + "/") {
                    throw BadArgument("--out \(out) is inside the store \(global.storePath)")
                }
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: out, isDirectory: &isDirectory) else { return }
            guard isDirectory.boolValue else { throw BadArgument("--out \(out) exists and is not a directory") }
            if !force, let entries = try? FileManager.default.contentsOfDirectory(atPath: out), !entries.isEmpty {
                throw BadArgument("--out \(out) is not empty; pull into a new or empty directory, or give --force")
            }
        }

        func run() throws {
            let selection = try FileSelection(include: include, exclude: exclude)
            try checkOutputDirectory()
            let registry = try global.openRegistry()
            let version = try registry.resolve(try Reference(parsing: ref))
            let progress = ProgressLine("pull", quiet: global.json)
            if !tensor.isEmpty {
                let result = try contentReader(registry).pullTensors(
                    version,
                    matching: tensor,
                    to: out,
                    selection: selection,
                    progress: progress.update(done:total:)
                )
                progress.finish()
                let bytes = result.files.reduce(Int64(0)) { $0 + $1.size }
                if global.json {
                    return try Output.json(
                        PullOutput(
                            model: version.model,
                            version: version.version,
                            out: out,
                            files: result.files.count,
                            bytes: bytes,
                            tensors: result.tensors,
                            tensorBytes: result.tensorBytes,
                            written: result.files
                        )
                    )
                }
                let shards = result.files.filter { $0.tensors > 0 }.count
                Output.line(
                    "pulled \(result.tensors) tensor\(result.tensors == 1 ? "" : "s") (\(Output.bytes(result.tensorBytes))) of \(version.reference) to \(out): "
                        + "\(shards) safetensors file\(shards == 1 ? "" : "s")"
                        + (result.files.count > shards
                            ? " and \(result.files.count - shards) other\(result.files.count - shards == 1 ? "" : "s")"
                            : "")
                        + ", \(Output.bytes(bytes))"
                )
                return
            }
            let files = try registry.pull(version, to: out, selection: selection, progress: progress.update)
            progress.finish()
            let bytes = files.reduce(Int64(0)) { $0 + $1.size }
            if global.json {
                try Output.json(
                    PullOutput(
                        model: version.model,
                        version: version.version,
                        out: out,
                        files: files.count,
                        bytes: bytes
                    )
                )
            } else {
                Output.line("pulled \(version.reference) to \(out): \(files.count) files, \(Output.bytes(bytes))")
            }
        }

        struct PullOutput: Encodable {
            var model: String
            var version: Int
            var out: String
            var files: Int
            var bytes: Int64
            /// With --tensor: tensors written, their bytes, and each file written.
            var tensors: Int? = nil
            var tensorBytes: Int64? = nil
            var written: [TensorPullResult.WrittenFile]? = nil

            enum CodingKeys: String, CodingKey {
                case model, version, out, files, bytes, tensors, written
                case tensorBytes = "tensor_bytes"
            }
        }
    }

    struct Cat: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write one file of a version (or a byte range of it) to stdout."
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String
        @Argument(help: "Path of the file inside the version.") var file: String
        @Option(
            help: ArgumentHelp(
                "Bytes START-END, inclusive, as in HTTP Range (END may be omitted).",
                valueName: "START-END"
            )
        )
        var range: String?

        func run() throws {
            let parsed = try range.map(Self.parseRange)
            let registry = try global.openRegistry()
            let version = try registry.resolve(try Reference(parsing: ref))
            try registry.read(version, path: file, range: parsed) { bytes in
                var rest = bytes
                while rest.count > 0 {
                    let n = Glibc.write(STDOUT_FILENO, rest.baseAddress!, rest.count)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw RegistryError(.io, "write to stdout: \(String(cString: strerror(errno)))")
                    }
                    rest = UnsafeRawBufferPointer(rebasing: rest[n...])
                }
            }
        }

        static func parseRange(_ text: String) throws -> ClosedRange<Int64> {
            let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, let start = Int64(parts[0]), start >= 0 else {
                throw BadArgument("--range expects START-END (inclusive byte offsets), got \"\(text)\"")
            }
            if parts[1].isEmpty { return start...Int64.max - 1 }
            guard let end = Int64(parts[1]), end >= start else {
                throw BadArgument("--range \(text): END must be a number not below START")
            }
            return start...end
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what the store holds and what dedup and compression saved."
        )

        @OptionGroup var global: GlobalOptions

        func run() throws {
            let s = try global.openRegistry().statistics()
            if global.json { return try Output.json(s) }
            Output.line("models       \(s.models)  versions \(s.versions)")
            Output.line("logical      \(Output.bytes(s.logicalBytes))  (files of all live versions)")
            Output.line("unique       \(Output.bytes(s.uniqueBytes))  (\(s.chunks) distinct chunks)")
            Output.line("compressed   \(Output.bytes(s.compressedBytes))")
            Output.line("stored       \(Output.bytes(s.storedBytes))  (\(s.packs) packs)")
            if s.storedBytes > 0 {
                Output.line(
                    String(format: "ratio        %.2fx logical/stored", Double(s.logicalBytes) / Double(s.storedBytes))
                )
            }
            if let codecs = s.codecs, !codecs.isEmpty {
                Output.line("")
                Output.table(
                    ["CODEC", "CHUNKS", "RAW", "STORED", "SAVED"],
                    codecs.map {
                        [
                            $0.codec, "\($0.chunks)", Output.bytes($0.rawBytes), Output.bytes($0.storedBytes),
                            String(format: "%.1f%%", 100 * (1 - Double($0.storedBytes) / Double(max($0.rawBytes, 1)))),
                        ]
                    }
                )
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check the store's integrity.",
            discussion: """
                Checks that every pack the index references is intact, every index entry matches its pack and every manifest's chunks are indexed. --deep also reads and re-hashes every chunk. Exits 4 when a problem is found, naming the chunk and the versions and files that use it.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Flag(help: "Read, decompress and re-hash every chunk.") var deep = false

        func run() throws {
            let report = try global.openRegistry().verifySummary(deep: deep, progress: nil)
            if global.json {
                try Output.json(report)
            } else {
                for p in report.problems { Output.line("problem: \(p.message)") }
                for a in report.affected {
                    Output.line("  used by \(a.model)@\(a.version) file \(a.path) (chunk \(a.chunk.prefix(12)))")
                }
                var summary = "checked \(report.packs) packs, \(report.chunks) chunks, \(report.manifests) manifests"
                if deep { summary += ", re-hashed \(Output.bytes(report.verifiedBytes))" }
                if report.unreferencedPacks > 0 {
                    summary += "; \(report.unreferencedPacks) unreferenced packs (gc removes them)"
                }
                if let files = report.leftoverTemporaryFiles, files > 0 {
                    summary +=
                        "; \(files) leftover temporary file\(files == 1 ? "" : "s") of killed pushes, "
                        + "\(Output.bytes(report.leftoverTemporaryBytes ?? 0)) (gc removes them after its grace period)"
                }
                Output.line(summary)
            }
            if !report.ok {
                printError("verify found \(report.problems.count) problem(s)")
                throw ExitCode(4)
            }
            if !global.json { Output.line("ok") }
        }
    }
}
