import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation
import Testing

@testable import cairn

/// What the command line accepts from a person and what it prints back: metric values are decimal
/// numbers, a key given twice is refused, `pull --out` does not merge into a directory or write
/// into the store, and control characters from stored names never reach the terminal raw.
@Suite(.serialized) struct CommandInputTests {
    @Test func metricValuesAreDecimalNumbers() {
        for (text, value) in [("1.5", 1.5), ("-2", -2.0), (".5", 0.5), ("3e-4", 3e-4), ("+7", 7.0), ("10.", 10.0)] {
            #expect(DecimalNumber.parse(text) == value, "\(text)")
        }
        for text in [
            "0x10", "inf", "nan", "infinity", "", "-", ".", "1e", "1e+", "1.2.3", " 1", "1 ", "1_000", "0x1p3",
        ] {
            #expect(DecimalNumber.parse(text) == nil, "\(text)")
        }
        #expect(throws: RegistryError.self) { try CairnRegistry.Policy.Requirement(parsing: "loss<=0x10") }
    }

    @Test func refusedInputsExitTwoAndStoreNothing() throws {
        let w = try CrossProcessTests.Workspace()
        let store = ["--store", w.store, "--user", "alice"]
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try ExitCodeTests.expectExit(0, ["init"] + store)
        let base = w.dir("base").path
        try ExitCodeTests.expectExit(
            2,
            ["push", base, "--model", "m", "--metric", "x=0x10"] + store,
            mentioning: "decimal"
        )
        try ExitCodeTests.expectExit(2, ["push", base, "--model", "m", "--metric", "x=1", "--metric", "x=2"] + store)
        try ExitCodeTests.expectExit(2, ["push", base, "--model", "m", "--tag", "a=1", "--tag", "a=1"] + store)
        #expect(try Registry(store: try Store.open(at: w.store)).listModels().isEmpty)
        try ExitCodeTests.expectExit(0, ["push", base, "--model", "m", "--metric", "x=1e-3"] + store)
        #expect(
            try Registry(store: try Store.open(at: w.store)).resolve(try Reference(parsing: "m")).metrics == [
                "x": 0.001
            ]
        )
    }

    @Test func pullOutIsNewOrEmptyAndOutsideTheStore() throws {
        let w = try CrossProcessTests.Workspace()
        let store = ["--store", w.store, "--user", "alice"]
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try ExitCodeTests.expectExit(0, ["init"] + store)
        try ExitCodeTests.expectExit(0, ["push", w.dir("base").path, "--model", "m"] + store)

        let busy = w.dir("busy").path
        try FileManager.default.createDirectory(atPath: busy, withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: busy + "/notes.txt"))
        try ExitCodeTests.expectExit(2, ["pull", "m", "--out", busy] + store, mentioning: "not empty")
        #expect(try FileManager.default.contentsOfDirectory(atPath: busy) == ["notes.txt"])
        try ExitCodeTests.expectExit(0, ["pull", "m", "--out", busy, "--force"] + store)
        #expect(try String(contentsOfFile: busy + "/notes.txt", encoding: .utf8) == "mine")
        #expect(FileManager.default.fileExists(atPath: busy + "/" + FixtureModels.configFile))

        let empty = w.dir("empty").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try ExitCodeTests.expectExit(0, ["pull", "m", "--out", empty] + store)

        let packsBefore = try FileManager.default.subpathsOfDirectory(atPath: w.store)
        try ExitCodeTests.expectExit(
            2,
            ["pull", "m", "--out", w.store + "/packs"] + store,
            mentioning: "inside the store"
        )
        try ExitCodeTests.expectExit(
            2,
            ["pull", "m", "--out", w.store + "/new/dir", "--force"] + store,
            mentioning: "inside the store"
        )
        #expect(try FileManager.default.subpathsOfDirectory(atPath: w.store) == packsBefore)
        try ExitCodeTests.expectExit(
            2,
            ["pull", "m", "--out", busy + "/notes.txt", "--force"] + store,
            mentioning: "not a directory"
        )
    }

    @Test func controlCharactersAreEscapedOnOutput() throws {
        #expect(Output.escaped("plain: ok — ünïcode") == "plain: ok — ünïcode")
        #expect(Output.escaped("a\u{1B}[31mred\u{1B}[0m") == "a\\x1b[31mred\\x1b[0m")
        #expect(Output.escaped("two\nlines\r\t") == "two\\nlines\\r\\t")
        #expect(Output.escaped("\u{9B}31m \u{7F}") == "\\x9b31m \\x7f")
        #expect(Output.escaped("evil\u{202E}txt.exe") == "evil\\u{202e}txt.exe")

        // A file name carrying an escape sequence, listed by `cairn show`: escaped on stdout.
        let w = try CrossProcessTests.Workspace()
        let store = ["--store", w.store, "--user", "alice"]
        let tree = w.dir("tree").path
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: tree + "/evil\u{1B}[2Jname"))
        try ExitCodeTests.expectExit(0, ["init"] + store)
        try ExitCodeTests.expectExit(0, ["push", tree, "--model", "m", "--message", "hi\u{1B}]0;title\u{07}"] + store)
        let shown = String(decoding: try ExitCodeTests.expectExit(0, ["show", "m"] + store).stdout, as: UTF8.self)
        #expect(!shown.contains("\u{1B}") && !shown.contains("\u{07}"))
        #expect(shown.contains("evil\\x1b[2Jname") && shown.contains("hi\\x1b]0;title\\x07"))
        let refused = try ExitCodeTests.expectExit(3, ["cat", "m", "no\u{1B}[2Jfile"] + store)
        #expect(!refused.stderr.contains("\u{1B}") && refused.stderr.contains("no\\x1b[2Jfile"))
    }

    /// An empty directory does not become a version that pulls nothing, unless asked for — pushed
    /// locally or to a server.
    @Test func anEmptyTreeIsRefusedUnlessAskedFor() throws {
        let w = try CrossProcessTests.Workspace()
        let store = ["--store", w.store, "--user", "alice"]
        let empty = w.dir("empty").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try ExitCodeTests.expectExit(0, ["init"] + store)
        try ExitCodeTests.expectExit(2, ["push", empty, "--model", "m"] + store, mentioning: "holds no files")
        #expect(try Registry(store: try Store.open(at: w.store)).listModels().isEmpty)
        try ExitCodeTests.expectExit(0, ["push", empty, "--model", "m", "--allow-empty"] + store)
        #expect(try Registry(store: try Store.open(at: w.store)).resolve(try Reference(parsing: "m")).fileCount == 0)

        let server = try ServerProcess(store: w.store, log: w.dir("serve.log"))
        let remote = ["--remote", server.url, "--token", server.token, "--cache", w.dir("cache").path]
        try ExitCodeTests.expectExit(2, ["push", empty, "--model", "n"] + remote, mentioning: "holds no files")
        try ExitCodeTests.expectExit(3, ["show", "n"] + remote)
        try ExitCodeTests.expectExit(0, ["push", empty, "--model", "n", "--allow-empty"] + remote)
    }

    /// A store does not ingest itself: a tree that is the store, holds it or lies inside it.
    @Test func aStoreDoesNotIngestItself() throws {
        let w = try CrossProcessTests.Workspace()
        let store = ["--store", w.store, "--user", "alice"]
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try ExitCodeTests.expectExit(0, ["init"] + store)
        try ExitCodeTests.expectExit(0, ["push", w.dir("base").path, "--model", "m"] + store)
        let before = try FileManager.default.subpathsOfDirectory(atPath: w.store + "/packs").sorted()
        try ExitCodeTests.expectExit(2, ["push", w.store, "--model", "n"] + store, mentioning: "holds the store")
        try ExitCodeTests.expectExit(2, ["push", w.root.path, "--model", "n"] + store, mentioning: "holds the store")
        try ExitCodeTests.expectExit(
            2,
            ["push", w.store + "/packs", "--model", "n"] + store,
            mentioning: "is inside the store"
        )
        try ExitCodeTests.expectExit(3, ["show", "n"] + store)
        #expect(try FileManager.default.subpathsOfDirectory(atPath: w.store + "/packs").sorted() == before)
    }
}
