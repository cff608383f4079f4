/// Rules for model names and references.
public enum ModelName {
    /// Throws ``RegistryError`` with `.invalidArgument` unless `name` matches
    /// `[a-z0-9][a-z0-9._-]*`, optionally as `org/name`, at most 128 characters.
    public static func validate(_ name: String) throws {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        func valid(_ part: Substring) -> Bool {
            guard let first = part.utf8.first, isLowerAlnum(first) else { return false }
            return part.utf8.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-") }
        }
        guard name.utf8.count <= 128, (1...2).contains(parts.count), parts.allSatisfy(valid) else {
            throw RegistryError(
                .invalidArgument,
                "invalid model name \"\(name)\": use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, optionally as org/name")
        }
    }

    private static func isLowerAlnum(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }
}

/// A reference to a version: `MODEL` (the latest), `MODEL@N`, `MODEL@latest`, or `MODEL@NAME` where
/// NAME is a stage or an alias.
public struct Reference: Sendable, Equatable, CustomStringConvertible {
    public enum Selector: Sendable, Equatable {
        case latest
        case number(Int)
        /// A stage (`production`, `staging`, …) or an alias.
        case name(String)
    }

    public var model: String
    public var selector: Selector

    public init(model: String, selector: Selector) {
        self.model = model
        self.selector = selector
    }

    /// Parses `text`.
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` for a malformed reference.
    public init(parsing text: String) throws {
        let pieces = text.split(separator: "@", maxSplits: 1, omittingEmptySubsequences: false)
        model = String(pieces[0])
        try ModelName.validate(model)
        if pieces.count == 1 {
            selector = .latest
            return
        }
        let tail = String(pieces[1])
        if tail == "latest" {
            selector = .latest
        } else if let n = Int(tail) {
            guard n >= 1, n <= Int(UInt32.max) else {
                throw RegistryError(.invalidArgument, "invalid reference \"\(text)\": versions are numbered 1 to \(UInt32.max)")
            }
            selector = .number(n)
        } else if !tail.isEmpty, tail.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "@") && $0 != UInt8(ascii: "/") }) {
            selector = .name(tail)
        } else {
            throw RegistryError(.invalidArgument, "invalid reference \"\(text)\": expected MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS")
        }
    }

    public var description: String {
        switch selector {
        case .latest: model
        case .number(let n): "\(model)@\(n)"
        case .name(let name): "\(model)@\(name)"
        }
    }
}
