import Digest
import Glibc

/// An error from the store. `code` says what kind of failure it is (what a caller can act on);
/// `message` is one line for a person.
public struct CairnStoreError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A named thing (store, chunk, manifest, file) does not exist.
        case notFound
        /// The caller asked for something invalid (a bad range, a bad name, a bad config).
        case invalidArgument
        /// A path escapes its tree, is a symlink or a special file.
        case unsafePath
        /// Stored bytes do not match their SHA-256, or a structure on disk is malformed.
        case corruption
        /// The operating system refused an I/O operation.
        case io
        /// Something already exists (e.g. `init` on an existing store).
        case alreadyExists
        /// Another process changed the store in a way that conflicts with this operation.
        case conflict
    }

    public let code: Code
    public let message: String
    /// For `.corruption` found in a chunk (stored, or in a bundle being verified): that chunk.
    public internal(set) var damagedChunk: SHA256Digest?
    /// The chunk that did not verify came from a fetcher's local source, which was dropped
    /// (``ChunkFetcher/verifying(_:_:)``): the read can start again and fetch it instead.
    public internal(set) var droppedSource = false

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// The same error with `context` put in front of its message ("model m@3: …").
    public func prefixed(_ context: String) -> CairnStoreError {
        var error = CairnStoreError(code, "\(context): \(message)")
        error.damagedChunk = damagedChunk
        error.droppedSource = droppedSource
        return error
    }

    static func io(_ operation: String, path: String, errno code: Int32) -> CairnStoreError {
        CairnStoreError(.io, "\(operation) \(path): \(String(cString: strerror(code)))")
    }
}
