import Glibc

/// Turns SIGBUS into the exit code for damage (4) with one `error:` line.
///
/// The index is a memory-mapped LMDB file, and LMDB trusts the sizes its pages record: a damaged
/// page can make LMDB itself read past the end of the file before any check of ours runs, and the
/// kernel answers such a read with SIGBUS. Nothing else in cairn maps files, so a SIGBUS means a
/// damaged index. A write transaction that was open commits nothing, so the store is unchanged.
enum DamageSignal {
    /// Installs the handler; call once, first thing.
    static func install() {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in
            // Only async-signal-safe calls here: write(2) of a constant and _exit(2).
            let message: StaticString =
                "error: a read ran past the end of the index (index.mdb): the store's index is damaged; nothing was changed: restore it from a backup\n"
            _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
            _exit(4)
        }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGBUS, &action, nil)
    }
}
