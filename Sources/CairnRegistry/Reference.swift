/// A reference to a version: `MODEL` (the latest), `MODEL@N`, `MODEL@latest`, or `MODEL@NAME` where
/// NAME is a stage or an alias.
///
/// ```swift
/// let reference = try Reference(parsing: "llama-support@production")
/// let version = try registry.resolve(reference)
/// ```
public struct Reference: Sendable, Equatable, CustomStringConvertible {
    /// What a reference names within its model.
    public enum Selector: Sendable, Equatable {
        /// The highest live version (`MODEL`, `MODEL@latest`).
        case latest
        /// Version N (`MODEL@N`).
        case number(Int)
        /// A stage (`production`, `staging`, …) or an alias.
        case name(String)
    }

    /// The model's name.
    public var model: String
    /// Which version of the model.
    public var selector: Selector

    /// The reference to `selector` of `model` (not validated: ``Registry/resolve(_:)`` checks it).
    public init(model: String, selector: Selector) {
        self.model = model
        self.selector = selector
    }

    /// Parses `text`.
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` for a malformed reference (a bad model
    ///   name, a version number outside 1…2³²−1, a name with spaces, `@` or `/`).
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
                throw RegistryError(
                    .invalidArgument,
                    "invalid reference \"\(text)\": versions are numbered 1 to \(UInt32.max)"
                )
            }
            selector = .number(n)
        } else if !tail.isEmpty,
            tail.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "@") && $0 != UInt8(ascii: "/") })
        {
            selector = .name(tail)
        } else {
            throw RegistryError(
                .invalidArgument,
                "invalid reference \"\(text)\": expected MODEL, MODEL@N, MODEL@STAGE or MODEL@ALIAS"
            )
        }
    }

    /// The reference as text: `MODEL`, `MODEL@N` or `MODEL@NAME`.
    public var description: String {
        switch selector {
        case .latest: model
        case .number(let n): Self.text(model: model, version: n)
        case .name(let name): Self.text(model: model, name: name)
        }
    }

    /// `model@N`: how records, messages, lineage and the audit log name a version.
    static func text(model: String, version: Int) -> String { "\(model)@\(version)" }

    /// `model@NAME`: an alias or a stage of `model`.
    static func text(model: String, name: String) -> String { "\(model)@\(name)" }
}
