import Glibc

/// Turns the signals a damaged index raises into the exit code for damage (4) with one `error:`
/// line, instead of a crash report.
///
/// The index is a memory-mapped LMDB file, and LMDB trusts what its pages record: a damaged page
/// can make LMDB itself read past the end of the file (SIGBUS) or follow a pointer it built from
/// garbage (SIGSEGV) before any check of ours runs. Nothing else in cairn maps files, and its
/// Swift code does not touch raw memory out of bounds without trapping first, so these signals
/// mean a damaged index — the SIGSEGV message still says how to tell a bug from damage. A write
/// transaction that was open commits nothing, so the store is unchanged.
enum DamageSignal {
    /// Installs the handlers; call once, first thing.
    static func install() {
        install(SIGBUS) { _ in
            // Only async-signal-safe calls here: write(2) of a constant and _exit(2).
            let message: StaticString =
                "error: a read ran past the end of the index (index.mdb): the store's index is damaged; nothing was changed: restore it from a backup\n"
            _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
            _exit(4)
        }
        install(SIGSEGV) { _ in
            let message: StaticString =
                "error: a memory fault while reading the index (index.mdb): the store's index is damaged; nothing was changed: restore it from a backup (if `cairn verify` finds nothing wrong, this is a bug in cairn: please report it)\n"
            _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
            _exit(4)
        }
    }

    private static func install(_ signal: Int32, _ handler: @convention(c) (Int32) -> Void) {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(signal, &action, nil)
    }
}
