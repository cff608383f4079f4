import ArgumentParser
import CairnFixtures
import CairnRegistry
import CairnServer
import CairnStore
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import cairn

/// The command line's token commands on a store, and its commands against a live server on
/// 127.0.0.1 (ephemeral port).
@Suite struct CommandLineTests {
    static func url(_ client: some TestClientProtocol) -> String { "http://localhost:\(client.port!)" }

    @Test func tokenCommandsOnAStore() throws {
        let dir = TemporaryDirectory()
        let store = dir.sub("store")
        func run(_ args: [String]) throws {
            var command = try Cairn.parseAsRoot(args + ["--store", store])
            try command.run()
        }
        try run(["init"])
        try run(["token", "create", "--user", "ci", "--role", "approver"])
        #expect(throws: (any Error).self) {
            try Cairn.parseAsRoot(["token", "create", "--role", "writer", "--store", store])
        }
        let first = try { () throws -> TokenRecord in
            let registry = try Registry(store: try Store.open(at: store))
            return try #require(try registry.listTokens().first)
        }()
        #expect(first.user == "ci" && first.role == .approver && !first.isRevoked)
        try run(["token", "ls"])
        try run(["token", "revoke", String(first.id.prefix(8))])
        let registry = try Registry(store: try Store.open(at: store))
        #expect(try registry.listTokens().first?.isRevoked == true)
    }

    @Test func commandLineAgainstAServer() async throws {
        let f = try ServerFixture()
        let base = f.dir.sub("model")
        try FixtureModels.writeBase(to: URL(fileURLWithPath: base), shape: .tiny, seed: 2)
        try await f.application.test(.live) { client in
            let url = Self.url(client)
            func run(_ args: [String], token: String, exitCode: Int32 = 0) async throws {
                let full = args + ["--remote", url, "--token", token, "--cache", f.dir.sub("cli-cache")]
                let status = try await onThread { Cairn.executeBlocking(full) }
                #expect(status == exitCode, "cairn \(args.joined(separator: " "))")
            }
            try await run(
                ["push", base, "--model", "cli-model", "--metric", "eval_loss=1.5", "--json"],
                token: f.writer
            )
            try await run(["ls"], token: f.reader)
            try await run(["show", "cli-model@1"], token: f.reader)
            try await run(["tag", "cli-model@1", "dataset=d1"], token: f.writer)
            try await run(["promote", "cli-model@1", "--to", "staging", "--reason", "ok"], token: f.approver)
            try await run(["promote", "cli-model@1", "--to", "production", "--reason", "ship"], token: f.approver)
            try await run(["alias", "set", "cli-model", "champion", "1"], token: f.approver)
            try await run(["pull", "cli-model@champion", "--out", f.dir.sub("cli-out")], token: f.reader)
            #expect(try readTree(f.dir.sub("cli-out")) == readTree(base))
            try await run(["history", "cli-model"], token: f.reader)
            try await run(["audit", "verify"], token: f.reader)
            try await run(["stats", "--json"], token: f.reader)
            // A writer cannot promote: exit code 6 (not authorized).
            try await run(["promote", "cli-model@1", "--to", "archived"], token: f.writer, exitCode: 6)
            let version = try f.registry.resolve(try Reference(parsing: "cli-model@production"))
            #expect(version.version == 1 && version.tags == ["dataset": "d1"] && version.createdBy == "will")
            let log = try f.registry.auditLog(model: "cli-model")
            #expect(log.filter { $0.action == .promote }.allSatisfy { $0.actor == "ann" })
        }
    }
}
