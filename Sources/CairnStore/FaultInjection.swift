import Foundation
import Glibc

/// Crash points for tests of what a crash leaves behind, set with the environment variable
/// `CAIRN_FAULT` in a child process (never in normal use):
///
/// - `kill-before-commit`: the process kills itself with SIGKILL after its packs are written and
///   just before the index commit (what a power cut or `kill -9` at that moment leaves).
/// - `wait-before-commit:PATH`: creates `PATH.staged`, then waits (up to 60 s) until `PATH` exists
///   before committing (lets a test run a garbage collection in between).
enum FaultInjection {
    static func beforeCommit() {
        guard let fault = ProcessInfo.processInfo.environment["CAIRN_FAULT"] else { return }
        if fault == "kill-before-commit" {
            kill(getpid(), SIGKILL)
        } else if fault.hasPrefix("wait-before-commit:") {
            let path = String(fault.dropFirst("wait-before-commit:".count))
            FileManager.default.createFile(atPath: path + ".staged", contents: nil)
            for _ in 0..<6000 where !FileManager.default.fileExists(atPath: path) { usleep(10_000) }
        }
    }
}
