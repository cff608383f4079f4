import ArgumentParser
import CairnAPI
import CairnRegistry
import CairnRemote
import Foundation

extension Cairn {
    struct Diff: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Show what changed between two versions: metadata, files, tensors and shared storage.",
            discussion: """
                Metadata: every metric with its delta, params and tags that differ, stage, and lineage (parents, datasets, source). Files: added, removed, changed (by SHA-256) and unchanged. Tensors of safetensors files, matched by name (and across shards of the same directory): added, removed and changed by bytes, with dtype and shape changes called out; tensors are compared by the chunk ids that cover them, reading their bytes only when the two versions cut them differently. Storage: the bytes of distinct chunks both versions share, and those only one of them has. A malformed safetensors file in either version is an error naming it.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The version to compare from: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var from: String
        @Argument(help: "The version to compare to.") var to: String

        func run() throws {
            let registry = try global.openRegistry()
            let a = try registry.resolve(try Reference(parsing: from))
            let b = try registry.resolve(try Reference(parsing: to))
            let diff = try contentReader(registry).diff(a, b)
            if global.json { return try Output.json(diff) }
            Self.render(diff)
        }

        static func render(_ d: VersionDiff) {
            let x = d.from.reference
            let y = d.to.reference
            Output.line("diff \(x) → \(y)")
            Output.table(
                ["", x, y],
                [
                    [
                        "stage", d.from.stage.rawValue,
                        d.to.stage.rawValue + (d.metadata.stage.changed ? "  (changed)" : ""),
                    ],
                    [
                        "created", "\(d.from.createdAt) by \(d.from.createdBy)",
                        "\(d.to.createdAt) by \(d.to.createdBy)",
                    ],
                    [
                        "size", "\(Output.bytes(d.from.logicalBytes)) in \(d.from.fileCount) files",
                        "\(Output.bytes(d.to.logicalBytes)) in \(d.to.fileCount) files",
                    ],
                ] + (d.from.message.isEmpty && d.to.message.isEmpty ? [] : [["message", d.from.message, d.to.message]])
            )

            let m = d.metadata
            if !m.metrics.isEmpty {
                Output.line("")
                Output.line("metrics")
                Output.table(
                    ["  NAME", x, y, "DELTA"],
                    m.metrics.map { c in
                        [
                            "  " + c.name, c.from.map(number) ?? "-", c.to.map(number) ?? "-",
                            c.delta.map { String(format: "%+.6g", $0) } ?? "-",
                        ]
                    }
                )
            }
            for (title, changes) in [("params", m.params), ("tags", m.tags)] where !changes.isEmpty {
                Output.line("")
                Output.line(title)
                for c in changes { Output.line("  " + valueChange(c)) }
            }
            if !m.lineage.isEmpty {
                Output.line("")
                Output.line("lineage")
                for p in m.lineage.parentsAdded { Output.line("  + parent \(p)") }
                for p in m.lineage.parentsRemoved { Output.line("  - parent \(p)") }
                for p in m.lineage.datasetsAdded { Output.line("  + dataset \(p)") }
                for p in m.lineage.datasetsRemoved { Output.line("  - dataset \(p)") }
                if let s = m.lineage.source { Output.line("  " + valueChange(s)) }
            }

            let f = d.files
            Output.line("")
            Output.line(
                "files: \(f.added.count) added, \(f.removed.count) removed, \(f.changed.count) changed, \(f.unchanged.count) unchanged"
            )
            for a in f.added { Output.line("  + \(a.path)  \(Output.bytes(a.size))") }
            for r in f.removed { Output.line("  - \(r.path)  \(Output.bytes(r.size))") }
            for c in f.changed {
                Output.line("  ~ \(c.path)  \(Output.bytes(c.fromSize)) → \(Output.bytes(c.toSize))")
            }

            let t = d.tensors
            let total = t.added.count + t.removed.count + t.changed.count + t.moved.count + t.unchanged
            if total > 0 {
                Output.line("")
                var line =
                    "tensors: \(t.changed.count) changed, \(t.added.count) added, \(t.removed.count) removed, \(t.unchanged) unchanged"
                if !t.moved.isEmpty { line += ", \(t.moved.count) moved to another file" }
                line += " (compared \(t.comparedByChunks) by chunk ids, \(t.comparedByHash) by reading)"
                Output.line(line)
                for c in t.changed {
                    var text = "  ~ \(c.name)  \(c.toDtype) \(Output.shape(c.toShape))"
                    var notes: [String] = []
                    if c.dtypeChanged { notes.append("dtype \(c.fromDtype) → \(c.toDtype)") }
                    if c.shapeChanged {
                        notes.append("shape \(Output.shape(c.fromShape)) → \(Output.shape(c.toShape))")
                    }
                    if c.fromFile != c.toFile {
                        notes.append("moved \(c.fromFile) → \(c.toFile)")
                    } else {
                        notes.append(c.toFile)
                    }
                    text += "  (" + notes.joined(separator: "; ") + ")"
                    Output.line(text)
                }
                for a in t.added { Output.line("  + \(a.name)  \(a.dtype) \(Output.shape(a.shape))  (\(a.file))") }
                for r in t.removed { Output.line("  - \(r.name)  \(r.dtype) \(Output.shape(r.shape))  (\(r.file))") }
            }

            let s = d.storage
            Output.line("")
            Output.line(
                "storage: \(Output.bytes(s.sharedBytes)) shared, \(Output.bytes(s.uniqueFromBytes)) only in \(x), \(Output.bytes(s.uniqueToBytes)) only in \(y)"
            )
        }

        static func number(_ v: Double) -> String {
            v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)"
        }

        static func valueChange(_ c: VersionDiff.ValueChange) -> String {
            switch (c.from, c.to) {
            case (nil, let to?): "+ \(c.name)=\(to)"
            case (let from?, nil): "- \(c.name)=\(from)"
            default: "~ \(c.name): \(c.from ?? "") → \(c.to ?? "")"
            }
        }
    }
}

/// The registry as a reader of file contents, for tensor pulls, tensor listings and diffs (a local
/// store reads only the chunks a range overlaps; a server is asked for byte ranges).
func contentReader(_ registry: any RegistryService) throws -> any VersionContentReader {
    guard let reader = registry as? any VersionContentReader else {
        throw RegistryError(.invalidArgument, "this registry cannot read tensors")
    }
    return reader
}
