import ArgumentParser

/// The `cairn` command: a model registry on a chunked, deduplicating store.
@main
struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "A model registry on a chunked, deduplicating artifact store.",
        discussion: """
            Cairn stores model directories (safetensors weights, adapters, configs, tokenizers) as numbered versions. Files are cut into content-defined chunks, deduplicated by SHA-256 and compressed with zstd, so variants of one base model cost little more than their changed bytes.

            A reference is MODEL (the latest version), MODEL@N, MODEL@STAGE (e.g. MODEL@production) or MODEL@ALIAS. Versions move experimental → staging → production → archived through per-model gates (cairn policy), and every change is recorded in a tamper-evident audit log (cairn audit). The acting user is --user, else $CAIRN_USER, else the OS user. The store is --store PATH, else $CAIRN_STORE, else ~/.local/share/cairn/store; with --remote URL (else $CAIRN_REMOTE) and --token (else $CAIRN_TOKEN) every command works against a cairn server instead (cairn serve). Errors print one line starting with "error:" and exit non-zero (see docs/cli.md for exit codes).
            """,
        version: "0.1.0",
        subcommands: [
            Init.self, Push.self, Pull.self, Cat.self, List.self, Show.self, Diff.self, LineageCommand.self,
            Promote.self, Approve.self, Rollback.self, Alias.self, Tag.self, Untag.self, PolicyCommand.self,
            History.self, Audit.self, Archive.self, Delete.self, GC.self, Verify.self, Stats.self, Demo.self,
            Serve.self, TokenCommand.self,
        ]
    )
}
