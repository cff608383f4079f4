import CairnRegistry
import Foundation
import Hummingbird
import NIOCore

/// The request context of the server's routes: Hummingbird's core storage, the identity the bearer
/// token established (nil for an anonymous read on a `--public-read` server) and the connection.
struct CairnRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    /// Who is asking, set by ``AuthMiddleware``.
    var identity: TokenRecord?
    /// The connection the request came on.
    let channel: any Channel

    init(source: Source) {
        coreContext = .init(source: source)
        identity = nil
        channel = source.channel
    }

    /// Bodies are collected with each route's own limit.
    var maxUploadSize: Int { 64 << 20 }
}

extension CairnRequestContext {
    /// The acting user if the request's identity has at least `role`. Anonymous requests
    /// (public-read servers) may only read, as "anonymous".
    ///
    /// - Throws: ``APIError`` with `.unauthenticated` (401) for an anonymous request that needs more
    ///   than reading, `.forbidden` (403) for a token whose role is below `role`.
    @discardableResult
    func require(_ role: Role, _ what: @autoclosure () -> String) throws -> String {
        guard let identity else {
            if role == .reader { return "anonymous" }
            throw APIError.unauthenticated("\(what()) needs a token with role \(role.rawValue) or higher")
        }
        guard identity.role >= role else {
            throw APIError.forbidden(
                "\(identity.user) (\(identity.role.rawValue)) cannot \(what()): it needs role \(role.rawValue)"
            )
        }
        return identity.user
    }

    /// A path parameter, percent-decoded (a model `org/name` travels as `org%2Fname`).
    ///
    /// - Throws: ``APIError`` with `.invalidArgument` when the parameter is missing or its
    ///   percent-encoding is malformed.
    func parameter(_ name: String) throws -> String {
        guard let raw = parameters.get(name) else { throw APIError.badRequest("missing path parameter \(name)") }
        if !raw.utf8.contains(UInt8(ascii: "%")) { return raw }  // most names: nothing to decode
        guard let decoded = raw.removingPercentEncoding else {
            throw APIError.badRequest("malformed percent-encoding in \(raw)")
        }
        return decoded
    }
}
