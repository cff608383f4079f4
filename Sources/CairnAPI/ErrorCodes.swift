import CairnStore

// How each code of the one error vocabulary travels: the HTTP status the server answers with, the
// body that carries it, and the exit code the command line ends with. docs/http-api.md and
// docs/cli.md list the same.

extension ErrorCode {
    /// The status of a server reply that carries this code.
    public var httpStatus: Int {
        switch self {
        case .invalidArgument: 400
        case .unauthenticated: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict, .missingChunks: 409
        case .tooLarge: 413
        case .rangeNotSatisfiable: 416
        case .refused, .chunkMismatch, .manifestMismatch: 422
        case .corruption, .io, .internal: 500
        case .badResponse: 502
        case .unreachable: 503
        }
    }

    /// The exit code of a command that failed with this code (docs/cli.md): 1 error, 2 bad
    /// argument, 3 not found, 4 corruption found, 5 refused, 6 not authorized.
    public var exitCode: Int32 {
        switch self {
        case .invalidArgument, .tooLarge, .rangeNotSatisfiable: 2
        case .notFound: 3
        case .corruption: 4
        case .refused, .chunkMismatch, .manifestMismatch: 5
        case .unauthenticated, .forbidden: 6
        case .conflict, .missingChunks, .io, .unreachable, .badResponse, .internal: 1
        }
    }

    /// The code a server reply carries: its `code` field when it is one of the vocabulary, else
    /// the one its status stands for.
    public init(code: String?, status: Int) {
        if let code, let known = ErrorCode(rawValue: code) {
            self = known
            return
        }
        self =
            switch status {
            case 400, 405, 411, 414, 431: .invalidArgument
            case 401: .unauthenticated
            case 403: .forbidden
            case 404: .notFound
            case 409: .conflict
            case 413: .tooLarge
            case 416: .rangeNotSatisfiable
            case 422: .refused
            case 502: .badResponse
            case 503: .unreachable
            default: .internal
            }
    }
}

/// The error body of every failed request: `{"error":{"code":…,"message":…}}`, plus the ids of
/// missing chunks for `missing_chunks`.
public struct ErrorBody: Codable, Sendable {
    /// What went wrong.
    public struct Detail: Codable, Sendable {
        /// The ``ErrorCode``'s raw value (`not_found`, …).
        public var code: String
        /// One line for a person.
        public var message: String
        /// For `missing_chunks`: the hex ids of the chunks the server lacks.
        public var missing: [String]?

        /// The detail of an error of `code`.
        public init(code: String, message: String, missing: [String]? = nil) {
            self.code = code
            self.message = message
            self.missing = missing
        }
    }

    /// What went wrong.
    public var error: Detail

    /// The body of an error of `code` saying `message`.
    public init(code: String, message: String, missing: [String]? = nil) {
        error = Detail(code: code, message: message, missing: missing)
    }
}
