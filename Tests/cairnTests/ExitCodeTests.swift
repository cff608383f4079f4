import CairnFixtures
import Foundation
import Testing

/// Every exit code docs/cli.md lists, from the built `cairn` executable: each failure prints
/// exactly one line on stderr, starting with `error:`, and nothing it refused changed the store.
@Suite(.serialized) struct ExitCodeTests {
    /// Runs `cairn ARGS` and checks its exit code and, for a failure, its single `error:` line.
    @discardableResult
    static func expectExit(
        _ expected: Int32,
        _ arguments: [String],
        environment: [String: String] = [:],
        mentioning: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> CrossProcessTests.Run {
        let run = try CrossProcessTests.cairn(arguments, environment: environment)
        #expect(
            run.status == expected,
            "cairn \(arguments.joined(separator: " ")): \(run.stderr)",
            sourceLocation: sourceLocation
        )
        if expected != 0 {
            let lines = run.stderr.split(separator: "\n", omittingEmptySubsequences: true)
            #expect(
                lines.count == 1 && lines[0].hasPrefix("error: "),
                "stderr: \(run.stderr)",
                sourceLocation: sourceLocation
            )
            if let mentioning {
                #expect(run.stderr.contains(mentioning), "stderr: \(run.stderr)", sourceLocation: sourceLocation)
            }
        }
        return run
    }

    @Test func everyDocumentedExitCode() throws {
        let w = try CrossProcessTests.Workspace()
        let store = ["--store", w.store, "--user", "alice"]
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)

        // 0: success.
        try Self.expectExit(0, ["init"] + store)
        try Self.expectExit(0, ["push", w.dir("base").path, "--model", "m"] + store)
        let audit = try Self.expectExit(0, ["audit", "--json"] + store).stdout

        // 2: a bad argument or option value, found by the store, by a command's checks, or before
        // anything ran (one line, not argument-parser's usage text).
        try Self.expectExit(2, ["init", "--avg-chunk", "1000", "--store", w.dir("other").path], mentioning: "avg")
        try Self.expectExit(2, ["promote", "m@1", "--to", "nowhere"] + store, mentioning: "unknown stage \"nowhere\"")
        try Self.expectExit(2, ["delete", "m"] + store, mentioning: "explicit version")
        try Self.expectExit(2, ["push", w.dir("base").path, "--model", "m", "--metric", "loss=high"] + store)
        try Self.expectExit(
            2,
            ["token", "create", "--user", "bob", "--role", "king"] + store,
            mentioning: "unknown role"
        )
        try Self.expectExit(2, ["show", "Not A Name"] + store)

        // 3: not found.
        try Self.expectExit(3, ["show", "m@9"] + store, mentioning: "no version 9")
        try Self.expectExit(3, ["pull", "m", "--out", w.dir("out").path, "--include", "*.bin"] + store)

        // 5: refused, and nothing changed.
        try Self.expectExit(5, ["promote", "m@1", "--to", "production"] + store, mentioning: "staging first")
        #expect(try Self.expectExit(0, ["audit", "--json"] + store).stdout == audit)

        // 64: a usage error found while parsing.
        try Self.expectExit(64, ["push", w.dir("base").path] + store, mentioning: "--model")
        try Self.expectExit(64, ["show", "m", "--no-such-option"] + store)

        // 6: not authorized, and 1: another error (a server that cannot be reached).
        let server = try ServerProcess(store: w.store, log: w.dir("serve.log"))
        let reader = try Self.expectExit(0, ["token", "create", "--user", "rita", "--role", "reader"] + store).stdout
        let readerToken = String(decoding: reader, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        try Self.expectExit(6, ["promote", "m@1", "--to", "staging", "--remote", server.url, "--token", readerToken])
        try Self.expectExit(6, ["ls", "--remote", server.url, "--token", "not-a-token"])
        try Self.expectExit(0, ["ls", "--remote", server.url, "--token", server.token])
        try Self.expectExit(
            1,
            ["ls", "--remote", "http://127.0.0.1:1", "--token", server.token],
            mentioning: "cannot reach"
        )

        // 4: corruption found: one byte of a pack flipped.
        let packs = try FileManager.default.subpathsOfDirectory(atPath: w.store + "/packs").filter {
            $0.hasSuffix(".pack")
        }
        let pack = try #require(packs.first.map { w.store + "/packs/" + $0 })
        var bytes = try Data(contentsOf: URL(fileURLWithPath: pack))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: pack))
        let verify = try CrossProcessTests.cairn(["verify", "--deep"] + store)
        #expect(verify.status == 4, "verify --deep: \(verify.stderr)")
        try Self.expectExit(4, ["pull", "m", "--out", w.dir("damaged").path] + store)
    }
}
