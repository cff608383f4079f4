import CairnStore
import Digest

/// A failed request to a server: the reply's code of the one vocabulary (``ErrorCode``, read from
/// its `{"error":{"code":…}}` body, else from its status), the server's message, and for
/// ``ErrorCode/missingChunks`` the chunks the server lacks.
///
/// A call that got no reply at all (the server refused the connection, its host is unknown, it did
/// not answer in time, the connection broke) has the code ``ErrorCode/unreachable`` and status 0;
/// a reply that cannot be read has ``ErrorCode/badResponse``.
public struct RemoteError: CodedError {
    /// The HTTP status, 0 when the server could not be reached.
    public let status: Int
    /// What kind of failure this is: the code the server answered with, else the one its status
    /// stands for; `.unreachable` or `.badResponse` for failures on the way.
    public let code: ErrorCode
    /// One line for a person: the server's message, or what went wrong on the way.
    public let message: String
    /// For ``ErrorCode/missingChunks``: the chunks the server lacks.
    public let missing: [SHA256Digest]

    /// An error with the given parts (`missing` only for ``ErrorCode/missingChunks``).
    public init(status: Int, code: ErrorCode, message: String, missing: [SHA256Digest] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.missing = missing
    }

    /// A call that got no reply because `server` could not be reached; `reason` says why
    /// ("connection refused", "unknown host example.org").
    static func unreachable(_ server: String, _ reason: String) -> RemoteError {
        RemoteError(status: 0, code: .unreachable, message: "cannot reach \(server): \(reason)")
    }

    /// A call whose reply did not come within `limit` ("5 minutes", "300 s").
    static func timedOut(_ server: String, after limit: String) -> RemoteError {
        RemoteError(status: 0, code: .unreachable, message: "\(server) did not answer within \(limit)")
    }
}
