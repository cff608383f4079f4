import ArgumentParser
import CairnAPI
import CairnRegistry
import CairnRemote
import CairnStore
import Foundation

extension Cairn {
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "ls",
            abstract: "List models, or versions of one model or matching filters.",
            discussion: """
                Without MODEL and filters: every model with its version count and production version. With MODEL: its versions (stage, aliases, creator, date, size, new bytes). With --stage, --tag or --metric (and no MODEL): matching versions across all models, e.g. `cairn ls --stage production` (what is in production everywhere) or `cairn ls --metric 'eval_loss<2'`.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A model whose versions to list.") var model: String?
        @Option(
            help: ArgumentHelp(
                "Only versions in this stage (experimental, staging, production, archived).",
                valueName: "STAGE"
            )
        )
        var stage: Choice<Stage>?
        @Option(help: ArgumentHelp("Only versions with this tag value (repeatable; all must match).", valueName: "K=V"))
        var tag: [String] = []
        @Option(
            help: ArgumentHelp(
                "Only versions whose metric satisfies METRIC<V, <=, >, >= or = (repeatable).",
                valueName: "COND"
            )
        )
        var metric: [String] = []

        func validate() throws { _ = try stage?.value(for: "--stage") }

        func run() throws {
            let registry = try global.openRegistry()
            let filtered = stage != nil || !tag.isEmpty || !metric.isEmpty
            guard model != nil || filtered else {
                let models = try registry.listModels()
                if global.json { return try Output.json(models) }
                Output.table(
                    ["MODEL", "VERSIONS", "LATEST", "PRODUCTION", "SIZE", "UPDATED_AT"],
                    models.map {
                        [
                            $0.model, "\($0.versions)", $0.latest.map { "\($0)" } ?? "-",
                            $0.production.map { "\($0)" } ?? "-",
                            Output.bytes($0.logicalBytes), $0.updatedAt,
                        ]
                    }
                )
                return
            }
            let query = VersionQuery(
                model: model,
                stage: try stage?.value(for: "--stage"),
                tags: try parsePairs(tag, what: "tag"),
                metrics: try metric.map { try MetricCondition(parsing: $0) }
            )
            let versions = try registry.findVersions(query)
            if global.json { return try Output.json(versions.map { VersionDocument(info: $0) }) }
            Output.table(
                [
                    model == nil ? "VERSION" : "N", "STAGE", "ALIASES", "CREATED_BY", "CREATED_AT", "SIZE", "NEW",
                    "MESSAGE",
                ],
                versions.map {
                    let r = $0.record
                    return [
                        model == nil ? r.reference : "\(r.version)", r.stage.rawValue,
                        $0.aliases.isEmpty ? "-" : $0.aliases.joined(separator: ","),
                        r.createdBy, r.createdAt, Output.bytes(r.logicalBytes), Output.bytes(r.newBytes), r.message,
                    ]
                }
            )
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract:
                "Show a version: stage, aliases, approvals, metadata, lineage, files and what it added to the store.",
            discussion: """
                With --at TIME, resolves the reference as it was then, from the audit log: `cairn show llama@production --at 2026-03-10` shows what was in production at the end of that day.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String
        @Option(
            help: ArgumentHelp(
                "Resolve the reference as of this time: ISO 8601 (2026-03-10T14:05:00Z) or a date (the end of that day, UTC).",
                valueName: "TIME"
            )
        )
        var at: String?
        @Flag(
            help:
                "Also list the tensors of its safetensors files (file, name, dtype, shape, bytes), read from their headers only."
        )
        var tensors = false

        func run() throws {
            let registry = try global.openRegistry()
            let reference = try Reference(parsing: ref)
            var past: PastResolution?
            let info: VersionInfo
            if let at {
                let resolved = try registry.resolve(reference, at: try RegistryTime.parse(at, dateOnly: .endOfDay))
                past = resolved
                info = try registry.info(
                    Reference(model: resolved.version.model, selector: .number(resolved.version.version))
                )
            } else {
                info = try registry.info(reference)
            }
            let version = info.record
            let manifest = try registry.manifest(of: version)
            let tensorList = tensors ? try contentReader(registry).tensors(of: version) : nil
            let stored = try registry.storedBytesByFile(manifest)
            if global.json {
                return try Output.json(
                    VersionDocument(info: info, manifest: manifest, stored: stored, past: past, tensors: tensorList)
                )
            }
            if let past {
                Output.line(
                    "at \(past.at): \(ref) was \(version.reference) [\(past.stage.rawValue)]"
                        + (past.aliases.isEmpty ? "" : " aliases \(past.aliases.joined(separator: ", "))")
                )
                Output.line("")
            }
            Output.line(
                "\(version.reference)  [\(version.stage.rawValue)]"
                    + (info.aliases.isEmpty ? "" : "  aliases: \(info.aliases.joined(separator: ", "))")
            )
            Output.line("created    \(version.createdAt) by \(version.createdBy)")
            if let changed = version.stageChangedAt, changed != version.createdAt {
                Output.line("stage set  \(changed)")
            }
            if version.everProduction { Output.line("history    has been in production") }
            if !version.message.isEmpty { Output.line("message    \(version.message)") }
            Output.line("manifest   \(version.manifest)")
            Output.line(
                "size       \(Output.bytes(version.logicalBytes)) in \(version.fileCount) files; added \(Output.bytes(version.newBytes)) new (\(Output.bytes(version.storedBytes)) on disk)"
            )
            for (k, v) in version.metrics.sorted(by: { $0.key < $1.key }) { Output.line("metric     \(k) = \(v)") }
            for (k, v) in version.params.sorted(by: { $0.key < $1.key }) { Output.line("param      \(k) = \(v)") }
            for (k, v) in version.tags.sorted(by: { $0.key < $1.key }) { Output.line("tag        \(k) = \(v)") }
            for p in version.parents { Output.line("parent     \(p)") }
            for d in version.datasets { Output.line("dataset    \(d)") }
            if let s = version.source { Output.line("source     \(s)") }
            for a in version.approvals {
                Output.line(
                    "approval   \(a.stage.rawValue) by \(a.user) at \(a.time)" + (a.reason.map { ": \($0)" } ?? "")
                )
            }
            Output.line("")
            Output.table(
                ["PATH", "SIZE", "STORED", "SHA256"],
                manifest.files.map {
                    [$0.path, Output.bytes($0.size), Output.bytes(stored[$0.path] ?? 0), $0.sha256.hex]
                }
            )
            if let tensorList {
                Output.line("")
                if tensorList.isEmpty {
                    Output.line("no safetensors files")
                } else {
                    Output.table(
                        ["FILE", "TENSOR", "DTYPE", "SHAPE", "BYTES"],
                        tensorList.map { [$0.file, $0.name, $0.dtype, Output.shape($0.shape), "\($0.bytes)"] }
                    )
                    let total = tensorList.reduce(Int64(0)) { $0 + $1.bytes }
                    Output.line("\(tensorList.count) tensors, \(Output.bytes(total))")
                }
            }
        }
    }

    struct LineageCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "lineage",
            abstract: "Show a version's ancestors (parents, their parents, …) and descendants."
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String

        func run() throws {
            let lineage = try global.openRegistry().lineage(try Reference(parsing: ref))
            if global.json { return try Output.json(lineage) }
            Output.line(lineage.reference)
            if !lineage.datasets.isEmpty { Output.line("datasets: \(lineage.datasets.joined(separator: ", "))") }
            if let source = lineage.source { Output.line("source: \(source)") }
            Output.line("ancestors:" + (lineage.ancestors.isEmpty ? " none" : ""))
            for node in lineage.ancestors { Output.line(Self.describe(node)) }
            Output.line("descendants:" + (lineage.descendants.isEmpty ? " none" : ""))
            for node in lineage.descendants { Output.line(Self.describe(node)) }
        }

        static func describe(_ node: LineageNode) -> String {
            var text =
                String(repeating: "  ", count: node.depth) + node.reference + " [\(node.stage?.rawValue ?? "deleted")]"
            if !node.datasets.isEmpty { text += " datasets: \(node.datasets.joined(separator: ", "))" }
            return text
        }
    }

    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show the stage and alias changes of one model, oldest first (from the audit log)."
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The model.") var model: String

        func run() throws {
            let entries = try global.openRegistry().history(of: model)
            if global.json { return try Output.json(entries) }
            Output.auditTable(entries)
        }
    }
}
