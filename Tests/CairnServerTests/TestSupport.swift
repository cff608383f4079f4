import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnServer
import CairnStore
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import Testing

/// A server on a fresh store, with one token per role (and a second approver).
final class ServerFixture: Sendable {
    let dir = TemporaryDirectory("cairn-server-test")
    let registry: Registry
    let server: CairnServer
    let reader: String
    let writer: String
    let approver: String
    let approver2: String
    let admin: String

    init(publicRead: Bool = false, publicMetrics: Bool = false, maxBatchBytes: Int = 33 << 20) throws {
        let store = try Store.create(at: dir.sub("store"))
        registry = try Registry(store: store)
        reader = try registry.createToken(user: "rita", role: .reader, actor: "ops").token
        writer = try registry.createToken(user: "will", role: .writer, actor: "ops").token
        approver = try registry.createToken(user: "ann", role: .approver, actor: "ops").token
        approver2 = try registry.createToken(user: "bob", role: .approver, actor: "ops").token
        admin = try registry.createToken(user: "ada", role: .admin, actor: "ops").token
        var logger = Logger(label: "cairn.test")
        logger.logLevel = .warning
        server = CairnServer(
            registry: registry,
            options: ServerOptions(
                host: "127.0.0.1",
                port: 0,
                publicRead: publicRead,
                publicMetrics: publicMetrics,
                maxBatchBytes: maxBatchBytes
            ),
            logger: logger
        )
    }

    var application: some ApplicationProtocol { buildApplication(server: server) }

    /// Writes a directory with the given files (relative path → bytes); returns its path.
    func writeTree(_ name: String, _ files: [String: [UInt8]]) throws -> String { try dir.writeTree(name, files) }

    /// Pushes a directory directly into the server's store (as `actor`).
    @discardableResult
    func pushLocally(_ directory: String, model: String, actor: String = "will") throws -> PushResult {
        try registry.push(directory: directory, request: PushRequest(model: model, actor: actor))
    }
}

func bearer(_ token: String?) -> HTTPFields {
    var headers = HTTPFields()
    if let token { headers[.authorization] = "Bearer \(token)" }
    return headers
}

func json(_ value: some Encodable) throws -> ByteBuffer {
    ByteBuffer(bytes: try JSONEncoder().encode(value))
}

func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) throws -> T {
    try JSONDecoder().decode(type, from: Data(response.body.readableBytesView))
}

/// The body decoded as `type`, nil if it is not.
func decoded<T: Decodable>(_ type: T.Type, _ response: TestResponse) -> T? {
    try? decode(type, response)
}

/// The `error.code` of an error response.
func errorCode(_ response: TestResponse) -> String? {
    (try? JSONDecoder().decode(ErrorBody.self, from: Data(response.body.readableBytesView)))?.error.code
}
