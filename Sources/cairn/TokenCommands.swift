import ArgumentParser
import CairnRegistry
import CairnRemote
import Foundation

extension Role: ExpressibleByArgument {}

extension Cairn {
    struct TokenCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "token",
            abstract: "Bearer tokens for a cairn server: create, list, revoke.",
            discussion: """
                Run against the server's store (--store, as the server's operator) or through the server with an admin token (--remote). Roles: reader (read), writer (+ push, tag and alias versions in experimental or staging), approver (+ approve, promote, archive, rollback), admin (+ policy, delete, gc, verify, tokens). Only a token's SHA-256 is stored; the token is printed once.
                """,
            subcommands: [Create.self, List.self, Revoke.self]
        )

        struct Create: ParsableCommand {
            static let configuration = CommandConfiguration(abstract: "Create a token and print it (once).")

            @OptionGroup var global: GlobalOptions
            @Option(
                name: .customLong("user"),
                help: ArgumentHelp(
                    "The user the token identifies (recorded as the actor of its changes).",
                    valueName: "NAME"
                )
            )
            var tokenUser: String
            @Option(help: "reader, writer, approver or admin.") var role: Role

            func run() throws {
                try reportingErrors {
                    let created = try global.openRegistry().createToken(
                        user: tokenUser,
                        role: role,
                        actor: global.actor
                    )
                    if global.json { return try Output.json(created) }
                    Output.line(created.token)
                    FileHandle.standardError.write(
                        Data(
                            "token \(created.record.id) for \(created.record.user) (\(created.record.role.rawValue)); it is not shown again\n"
                                .utf8
                        )
                    )
                }
            }
        }

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "ls",
                abstract: "List tokens (ids, users, roles; never the tokens)."
            )

            @OptionGroup var global: GlobalOptions

            func run() throws {
                try reportingErrors {
                    let tokens = try global.openRegistry().listTokens()
                    if global.json { return try Output.json(tokens) }
                    Output.table(
                        ["ID", "USER", "ROLE", "CREATED_AT", "CREATED_BY", "REVOKED_AT"],
                        tokens.map {
                            [$0.id, $0.user, $0.role.rawValue, $0.createdAt, $0.createdBy, $0.revokedAt ?? "-"]
                        }
                    )
                }
            }
        }

        struct Revoke: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Revoke a token by its id (or a unique prefix of 6+ digits)."
            )

            @OptionGroup var global: GlobalOptions
            @Argument(help: "The token's id (cairn token ls).") var id: String

            func run() throws {
                try reportingErrors {
                    let record = try global.openRegistry().revokeToken(id: id, actor: global.actor)
                    if global.json { return try Output.json(record) }
                    Output.line("revoked token \(record.id) of \(record.user) (\(record.role.rawValue))")
                }
            }
        }
    }
}
