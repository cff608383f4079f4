import CairnStore
import Digest

/// A failed request to a server: the reply's code of the one vocabulary (``ErrorCode``, read from
/// its `{"error":{"code":…}}` body, else from its status), the server's message, and for
/// ``ErrorCode/missingChunks`` the chunks the server lacks.
public struct RemoteError: CodedError {
    /// The HTTP status, 0 when the server could not be reached.
    public let status: Int
    public let code: ErrorCode
    public let message: String
    /// For ``ErrorCode/missingChunks``: the chunks the server lacks.
    public let missing: [SHA256Digest]

    public init(status: Int, code: ErrorCode, message: String, missing: [SHA256Digest] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.missing = missing
    }
}
