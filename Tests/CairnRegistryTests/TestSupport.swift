import CairnFixtures
import CairnRegistry
import CairnStore
import Foundation
import Synchronization
import Testing

/// A unique temporary directory, removed when the value is released.
final class TemporaryDirectory {
    let path: String

    init(_ label: String = "cairn-registry-test") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }
}

/// A clock the test moves by hand, so audit times and `--at` queries are exact.
final class ManualClock: Sendable {
    private let current: Mutex<Date>

    init(_ start: String = "2026-03-02T09:00:00Z") {
        current = Mutex(ISO8601DateFormatter().date(from: start)!)
    }

    var now: Date { current.withLock { $0 } }

    func advance(_ seconds: TimeInterval) { current.withLock { $0 += seconds } }

    func advance(hours: Double) { advance(hours * 3600) }
}

/// A registry on a fresh store (small chunks and packs) with a manual clock.
struct Fixture {
    let dir = TemporaryDirectory()
    let clock = ManualClock()
    let registry: Registry
    var store: Store { registry.store }

    init() throws {
        let config = StoreConfig(
            chunker: ChunkerParameters(min: 2 << 10, avg: 8 << 10, max: 32 << 10),
            packSize: 1 << 20
        )
        let store = try Store.create(at: dir.sub("store"), config: config)
        let clock = self.clock
        registry = try Registry(store: store, clock: { clock.now })
    }

    /// Writes a small model directory: `weights.bin` of `size` random bytes from `seed`, plus a config.
    func tree(_ name: String, size: Int = 64 << 10, seed: UInt64) throws -> String {
        let path = dir.sub("trees/\(name)")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Data(FixtureData.bytes(count: size, seed: seed)).write(to: URL(fileURLWithPath: path + "/weights.bin"))
        try Data("{\"name\":\"\(name)\"}".utf8).write(to: URL(fileURLWithPath: path + "/config.json"))
        return path
    }

    /// Pushes a fresh small tree as the next version of `model`; advances the clock a minute first.
    @discardableResult
    func push(
        _ model: String,
        by actor: String = "alice",
        seed: UInt64? = nil,
        size: Int = 64 << 10,
        metrics: [String: Double] = [:],
        tags: [String: String] = [:],
        parents: [String] = [],
        datasets: [String] = [],
        stage: Stage? = nil,
        message: String = ""
    ) throws -> PushResult {
        clock.advance(60)
        var request = PushRequest(model: model, actor: actor)
        request.metrics = metrics
        request.tags = tags
        request.parents = parents
        request.datasets = datasets
        request.stage = stage
        request.message = message
        let seed = seed ?? UInt64.random(in: 1...UInt64.max)
        return try registry.push(
            directory: try tree("\(model.replacingOccurrences(of: "/", with: "_"))-\(seed)", size: size, seed: seed),
            request: request
        )
    }

    func ref(_ text: String) throws -> Reference { try Reference(parsing: text) }

    func version(_ text: String) throws -> VersionRecord { try registry.resolve(try ref(text)) }

    func stage(_ text: String) throws -> Stage { try version(text).stage }

    func auditCount() throws -> Int { try registry.auditLog().count }

    /// Every registry table's keys and values, to prove a refused command changed nothing.
    func snapshot() throws -> [String: [[UInt8]]] {
        var out: [String: [[UInt8]]] = [:]
        for name in ["models", "versions", "aliases", "policies", "audit", "audit-by-model", "audit-head"] {
            let table = try store.table(name)
            out[name] = try store.readMetadata { txn in try txn.scan(table).flatMap { [$0.key, $0.value] } }
        }
        return out
    }

    /// Runs `body`, expects a ``RegistryError`` with `code` whose message contains `message`, and
    /// checks that no registry record (versions, models, aliases, policies, audit log) changed.
    @discardableResult
    func expectRefusal(
        _ code: ErrorCode = .refused,
        _ message: String? = nil,
        sourceLocation: SourceLocation = #_sourceLocation,
        _ body: () throws -> Void
    ) throws -> RegistryError? {
        let before = try snapshot()
        let auditBefore = try auditCount()
        clock.advance(1)
        let error = #expect(throws: RegistryError.self, sourceLocation: sourceLocation) { try body() }
        #expect(
            error?.code == code,
            "code: \(String(describing: error?.code)) – \(error?.message ?? "")",
            sourceLocation: sourceLocation
        )
        if let message {
            #expect(
                error?.message.contains(message) == true,
                "message: \(error?.message ?? "none")",
                sourceLocation: sourceLocation
            )
        }
        #expect(try auditCount() == auditBefore, "the audit log grew", sourceLocation: sourceLocation)
        #expect(try snapshot() == before, "records changed", sourceLocation: sourceLocation)
        return error
    }

    /// Sets a policy.
    func policy(
        _ model: String,
        approvals: [Stage: Int] = [:],
        require: [String] = [],
        by actor: String = "lead"
    ) throws {
        try registry.setPolicy(
            model: model,
            Policy(approvals: approvals, requirements: try require.map { try Policy.Requirement(parsing: $0) }),
            actor: actor
        )
    }
}
