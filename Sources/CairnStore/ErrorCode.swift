/// The one vocabulary of Cairn's errors: what kind of failure happened, in terms a caller can act
/// on. Every error Cairn throws carries one (``CodedError``); the server sends its `rawValue` as
/// `{"error":{"code":…}}`, the client reads it back with `ErrorCode(rawValue:)`, and the command
/// line turns it into an exit code. The HTTP status and the exit code of each code are properties
/// of this enum, defined once in CairnAPI (`httpStatus`, `exitCode`).
public enum ErrorCode: String, Sendable, CaseIterable, Codable {
    /// A named thing (store, model, version, alias, file, chunk, manifest) does not exist.
    case notFound = "not_found"
    /// The caller asked for something malformed or invalid: a name, reference, option value,
    /// range, body, or an unsafe path (one escaping its tree, a symlink, a special file).
    case invalidArgument = "invalid_argument"
    /// The operation is not allowed in the current state (a refused transition, a failed gate):
    /// nothing was changed.
    case refused
    /// Something changed concurrently that this operation relied on, or already exists.
    case conflict
    /// Stored bytes do not match their SHA-256, or a structure on disk is malformed.
    case corruption
    /// The operating system or the index failed.
    case io
    /// No credentials, or unknown or revoked ones.
    case unauthenticated
    /// The credentials do not allow the operation.
    case forbidden
    /// A request body over its limit.
    case tooLarge = "too_large"
    /// A byte range outside the file, or malformed.
    case rangeNotSatisfiable = "range_not_satisfiable"
    /// A manifest references chunks that are not stored.
    case missingChunks = "missing_chunks"
    /// An uploaded chunk does not hash to its id.
    case chunkMismatch = "chunk_mismatch"
    /// A manifest does not hash to the id given with it.
    case manifestMismatch = "manifest_mismatch"
    /// The server could not be reached, or the connection broke before its reply ended.
    case unreachable
    /// The server's reply could not be understood.
    case badResponse = "bad_response"
    /// A failure with no more specific code (a bug, an unexpected state).
    case `internal`
}

/// An error that carries a code of the one vocabulary and a one-line message for a person.
public protocol CodedError: Error, CustomStringConvertible, Sendable {
    /// What kind of failure this is.
    var code: ErrorCode { get }
    /// One line for a person, without an `error:` prefix.
    var message: String { get }
}

extension CodedError {
    /// The ``message``.
    public var description: String { message }
}
