import Digest
import Glibc

/// An error from the store: a ``ErrorCode`` (what a caller can act on) and a one-line `message`
/// for a person.
public struct CairnStoreError: CodedError {
    /// What kind of failure this is.
    public let code: ErrorCode
    /// One line for a person.
    public let message: String
    /// For `.corruption` found in a chunk (stored, or in a bundle being verified): that chunk.
    public internal(set) var damagedChunk: SHA256Digest?
    /// The chunk that did not verify came from a fetcher's local source, which was dropped
    /// (``ChunkFetcher/verifying(_:_:)``): the read can start again and fetch it instead.
    package internal(set) var droppedSource = false

    /// An error of kind `code` described by `message`.
    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The same error with `context` put in front of its message ("model m@3: …").
    public func prefixed(_ context: String) -> CairnStoreError {
        var error = CairnStoreError(code, "\(context): \(message)")
        error.damagedChunk = damagedChunk
        error.droppedSource = droppedSource
        return error
    }

    static func io(_ operation: String, path: String, errno code: Int32) -> CairnStoreError {
        if code == ENOSPC || code == EDQUOT {
            return CairnStoreError(.io, "the disk is full: \(operation) \(path): \(String(cString: strerror(code)))")
        }
        return CairnStoreError(.io, "\(operation) \(path): \(String(cString: strerror(code)))")
    }
}
