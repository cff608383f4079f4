import ArgumentParser
import CairnRegistry
import Foundation

extension Cairn {
    struct Audit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The append-only audit log: who changed what, when, from what to what, and why.",
            discussion: """
                Every push, promotion, approval, rollback, archive, delete, alias, tag and policy change is appended with a sequence number, time, actor, before → after, reason, evidence and the SHA-256 of the previous entry. `cairn audit verify` walks the chain.
                """,
            subcommands: [List.self, Verify.self], defaultSubcommand: List.self)

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "ls", abstract: "Show audit entries, oldest first (the default).")

            @OptionGroup var global: GlobalOptions
            @Option(help: ArgumentHelp("Only entries about this model.", valueName: "MODEL")) var model: String?
            @Option(help: ArgumentHelp("Only entries at or after this time: ISO 8601 or a date (its start, UTC).", valueName: "TIME"))
            var since: String?

            func run() throws {
                let since = try since.map { try RegistryTime.parse($0, dateOnly: .startOfDay) }
                let entries = try global.openRegistry().auditLog(model: model, since: since)
                if global.json { return try Output.json(entries) }
                Output.auditTable(entries)
            }
        }

        struct Verify: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Walk the audit chain and report the first broken entry (exit 4).")

            @OptionGroup var global: GlobalOptions

            func run() throws {
                let result = try global.openRegistry().verifyAudit()
                if global.json {
                    try Output.json(result)
                    if !result.ok { throw ExitCode(4) }
                    return
                }
                if result.ok { return Output.line("audit log ok: \(result.entries) entries, chain intact") }
                printError("audit log broken at entry \(result.firstBroken ?? 0): \(result.problem ?? "")")
                throw ExitCode(4)
            }
        }
    }
}
