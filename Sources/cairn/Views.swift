import CairnRegistry
import CairnStore
import Foundation

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
                    reason +=
                        (reason.isEmpty ? "" : " ") + "["
                        + e.evidence.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")
                        + "]"
                }
                return ["\(e.sequence)", e.time, e.actor, e.action.rawValue, e.target, e.change, reason]
            }
        )
    }
}
