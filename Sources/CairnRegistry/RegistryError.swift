import CairnStore

/// An error from the registry: a `code` to act on and a one-line `message` for a person.
public struct RegistryError: Error, CustomStringConvertible, Sendable {
    public enum Code: String, Sendable {
        /// A model, version, file or reference does not exist.
        case notFound = "not_found"
        /// A name, reference, metric or option is malformed.
        case invalidArgument = "invalid_argument"
        /// The operation is not allowed in the current state (a refused transition, a failed gate).
        case refused
        /// Another writer changed something this operation relied on.
        case conflict
        /// Stored data is damaged.
        case corruption
        /// The operating system or the index failed.
        case io
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// Maps a store error to a registry error, keeping its message (with an optional context prefix).
    static func from(_ error: CairnStoreError, context: String? = nil) -> RegistryError {
        let code: Code =
            switch error.code {
            case .notFound: .notFound
            case .invalidArgument, .unsafePath: .invalidArgument
            case .corruption: .corruption
            case .io: .io
            case .alreadyExists, .conflict: .conflict
            }
        return RegistryError(code, context.map { "\($0): \(error.message)" } ?? error.message)
    }
}

/// Runs `body`, turning store errors into registry errors.
func storeCall<T>(context: String? = nil, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as CairnStoreError {
        throw RegistryError.from(error, context: context)
    }
}
