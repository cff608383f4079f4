/// The rule for model names.
public enum ModelName {
    /// Checks that `name` is a valid model name: `[a-z0-9][a-z0-9._-]*`, optionally as `org/name`, at
    /// most 128 characters.
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` naming the rule when it is not.
    public static func validate(_ name: String) throws {
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        guard name.utf8.count <= 128, (1...2).contains(parts.count), parts.allSatisfy({ Names.isName($0.utf8) }) else {
            throw RegistryError(
                .invalidArgument,
                "invalid model name \"\(name)\": use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit, optionally as org/name"
            )
        }
    }
}

/// The rules for the other names the registry records: aliases, metadata keys, acting users.
enum Names {
    /// Whether `bytes` is `[a-z0-9][a-z0-9._-]*`: a model name (or each half of `org/name`) or an alias.
    static func isName(_ bytes: some Collection<UInt8>) -> Bool {
        guard let first = bytes.first, isLowerAlphanumeric(first) else { return false }
        return bytes.allSatisfy {
            isLowerAlphanumeric($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: "-")
        }
    }

    private static func isLowerAlphanumeric(_ c: UInt8) -> Bool {
        (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
    }

    /// Throws unless `alias` is `[a-z0-9][a-z0-9._-]*` (at most 64 characters), not a number, not a
    /// stage name and not `latest`.
    static func validateAlias(_ alias: String) throws {
        guard alias.utf8.count <= 64, isName(alias.utf8) else {
            throw RegistryError(
                .invalidArgument,
                "invalid alias \"\(alias)\": use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"
            )
        }
        if Int(alias) != nil || alias == "latest" || Stage(rawValue: alias) != nil {
            throw RegistryError(
                .invalidArgument,
                "invalid alias \"\(alias)\": numbers, stage names and \"latest\" already have a meaning in references"
            )
        }
    }

    /// Throws unless `key` (a metric, param, tag or evidence name; `kind` says which) is 1 to 128
    /// printable ASCII characters without spaces, `=`, `<` or `>`.
    static func validateKey(_ key: String, kind: String) throws {
        guard !key.isEmpty, key.utf8.count <= 128,
            key.utf8.allSatisfy({
                $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "=") && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">")
            })
        else {
            throw RegistryError(
                .invalidArgument,
                "invalid \(kind) name \"\(key)\": use printable characters without spaces, '=', '<' or '>'"
            )
        }
    }

    /// Throws unless `actor` (the user a change is recorded for) is a non-empty name of at most 256
    /// bytes on one line.
    static func validateActor(_ actor: String) throws {
        guard !actor.isEmpty, actor.utf8.count <= 256, !actor.contains(where: { $0.isNewline }) else {
            throw RegistryError(.invalidArgument, "the acting user must be a non-empty name on one line")
        }
    }
}
