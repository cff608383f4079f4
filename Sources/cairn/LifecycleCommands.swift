import ArgumentParser
import CairnAPI
import CairnRegistry
import CairnRemote
import Foundation

extension Cairn {
    struct Promote: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a version to staging, production or archived, through the model's gate.",
            discussion: """
                Allowed: experimental → staging → production, archived → staging, any stage → archived. The model's policy (cairn policy show MODEL) must pass: approvals from users other than the version's creator, and metric thresholds. Promoting to production archives the previous production version in the same transaction. A refused promotion names what is missing, changes nothing and exits 5.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String
        @Option(help: ArgumentHelp("Target stage: staging, production or archived.", valueName: "STAGE")) var to:
            Choice<Stage>
        @Option(help: ArgumentHelp("Why, recorded in the audit log.", valueName: "TEXT")) var reason: String?
        @Option(
            help: ArgumentHelp("Evidence for the decision, e.g. eval_run=https://… (repeatable).", valueName: "K=V")
        )
        var evidence: [String] = []

        func validate() throws {
            _ = try to.value(for: "--to")
            _ = try parsePairs(evidence, what: "evidence")
        }

        func run() throws {
            let registry = try global.openRegistry()
            let result = try registry.promote(
                try Reference(parsing: ref),
                to: try to.value(for: "--to"),
                actor: global.actor,
                reason: reason,
                evidence: try parsePairs(evidence, what: "evidence")
            )
            if global.json { return try Output.json(result) }
            Output.change(result, unchanged: "nothing changed")
        }
    }

    struct Approve: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Record your approval of a version for staging or production.",
            discussion:
                "Approvals by the version's creator do not count and are refused; each user approves once per stage."
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String
        @Option(help: ArgumentHelp("The stage approved for: staging or production.", valueName: "STAGE")) var to:
            Choice<Stage>
        @Option(help: ArgumentHelp("Why, recorded in the audit log.", valueName: "TEXT")) var reason: String?

        func validate() throws { _ = try to.value(for: "--to") }

        func run() throws {
            let registry = try global.openRegistry()
            let result = try registry.approve(
                try Reference(parsing: ref),
                for: try to.value(for: "--to"),
                actor: global.actor,
                reason: reason
            )
            if global.json { return try Output.json(result) }
            Output.change(result, unchanged: "nothing changed")
            if let entry = result.audit.first, let count = entry.details["approvals"],
                let required = entry.details["required"], required != "0"
            {
                Output.line(
                    "\(count) of \(required) required approval\(required == "1" ? "" : "s") for \(entry.details["stage"] ?? "")"
                )
            }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make the previous production version (or version N) production again.",
            discussion: """
                Archives the current production version and restores the one that was in production before it (or --to N, which must have been in production before), in one index transaction. No data is copied: its cost does not depend on the model's size. Gates do not apply.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The model.") var model: String
        @Option(help: ArgumentHelp("The version to restore (it must have been in production before).", valueName: "N"))
        var to: Int?
        @Option(help: ArgumentHelp("Why (required), recorded in the audit log.", valueName: "TEXT")) var reason: String

        func run() throws {
            let result = try global.openRegistry().rollback(model: model, to: to, actor: global.actor, reason: reason)
            if global.json { return try Output.json(result) }
            Output.change(result, unchanged: "nothing changed")
        }
    }

    struct Archive: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Move a version to archived (from any stage).",
            discussion:
                "Archiving the production version leaves the model without one; `cairn rollback` can restore it."
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String
        @Option(help: ArgumentHelp("Why, recorded in the audit log.", valueName: "TEXT")) var reason: String?

        func run() throws {
            let result = try global.openRegistry().archive(
                try Reference(parsing: ref),
                actor: global.actor,
                reason: reason
            )
            if global.json { return try Output.json(result) }
            Output.change(result, unchanged: "nothing changed")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a version (one that was never in production).",
            discussion: """
                Refused for a version that has ever been in production (archive it instead) or one an alias points at. The version stops resolving, its number is not reused, and the deletion is recorded in the audit log. Run `cairn gc` to reclaim the bytes no other version uses.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "The version: MODEL@N (or MODEL@STAGE, MODEL@ALIAS); a bare MODEL is not accepted.") var ref:
            String
        @Option(help: ArgumentHelp("Why, recorded in the audit log.", valueName: "TEXT")) var reason: String?

        func validate() throws {
            guard ref.contains("@") else {
                throw BadArgument(
                    "delete needs an explicit version, e.g. \(ref)@3 (a bare model name would mean its latest version)"
                )
            }
        }

        func run() throws {
            let result = try global.openRegistry().delete(
                try Reference(parsing: ref),
                actor: global.actor,
                reason: reason
            )
            if global.json { return try Output.json(result) }
            Output.change(result, unchanged: "nothing changed")
            Output.line("run `cairn gc` to reclaim the bytes no other version uses")
        }
    }

    struct GC: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gc",
            abstract: "Reclaim the bytes no live version uses.",
            discussion: """
                Drops manifests and chunks of deleted versions from the index in one transaction (safe against a concurrent push), rewrites packs with a low live share, and deletes pack files retired more than --grace-period seconds ago (readers that started before may still use them). Compare `cairn stats` before and after.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Option(help: ArgumentHelp("Seconds a retired pack file is kept for running readers.", valueName: "SECONDS"))
        var gracePeriod: Double = 3600

        func run() throws {
            let report = try global.openRegistry().collectGarbage(gracePeriod: gracePeriod)
            if global.json { return try Output.json(report) }
            Output.line(
                "removed      \(report.removedManifests) manifests, \(report.removedChunks) chunks (\(Output.bytes(report.removedChunkBytes)) raw)"
            )
            Output.line(
                "packs        \(report.rewrittenPacks) rewritten, \(report.retiredPacks) retired, \(report.deletedPackFiles) files deleted"
            )
            Output.line(
                "temporary    \(report.removedTemporaryFiles) leftover file\(report.removedTemporaryFiles == 1 ? "" : "s") of killed pushes deleted (\(Output.bytes(report.removedTemporaryBytes)))"
            )
            Output.line(
                "stored       \(Output.bytes(report.storedBytesBefore)) → \(Output.bytes(report.storedBytesAfter))"
            )
        }
    }
}
