import ArgumentParser
import CairnRegistry
import Foundation

extension Cairn {
    struct Alias: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Named pointers to versions (champion, challenger, canary): MODEL@ALIAS.",
            subcommands: [Set.self, Remove.self, List.self]
        )

        struct Set: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Point ALIAS at version N, creating it or moving it atomically."
            )

            @OptionGroup var global: GlobalOptions
            @Argument(help: "The model.") var model: String
            @Argument(help: "The alias: lower-case letters, digits, '.', '_', '-'; not a number or stage name.")
            var alias: String
            @Argument(help: "The version number it points at.") var version: Int
            @Option(help: ArgumentHelp("Why, recorded in the audit log.", valueName: "TEXT")) var reason: String?

            func run() throws {
                let result = try global.openRegistry().setAlias(
                    model: model,
                    alias: alias,
                    version: version,
                    actor: global.actor,
                    reason: reason
                )
                if global.json { return try Output.json(result) }
                Output.change(result, unchanged: "\(model)@\(alias) already points at \(model)@\(version)")
            }
        }

        struct Remove: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove an alias.")

            @OptionGroup var global: GlobalOptions
            @Argument(help: "The model.") var model: String
            @Argument(help: "The alias.") var alias: String
            @Option(help: ArgumentHelp("Why, recorded in the audit log.", valueName: "TEXT")) var reason: String?

            func run() throws {
                let result = try global.openRegistry().removeAlias(
                    model: model,
                    alias: alias,
                    actor: global.actor,
                    reason: reason
                )
                if global.json { return try Output.json(result) }
                Output.change(result, unchanged: "nothing changed")
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(commandName: "ls", abstract: "List a model's aliases.")

            @OptionGroup var global: GlobalOptions
            @Argument(help: "The model.") var model: String

            func run() throws {
                let aliases = try global.openRegistry().aliases(of: model)
                if global.json { return try Output.json(aliases) }
                Output.table(
                    ["ALIAS", "VERSION", "UPDATED_BY", "UPDATED_AT"],
                    aliases.map { [$0.alias, "\($0.version)", $0.updatedBy, $0.updatedAt] }
                )
            }
        }
    }

    struct Tag: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set tags on a version (K=V, e.g. dataset=tickets-v7)."
        )

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String
        @Argument(help: ArgumentHelp("Tags to set.", valueName: "K=V")) var tags: [String]

        func run() throws {
            let result = try global.openRegistry().tag(
                try Reference(parsing: ref),
                try parsePairs(tags, what: "tag"),
                actor: global.actor
            )
            if global.json { return try Output.json(result) }
            Output.change(result, unchanged: "nothing changed: \(ref) already has these tags")
        }
    }

    struct Untag: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove tags from a version.")

        @OptionGroup var global: GlobalOptions
        @Argument(help: "A reference: MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS.") var ref: String
        @Argument(help: ArgumentHelp("Names of the tags to remove.", valueName: "K")) var keys: [String]

        func run() throws {
            let result = try global.openRegistry().untag(try Reference(parsing: ref), keys, actor: global.actor)
            if global.json { return try Output.json(result) }
            Output.change(result, unchanged: "nothing changed")
        }
    }

    struct PolicyCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "policy",
            abstract: "A model's promotion gates: required approvals and metric thresholds.",
            subcommands: [Set.self, Show.self]
        )

        struct Set: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Replace the model's whole policy (with no options: clear it).",
                discussion: """
                    --approvals production=2 requires two approvals from users other than the version's creator before a promotion to production. --require 'eval_loss<=1.9' requires the metric when promoting to production; prefix the stage to check it for staging: --require 'staging:eval_loss<=2.5'.
                    """
            )

            @OptionGroup var global: GlobalOptions
            @Argument(help: "The model.") var model: String
            @Option(
                help: ArgumentHelp(
                    "Approvals required to enter a stage, staging or production (repeatable).",
                    valueName: "STAGE=N"
                )
            )
            var approvals: [String] = []
            @Option(
                help: ArgumentHelp(
                    "A metric threshold, METRIC<=V or METRIC>=V (also <, >, =), optionally STAGE:… (repeatable).",
                    valueName: "COND"
                )
            )
            var require: [String] = []
            @Option(help: ArgumentHelp("Why, recorded in the audit log.", valueName: "TEXT")) var reason: String?

            func validate() throws { _ = try policy() }

            /// The policy the options describe.
            func policy() throws -> CairnRegistry.Policy {
                var policy = CairnRegistry.Policy()
                for (stage, count) in try parsePairs(approvals, what: "approvals") {
                    guard let n = Int(count) else {
                        throw BadArgument("--approvals \(stage)=\(count): N must be a whole number")
                    }
                    policy.approvals[try Choice<Stage>(text: stage).value(for: "--approvals")] = n
                }
                policy.requirements = try require.map { try CairnRegistry.Policy.Requirement(parsing: $0) }
                return policy
            }

            func run() throws {
                let policy = try policy()
                let result = try global.openRegistry().setPolicy(
                    model: model,
                    policy,
                    actor: global.actor,
                    reason: reason
                )
                if global.json { return try Output.json(result) }
                Output.change(result, unchanged: "nothing changed: the policy of \(model) is already \(policy)")
            }
        }

        struct Show: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Show the model's policy.")

            @OptionGroup var global: GlobalOptions
            @Argument(help: "The model.") var model: String

            func run() throws {
                let policy = try global.openRegistry().policy(of: model)
                if global.json { return try Output.json(PolicyView(model: model, policy: policy)) }
                if policy.isEmpty {
                    return Output.line("\(model): no policy (promotions need no approvals or metrics)")
                }
                Output.line("\(model):")
                for stage in [Stage.staging, .production] {
                    if let n = policy.approvals[stage], n > 0 {
                        Output.line(
                            "  \(stage.rawValue): \(n) approval\(n == 1 ? "" : "s") from users other than the version's creator"
                        )
                    }
                }
                for r in policy.requirements { Output.line("  \(r.stage.rawValue): requires \(r.condition)") }
            }
        }
    }
}

/// `policy show --json`.
struct PolicyView: Encodable {
    var model: String
    var policy: Policy

    enum CodingKeys: String, CodingKey {
        case model, approvals, requirements
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encode(policy.approvals.filter { $0.value > 0 }, forKey: .approvals)
        try c.encode(policy.requirements, forKey: .requirements)
    }
}
