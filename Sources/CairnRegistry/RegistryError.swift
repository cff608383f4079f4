import CairnStore

/// An error from the registry: a ``ErrorCode`` to act on and a one-line `message` for a person.
///
/// Store failures reach callers as registry errors with the store's code and message.
public struct RegistryError: CodedError {
    /// What kind of failure this is.
    public let code: ErrorCode
    /// One line for a person, without an `error:` prefix.
    public let message: String

    /// An error of kind `code` saying `message`.
    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    /// A store error as a registry error: the same code and message (with an optional context prefix).
    static func from(_ error: CairnStoreError, context: String? = nil) -> RegistryError {
        RegistryError(error.code, context.map { "\($0): \(error.message)" } ?? error.message)
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
