import ArgumentParser
import CairnAPI
import CairnStore
import Glibc

/// The `cairn` command: a model registry on a chunked, deduplicating store.
@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "A model registry on a chunked, deduplicating artifact store.",
        discussion: """
            Cairn stores model directories (safetensors weights, adapters, configs, tokenizers) as numbered versions. Files are cut into content-defined chunks, deduplicated by SHA-256 and compressed with zstd, so variants of one base model cost little more than their changed bytes.

            A reference is MODEL (the latest version), MODEL@N, MODEL@STAGE (e.g. MODEL@production) or MODEL@ALIAS. Versions move experimental → staging → production → archived through per-model gates (cairn policy), and every change is recorded in a tamper-evident audit log (cairn audit). The acting user is --user, else $CAIRN_USER, else the OS user. The store is --store PATH, else $CAIRN_STORE, else ~/.local/share/cairn/store; with --remote URL (else $CAIRN_REMOTE) and --token (else $CAIRN_TOKEN) every command works against a cairn server instead (cairn serve).

            Errors print one line starting with "error:" and exit with 1 (an error), 2 (a bad argument or option value), 3 (not found), 4 (corruption found), 5 (refused: nothing changed), 6 (not authorized) or 64 (a usage error: a missing argument, an unknown option); docs/cli.md has the details.
            """,
        version: "0.1.0",
        groupedSubcommands: [
            CommandGroup(name: "Push and pull", subcommands: [Init.self, Push.self, Pull.self, Cat.self]),
            CommandGroup(
                name: "Inspect",
                subcommands: [List.self, Show.self, Diff.self, LineageCommand.self, History.self, Stats.self]
            ),
            CommandGroup(
                name: "Lifecycle",
                subcommands: [
                    Promote.self, Approve.self, Rollback.self, Archive.self, Delete.self, Alias.self, Tag.self,
                    Untag.self, PolicyCommand.self,
                ]
            ),
            CommandGroup(name: "Audit and maintenance", subcommands: [Audit.self, Verify.self, GC.self]),
            CommandGroup(name: "Server", subcommands: [Serve.self, TokenCommand.self]),
            CommandGroup(name: "Try it", subcommands: [Demo.self]),
        ]
    )

    /// The process entry: runs the command line and exits with its code.
    static func main() async {
        DamageSignal.install()
        Glibc.exit(await execute(Array(CommandLine.arguments.dropFirst())))
    }

    /// Parses `arguments`, runs the command they name and returns the exit code. Every failure,
    /// from parsing or from running, is reported here and only here: one `error:` line on stderr,
    /// and the exit code of its ``ErrorCode`` (docs/cli.md).
    static func execute(_ arguments: [String]) async -> Int32 {
        let command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            return reportParsingFailure(error, arguments: arguments)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
            return 0
        } catch {
            return report(error, arguments: arguments)
        }
    }

    /// ``execute(_:)`` on the calling thread, for callers that must not wait in Swift concurrency
    /// (a command against a remote blocks its thread on the network). `serve`, the one async
    /// command, is refused here.
    static func executeBlocking(_ arguments: [String]) -> Int32 {
        var command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            return reportParsingFailure(error, arguments: arguments)
        }
        guard !(command is any AsyncParsableCommand) else {
            return report(BadArgument("\(arguments.first ?? "") runs only from the command line"), arguments: arguments)
        }
        do {
            try command.run()
            return 0
        } catch {
            return report(error, arguments: arguments)
        }
    }

    /// A failure found while parsing. `--help` and `--version` print what they ask for and exit 0.
    /// Argument-parser's own findings (a missing argument, an unknown option, a value that is not
    /// a number) are usage errors: 64. Errors our `validate()` methods throw are all
    /// ``BadArgument``s, which argument-parser reports with its generic failure code: 2.
    private static func reportParsingFailure(_ error: any Error, arguments: [String]) -> Int32 {
        let code = exitCode(for: error)
        if code == .success {
            exit(withError: error)
        }
        let message = firstLine(of: message(for: error)) ?? "\(error)"
        if code == .failure {
            printError(message)
            return ErrorCode.invalidArgument.exitCode
        }
        let named = arguments.first { !$0.hasPrefix("-") }
        let known = configuration.subcommands.contains { $0._commandName == named }
        let subcommand = known ? " \(named ?? "")" : ""
        printError("\(message) (`cairn help\(subcommand)` shows the usage)")
        return code.rawValue
    }

    /// A failure found while running: its code's exit code. Argument-parser's own signals (the
    /// root command run without a subcommand asks for its help) are reported as while parsing.
    static func report(_ error: any Error, arguments: [String]) -> Int32 {
        switch error {
        case let exit as ExitCode:
            return exit.rawValue
        case let error as any CodedError:
            printError(error.message)
            return error.code.exitCode
        default:
            if exitCode(for: error) == .success {
                exit(withError: error)
            }
            printError(firstLine(of: message(for: error)) ?? "\(error)")
            return ErrorCode.internal.exitCode
        }
    }

    private static func firstLine(of text: String) -> String? {
        text.split(separator: "\n").first.map(String.init)
    }
}
