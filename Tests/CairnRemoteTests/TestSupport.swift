import CairnFixtures
import CairnRegistry
import CairnServer
import CairnStore
import Hummingbird
import Logging

/// A server on a fresh store for the client to talk to (`application.test(.live)`), with a
/// reader's and a writer's token. (The server's own tests have a fixture with a token per role;
/// this one holds only what the client's tests use.)
final class ServerFixture: Sendable {
    let dir = TemporaryDirectory("cairn-remote-test")
    let registry: Registry
    let server: CairnServer
    let reader: String
    let writer: String

    init() throws {
        registry = try Registry(store: try Store.create(at: dir.sub("store")))
        reader = try registry.createToken(user: "rita", role: .reader, actor: "ops").token
        writer = try registry.createToken(user: "will", role: .writer, actor: "ops").token
        var logger = Logger(label: "cairn.test")
        logger.logLevel = .warning
        server = CairnServer(registry: registry, options: ServerOptions(host: "127.0.0.1", port: 0), logger: logger)
    }

    var application: some ApplicationProtocol { buildApplication(server: server) }

    /// Writes a directory with the given files (relative path → bytes); returns its path.
    func writeTree(_ name: String, _ files: [String: [UInt8]]) throws -> String { try dir.writeTree(name, files) }

    /// Pushes a directory directly into the server's store (as `actor`), not through a client.
    @discardableResult
    func pushLocally(_ directory: String, model: String, actor: String = "will") throws -> PushResult {
        try registry.push(directory: directory, request: PushRequest(model: model, actor: actor))
    }
}
