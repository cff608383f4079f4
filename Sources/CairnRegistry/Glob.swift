/// Glob patterns over `/`-separated paths (and tensor names), as in .gitignore:
///
/// - `*` matches any run of characters except `/`; `?` one character except `/`;
/// - `**` matches any run of characters including `/` (`**/x`, `a/**`, `a/**/b`);
/// - a pattern without `/` also matches the last component of a path (`*.safetensors` matches
///   `shards/a.safetensors`); a pattern with `/` matches the whole path.
public struct Glob: Sendable, Equatable, CustomStringConvertible {
    /// The pattern as given.
    public let pattern: String
    private let bytes: [UInt8]
    private let anchored: Bool

    /// The glob `pattern` (a leading `/` anchors it at the top: `/a` is `a`).
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` for an empty pattern.
    public init(_ pattern: String) throws {
        guard !pattern.isEmpty else { throw RegistryError(.invalidArgument, "empty glob pattern") }
        self.pattern = pattern
        var b = Array(pattern.utf8)
        if b.first == UInt8(ascii: "/") { b.removeFirst() }  // "/a" means "a" at the top
        bytes = b
        anchored = pattern.contains("/")
    }

    /// The ``pattern``.
    public var description: String { pattern }

    /// Whether `path` matches.
    public func matches(_ path: String) -> Bool {
        let p = Array(path.utf8)
        if Self.match(bytes[...], p[...]) { return true }
        if !anchored, let slash = p.lastIndex(of: UInt8(ascii: "/")) {
            return Self.match(bytes[...], p[(slash + 1)...])
        }
        return false
    }

    private static func match(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
        var p = pattern
        var t = text
        while let c = p.first {
            if c == UInt8(ascii: "*") {
                let double = p.count >= 2 && p[p.startIndex + 1] == UInt8(ascii: "*")
                let rest = p.dropFirst(double ? 2 : 1)
                if double, rest.first == UInt8(ascii: "/") {
                    // "**/" also matches nothing at all ("a/**/b" matches "a/b").
                    if match(rest.dropFirst(), t) { return true }
                }
                var i = t.startIndex
                while true {
                    if match(rest, t[i...]) { return true }
                    if i == t.endIndex { return false }
                    if !double && t[i] == UInt8(ascii: "/") { return false }
                    i += 1
                }
            }
            guard let d = t.first else { return false }
            if c == UInt8(ascii: "?") {
                if d == UInt8(ascii: "/") { return false }
            } else if c != d {
                return false
            }
            p = p.dropFirst()
            t = t.dropFirst()
        }
        return t.isEmpty
    }
}

/// Which files of a version to take: all that match an include pattern (all, when there is none)
/// and no exclude pattern.
public struct FileSelection: Sendable, Equatable, CustomStringConvertible {
    /// Patterns a file must match one of (any file when empty).
    public var include: [Glob]
    /// Patterns a file must match none of.
    public var exclude: [Glob]

    /// The selection of `include` (`--include`) less `exclude` (`--exclude`).
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` for an empty pattern.
    public init(include: [String] = [], exclude: [String] = []) throws {
        self.include = try include.map(Glob.init)
        self.exclude = try exclude.map(Glob.init)
    }

    /// Whether there is no pattern at all (every file is selected).
    public var selectsEverything: Bool { include.isEmpty && exclude.isEmpty }

    /// The patterns, for messages: `include *.safetensors, config.json; exclude *.bin`.
    public var description: String {
        var parts: [String] = []
        if !include.isEmpty { parts.append("include " + include.map(\.pattern).joined(separator: ", ")) }
        if !exclude.isEmpty { parts.append("exclude " + exclude.map(\.pattern).joined(separator: ", ")) }
        return parts.isEmpty ? "everything" : parts.joined(separator: "; ")
    }

    /// Whether the file at `path` is selected.
    public func contains(_ path: String) -> Bool {
        (include.isEmpty || include.contains { $0.matches(path) }) && !exclude.contains { $0.matches(path) }
    }
}
