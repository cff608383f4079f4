import ArgumentParser
import CairnRegistry
import Digest
import Foundation

extension Cairn {
    struct Audit: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The append-only audit log: who changed what, when, from what to what, and why.",
            discussion: """
                Every push, promotion, approval, rollback, archive, delete, alias, tag and policy change is appended with a sequence number, time, actor, before → after, reason, evidence and the SHA-256 of the previous entry. `cairn audit verify` walks the chain.
                """,
            subcommands: [List.self, Verify.self],
            defaultSubcommand: List.self
        )

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "ls",
                abstract: "Show audit entries, oldest first (the default)."
            )

            @OptionGroup var global: GlobalOptions
            @Option(help: ArgumentHelp("Only entries about this model.", valueName: "MODEL")) var model: String?
            @Option(
                help: ArgumentHelp(
                    "Only entries at or after this time: ISO 8601 or a date (its start, UTC).",
                    valueName: "TIME"
                )
            )
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
                abstract: "Walk the audit chain and report the first broken entry (exit 4).",
                discussion: """
                    Prints the number of entries and the chain's head: the SHA-256 of the last entry, which every earlier entry leads to. Record the head somewhere the store's operators cannot write (daily, say); later, --expect-head HEAD fails (exit 4) unless the chain still leads to that head — so a history rewritten by someone who recomputed every later hash is detected.
                    """
            )

            @OptionGroup var global: GlobalOptions
            @Option(
                help: ArgumentHelp(
                    "A head recorded earlier: fail unless the chain still leads to it.",
                    valueName: "SHA256"
                )
            )
            var expectHead: String?

            func validate() throws {
                if let expectHead, SHA256Digest(hex: expectHead) == nil {
                    throw BadArgument(
                        "--expect-head expects the 64 hex digits audit verify printed, got \"\(expectHead)\""
                    )
                }
            }

            func run() throws {
                let registry = try global.openRegistry()
                let result = try registry.verifyAudit()
                var headProblem: String?
                if result.ok, let expected = expectHead?.lowercased(), result.head != expected {
                    // An entry recorded as head earlier is still in the chain when a later entry links to it.
                    let linked = try registry.auditLog(model: nil, since: nil).contains { $0.prevSHA256 == expected }
                    if !linked {
                        headProblem =
                            "the chain does not lead to \(expected): the history was rewritten or that head is not of this store"
                    }
                }
                if global.json {
                    try Output.json(result)
                    if let headProblem { printError(headProblem) }
                    if !result.ok || headProblem != nil { throw ExitCode(4) }
                    return
                }
                guard result.ok else {
                    printError("audit log broken at entry \(result.firstBroken ?? 0): \(result.problem ?? "")")
                    throw ExitCode(4)
                }
                if let headProblem {
                    printError(headProblem)
                    throw ExitCode(4)
                }
                Output.line(
                    "audit log ok: \(result.entries) entries, chain intact, head \(result.head ?? "(empty log)")"
                )
            }
        }
    }
}
