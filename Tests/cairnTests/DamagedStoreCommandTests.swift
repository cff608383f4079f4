import CairnFixtures
import Foundation
import Glibc
import Testing

/// A store whose index was deleted or cut short: every command refuses it with one `error:` line
/// and exit code 4 (none crashes, none sees an empty store), and `gc` deletes nothing.
@Suite(.serialized) struct DamagedStoreCommandTests {
    static let commands: [[String]] = [
        ["ls"], ["verify"], ["verify", "--deep"], ["gc", "--grace-period", "0"], ["show", "m"], ["stats"],
        ["pull", "m", "--out", "OUT"], ["push", "TREE", "--model", "n"], ["audit", "verify"],
    ]

    func expectEveryCommandRefuses(_ w: CrossProcessTests.Workspace, mentioning: String) throws {
        let packs = try FileManager.default.subpathsOfDirectory(atPath: w.store + "/packs").sorted()
        for command in Self.commands {
            let args = command.map { $0 == "OUT" ? w.dir("out").path : $0 == "TREE" ? w.dir("base").path : $0 }
            try ExitCodeTests.expectExit(4, args + ["--store", w.store], mentioning: mentioning)
        }
        #expect(try FileManager.default.subpathsOfDirectory(atPath: w.store + "/packs").sorted() == packs)
        #expect(!FileManager.default.fileExists(atPath: w.dir("out").path))
    }

    @Test func aDeletedIndexIsRefusedByEveryCommand() throws {
        let w = try CrossProcessTests.Workspace()
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try ExitCodeTests.expectExit(0, ["init", "--store", w.store])
        try ExitCodeTests.expectExit(0, ["push", w.dir("base").path, "--model", "m", "--store", w.store])
        try FileManager.default.removeItem(atPath: w.store + "/index.mdb")
        try FileManager.default.removeItem(atPath: w.store + "/index.mdb-lock")
        try expectEveryCommandRefuses(w, mentioning: "is missing while")
        #expect(!FileManager.default.fileExists(atPath: w.store + "/index.mdb"))
    }

    @Test func aTruncatedIndexIsRefusedByEveryCommand() throws {
        let w = try CrossProcessTests.Workspace()
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try ExitCodeTests.expectExit(0, ["init", "--store", w.store])
        try ExitCodeTests.expectExit(0, ["push", w.dir("base").path, "--model", "m", "--store", w.store])
        let index = w.store + "/index.mdb"
        let size = try #require(try FileManager.default.attributesOfItem(atPath: index)[.size] as? Int)
        #expect(truncate(index, off_t(size / 3)) == 0)
        try expectEveryCommandRefuses(w, mentioning: "truncated")
    }

    /// LMDB trusts the sizes its pages record, so a damaged page can make it read past the end of
    /// the mapped file before any check runs: the kernel's SIGBUS then ends cairn with the damage
    /// exit code and one error line, never a crash report.
    @Test func aReadPastTheMappedIndexExitsFour() throws {
        let w = try CrossProcessTests.Workspace()
        try ExitCodeTests.expectExit(0, ["init", "--store", w.store])
        let log = w.dir("serve.log")
        let server = try ServerProcess(store: w.store, log: log)
        kill(server.process.processIdentifier, SIGBUS)
        server.process.waitUntilExit()
        #expect(server.process.terminationReason == .exit && server.process.terminationStatus == 4)
        let output = try String(contentsOf: log, encoding: .utf8)
        #expect(output.contains("error: a read ran past the end of the index (index.mdb)"))
        #expect(!output.contains("crashed"))
    }
}
