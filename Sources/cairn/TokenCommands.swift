import ArgumentParser
import CairnAPI
import CairnRegistry
import CairnRemote
import Foundation

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
            static let configuration = CommandConfiguration(
                abstract: "Create a token for --user NAME with --role and print it (once).",
                discussion:
                    "Here --user names the user the token identifies (the actor of its changes on the server); the creation itself is recorded as $CAIRN_USER, else the OS user."
            )

            @OptionGroup var global: GlobalOptions
            @Option(help: "reader, writer, approver or admin.") var role: Choice<Role>

            func validate() throws {
                _ = try role.value(for: "--role")
                guard let user = global.user, !user.isEmpty else {
                    throw BadArgument("give the user the token identifies: --user NAME")
                }
            }

            func run() throws {
                let env = ProcessInfo.processInfo.environment
                let creator =
                    env["CAIRN_USER"].flatMap { $0.isEmpty ? nil : $0 } ?? env["USER"].flatMap { $0.isEmpty ? nil : $0 }
                    ?? NSUserName()
                let created = try global.openRegistry().createToken(
                    user: global.user ?? "",
                    role: try role.value(for: "--role"),
                    actor: creator
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

        struct List: ParsableCommand {
            static let configuration = CommandConfiguration(
                commandName: "ls",
                abstract: "List tokens (ids, users, roles; never the tokens)."
            )

            @OptionGroup var global: GlobalOptions

            func run() throws {
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

        struct Revoke: ParsableCommand {
            static let configuration = CommandConfiguration(
                abstract: "Revoke a token by its id (or a unique prefix of 6+ digits)."
            )

            @OptionGroup var global: GlobalOptions
            @Argument(help: "The token's id (cairn token ls).") var id: String

            func run() throws {
                let record = try global.openRegistry().revokeToken(id: id, actor: global.actor)
                if global.json { return try Output.json(record) }
                Output.line("revoked token \(record.id) of \(record.user) (\(record.role.rawValue))")
            }
        }
    }
}
