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

    /// A named database's root page number damaged (set to 1, which LMDB asserts never happens):
    /// LMDB's own check fails inside it, and cairn ends with exit code 4 and one line instead of
    /// LMDB's abort(); gc deletes nothing.
    @Test func aFailedLMDBAssertionExitsFour() throws {
        let w = try CrossProcessTests.Workspace()
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try ExitCodeTests.expectExit(0, ["init", "--store", w.store])
        try ExitCodeTests.expectExit(0, ["push", w.dir("base").path, "--model", "m", "--store", w.store])
        let index = URL(fileURLWithPath: w.store + "/index.mdb")
        var bytes = [UInt8](try Data(contentsOf: index))
        // A record of the main database: node header (its last two bytes: the key's length), the
        // key "chunks", then the database's MDB_db, whose md_root is at offset 40.
        let name = Array("chunks".utf8)
        var damaged = 0
        for at in 8..<(bytes.count - name.count - 48)
        where bytes[at - 2] == UInt8(name.count) && bytes[at - 1] == 0 && Array(bytes[at..<at + name.count]) == name {
            let root = at + name.count + 40
            for i in 0..<8 { bytes[root + i] = i == 0 ? 1 : 0 }
            damaged += 1
        }
        try #require(damaged > 0)
        try Data(bytes).write(to: index)
        let packs = try FileManager.default.subpathsOfDirectory(atPath: w.store + "/packs").sorted()
        try ExitCodeTests.expectExit(4, ["verify", "--store", w.store], mentioning: "is damaged (LMDB:")
        try ExitCodeTests.expectExit(
            4,
            ["gc", "--grace-period", "0", "--store", w.store],
            mentioning: "is damaged (LMDB:"
        )
        #expect(try FileManager.default.subpathsOfDirectory(atPath: w.store + "/packs").sorted() == packs)
    }
}
