import CairnRegistry
import CairnStore
import Foundation

/// `show --json`, and each version of `ls --json` (without `files`).
struct VersionView: Encodable {
    var info: VersionInfo
    var manifest: Manifest?
    /// Per file: bytes its distinct chunks take on disk after compression.
    var stored: [String: Int64] = [:]
    var past: PastResolution?
    /// With `show --tensors`.
    var tensors: [TensorInfo]? = nil

    struct FileView: Encodable {
        var path: String
        var size: Int64
        var sha256: String
        var chunks: Int
        var storedBytes: Int64?

        enum CodingKeys: String, CodingKey {
            case path, size, sha256, chunks
            case storedBytes = "stored_bytes"
        }
    }

    enum CodingKeys: String, CodingKey {
        case model, version, reference, manifest, stage, aliases, message, metrics, params, tags, parents, datasets, source
        case files, approvals, at, tensors
        case createdBy = "created_by"
        case createdAt = "created_at"
        case logicalBytes = "logical_bytes"
        case newBytes = "new_bytes"
        case storedBytes = "stored_bytes"
        case fileCount = "file_count"
        case everProduction = "ever_production"
        case stageChangedAt = "stage_changed_at"
        case stageAt = "stage_at"
        case aliasesAt = "aliases_at"
    }

    func encode(to encoder: any Encoder) throws {
        let version = info.record
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(version.model, forKey: .model)
        try c.encode(version.version, forKey: .version)
        try c.encode(version.reference, forKey: .reference)
        try c.encode(version.manifest, forKey: .manifest)
        try c.encode(version.stage, forKey: .stage)
        try c.encode(info.aliases, forKey: .aliases)
        try c.encode(version.createdBy, forKey: .createdBy)
        try c.encode(version.createdAt, forKey: .createdAt)
        try c.encode(version.message, forKey: .message)
        try c.encode(version.metrics, forKey: .metrics)
        try c.encode(version.params, forKey: .params)
        try c.encode(version.tags, forKey: .tags)
        try c.encode(version.parents, forKey: .parents)
        try c.encode(version.datasets, forKey: .datasets)
        try c.encode(version.source, forKey: .source)
        try c.encode(version.fileCount, forKey: .fileCount)
        try c.encode(version.logicalBytes, forKey: .logicalBytes)
        try c.encode(version.newBytes, forKey: .newBytes)
        try c.encode(version.storedBytes, forKey: .storedBytes)
        try c.encode(version.everProduction, forKey: .everProduction)
        try c.encode(version.approvals, forKey: .approvals)
        try c.encode(version.stageChangedAt, forKey: .stageChangedAt)
        if let manifest {
            try c.encode(
                manifest.files.map {
                    FileView(path: $0.path, size: $0.size, sha256: $0.sha256.hex, chunks: $0.chunks.count, storedBytes: stored[$0.path])
                },
                forKey: .files)
        }
        if let tensors { try c.encode(tensors, forKey: .tensors) }
        if let past {
            try c.encode(past.at, forKey: .at)
            try c.encode(past.stage, forKey: .stageAt)
            try c.encode(past.aliases, forKey: .aliasesAt)
        }
    }
}

extension Output {
    /// One line per audit entry a change appended, or what stayed unchanged.
    static func change(_ result: ChangeResult, unchanged: String) {
        if !result.changed {
            line(unchanged)
            return
        }
        for entry in result.audit { line(auditLine(entry)) }
    }

    /// `#12 promote llama@3 staging → production (reason)`.
    static func auditLine(_ entry: AuditEntry) -> String {
        var text = "#\(entry.sequence) \(entry.action.rawValue) \(entry.target)"
        if !entry.change.isEmpty { text += " \(entry.change)" }
        if let reason = entry.reason { text += " (\(reason))" }
        return text
    }

    /// Audit entries as a table.
    static func auditTable(_ entries: [AuditEntry]) {
        table(
            ["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "CHANGE", "REASON"],
            entries.map { e in
                var reason = e.reason ?? ""
                if !e.evidence.isEmpty {
                    reason += (reason.isEmpty ? "" : " ") + "[" + e.evidence.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + "]"
                }
                return ["\(e.sequence)", e.time, e.actor, e.action.rawValue, e.target, e.change, reason]
            })
    }
}

/// Parses a stage name for an option.
func parseStage(_ text: String, option: String) throws -> Stage {
    guard let stage = Stage(rawValue: text) else {
        throw RegistryError(
            .invalidArgument, "\(option): unknown stage \"\(text)\" (use \(Stage.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    return stage
}
