import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation
import Glibc
import Testing

/// Tests that run the built `cairn` executable in child processes: what one process writes another
/// reads, a push killed before its commit leaves nothing visible, and GC racing a push in another
/// process loses nothing.
@Suite(.serialized) struct CrossProcessTests {
    /// The `cairn` executable next to the test bundle (SwiftPM builds it with the tests).
    static let executable: URL = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("cairn")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: ".build/debug/cairn")
    }()

    struct Run {
        var status: Int32
        var reason: Process.TerminationReason
        var stdout: Data
        var stderr: String
    }

    @discardableResult
    static func cairn(_ arguments: [String], environment: [String: String] = [:]) throws -> Run {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "CAIRN_STORE")
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Run(
            status: process.terminationStatus,
            reason: process.terminationReason,
            stdout: stdout,
            stderr: String(decoding: stderr, as: UTF8.self)
        )
    }

    final class Workspace {
        let root: URL
        var store: String { root.appendingPathComponent("store").path }
        init() throws {
            root = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-xproc-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        }
        deinit { try? FileManager.default.removeItem(at: root) }
        func dir(_ name: String) -> URL { root.appendingPathComponent(name) }
    }

    func sameFiles(_ a: URL, _ b: URL) throws -> Bool {
        let names = try FileManager.default.contentsOfDirectory(atPath: a.path).sorted()
        guard names == (try FileManager.default.contentsOfDirectory(atPath: b.path).sorted()) else { return false }
        return try names.allSatisfy {
            try Data(contentsOf: a.appendingPathComponent($0)) == Data(contentsOf: b.appendingPathComponent($0))
        }
    }

    @Test func storeWrittenByOneProcessIsReadByAnother() throws {
        let w = try Workspace()
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try FixtureModels.writeLoRA(to: w.dir("lora"), shape: .tiny, seed: 1, variantSeed: 2)
        #expect(try Self.cairn(["init", "--store", w.store]).status == 0)
        let pushed = try Self.cairn(["push", w.dir("base").path, "--model", "m", "--store", w.store, "--json"])
        #expect(pushed.status == 0, "\(pushed.stderr)")
        let result = try JSONDecoder().decode(PushResult.self, from: pushed.stdout)
        #expect(result.version == 1 && result.newBytes == result.logicalBytes)

        // This process reads what the child wrote...
        do {
            let registry = try Registry(store: try Store.open(at: w.store))
            let version = try registry.resolve(try Reference(parsing: "m@1"))
            try registry.pull(version, to: w.dir("out1").path)
            #expect(try sameFiles(w.dir("base"), w.dir("out1")))
            // ...and writes a version that a child then reads.
            _ = try registry.push(directory: w.dir("lora").path, request: PushRequest(model: "m", actor: "t"))
        }
        let pulled = try Self.cairn(["pull", "m@2", "--out", w.dir("out2").path, "--store", w.store])
        #expect(pulled.status == 0, "\(pulled.stderr)")
        #expect(try sameFiles(w.dir("lora"), w.dir("out2")))
        let cat = try Self.cairn(["cat", "m@1", "config.json", "--store", w.store])
        #expect(cat.stdout == (try Data(contentsOf: w.dir("base").appendingPathComponent("config.json"))))
    }

    @Test func pushKilledBeforeCommitLeavesNoVersionAndTheStoreVerifies() throws {
        let w = try Workspace()
        try FixtureModels.writeBase(to: w.dir("base"), shape: .small, seed: 3)
        try Self.cairn(["init", "--store", w.store])
        let killed = try Self.cairn(
            ["push", w.dir("base").path, "--model", "m", "--store", w.store],
            environment: ["CAIRN_FAULT": "kill-before-commit"]
        )
        #expect(killed.reason == .uncaughtSignal && killed.status == SIGKILL)

        let store = try Store.open(at: w.store)
        let registry = try Registry(store: store)
        #expect(try registry.listModels().isEmpty)
        #expect(throws: RegistryError.self) { try registry.resolve(try Reference(parsing: "m")) }
        let report = try store.verify(deep: true)
        #expect(report.isHealthy)
        #expect(report.unreferencedPacks >= 1, "the killed push had written its packs")
        #expect(try store.statistics().chunkCount == 0)
        // The store works normally afterwards.
        let result = try registry.push(directory: w.dir("base").path, request: PushRequest(model: "m", actor: "t"))
        #expect(result.version == 1)
        try registry.pull(try registry.resolve(try Reference(parsing: "m@1")), to: w.dir("out").path)
        #expect(try sameFiles(w.dir("base"), w.dir("out")))
    }

    @Test func gcWithAConcurrentPushInAnotherProcessLosesNothing() throws {
        let w = try Workspace()
        let shape = FixtureModels.Shape.small
        try FixtureModels.writeBase(to: w.dir("base"), shape: shape, seed: 4)
        try FixtureModels.writeVariant(to: w.dir("ft"), shape: shape, seed: 4, changedLayers: [7], variantSeed: 9)
        let store = try Store.create(at: w.store)
        let registry = try Registry(store: store)
        _ = try registry.push(directory: w.dir("base").path, request: PushRequest(model: "base", actor: "t"))

        // A child pushes the fine-tune, which shares most chunks with base, and pauses before its commit.
        let gate = w.root.appendingPathComponent("go").path
        let child = Process()
        child.executableURL = Self.executable
        child.arguments = ["push", w.dir("ft").path, "--model", "ft", "--store", w.store, "--json"]
        var env = ProcessInfo.processInfo.environment
        env["CAIRN_FAULT"] = "wait-before-commit:\(gate)"
        child.environment = env
        let out = Pipe()
        child.standardOutput = out
        try child.run()
        for _ in 0..<3000 where !FileManager.default.fileExists(atPath: gate + ".staged") { usleep(10_000) }
        #expect(FileManager.default.fileExists(atPath: gate + ".staged"))

        // Meanwhile base is deleted and collected: the chunks the child relies on leave the index.
        _ = try registry.delete(try Reference(parsing: "base@1"), actor: "t")
        let report = try registry.collectGarbage(gracePeriod: 0)
        #expect(report.removedChunks > 0)
        _ = FileManager.default.createFile(atPath: gate, contents: nil)
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        child.waitUntilExit()
        #expect(child.terminationStatus == 0)
        let pushed = try JSONDecoder().decode(PushResult.self, from: stdout)
        // The commit found the shared chunks gone, re-read them from the files and stored them again.
        #expect(pushed.newBytes == pushed.logicalBytes)

        try registry.pull(try registry.resolve(try Reference(parsing: "ft@1")), to: w.dir("out").path)
        #expect(try sameFiles(w.dir("ft"), w.dir("out")))
        #expect(try store.verify(deep: true).isHealthy)
    }

    /// SIGTERM stops `cairn serve` only once the replies in flight have gone out whole: a large chunk
    /// fetch, read slowly through a small receive window, arrives complete.
    @Test func serveFinishesAReplyInFlightOnSIGTERM() throws {
        let w = try Workspace()
        try FixtureModels.writeBase(to: w.dir("base"), shape: .small, seed: 4)
        #expect(try Self.cairn(["init", "--store", w.store]).status == 0)
        #expect(try Self.cairn(["push", w.dir("base").path, "--model", "m", "--store", w.store]).status == 0)
        let registry = try Registry(store: try Store.open(at: w.store))
        let manifest = try registry.manifest(of: try registry.resolve(try Reference(parsing: "m")))
        let ids = Array(Set(manifest.files.flatMap { $0.chunks.map(\.id) }))

        let server = try ServerProcess(store: w.store, log: w.dir("serve.log"))
        let (port, token) = (server.port, server.token)

        // A small receive window: the reply cannot sit in the kernel's buffers.
        let connection = try #require(RawConnection(port: port, receiveWindow: 32 << 10))
        #expect(
            connection.send(RawConnection.request("POST", "/v1/chunks/fetch", token: token, body: ids.flatMap(\.bytes)))
        )
        connection.receive(upTo: 64 << 10)
        server.process.terminate()  // SIGTERM, the reply under way
        usleep(300_000)
        connection.receive()
        server.process.waitUntilExit()
        #expect(server.process.terminationStatus == 0)

        let reply = try #require(connection.reply)
        #expect(reply.length > 4 << 20)
        #expect(reply.body.count == reply.length)
        // And they are the chunks asked for, byte for byte as the store exports them.
        #expect(Array(reply.body) == (try registry.store.exportChunks(ids, maxBytes: 1 << 30)))
    }
}
