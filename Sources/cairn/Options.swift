import ArgumentParser
import CairnAPI
import CairnRegistry
import CairnRemote
import CairnStore
import Foundation

/// Options every command takes: where the store is, JSON output, the acting user.
struct GlobalOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Store directory (default: $CAIRN_STORE, else $XDG_DATA_HOME/cairn/store, else ~/.local/share/cairn/store).",
            valueName: "path"
        )
    )
    var store: String?

    @Flag(name: .long, help: "Print machine-readable JSON (snake_case, stable field names).")
    var json = false

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Acting user recorded with changes (default: $CAIRN_USER, else the OS user).",
            valueName: "name"
        )
    )
    var user: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "A cairn server to use instead of a local store (default: $CAIRN_REMOTE), e.g. http://host:8080.",
            valueName: "url"
        )
    )
    var remote: String?

    @Option(name: .long, help: ArgumentHelp("Bearer token for --remote (default: $CAIRN_TOKEN).", valueName: "token"))
    var token: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Local chunk cache for pulls from --remote (default: $XDG_CACHE_HOME/cairn/remote/HOST_PORT, else ~/.cache/cairn/remote/HOST_PORT); on the pulled files' file system it keeps them as hard links, not a copy.",
            valueName: "dir"
        )
    )
    var cache: String?

    /// The server in effect: --remote, else $CAIRN_REMOTE (unless --store is given).
    var remoteURL: String? {
        if let remote, !remote.isEmpty { return remote }
        if store != nil { return nil }
        let env = ProcessInfo.processInfo.environment
        if let url = env["CAIRN_REMOTE"], !url.isEmpty { return url }
        return nil
    }

    /// The bearer token in effect: --token, else $CAIRN_TOKEN.
    var bearerToken: String? {
        if let token, !token.isEmpty { return token }
        let env = ProcessInfo.processInfo.environment
        if let token = env["CAIRN_TOKEN"], !token.isEmpty { return token }
        return nil
    }

    /// The store path in effect.
    var storePath: String {
        if let store { return store }
        let env = ProcessInfo.processInfo.environment
        if let path = env["CAIRN_STORE"], !path.isEmpty { return path }
        return Self.defaultStorePath
    }

    static var defaultStorePath: String {
        let env = ProcessInfo.processInfo.environment
        if let data = env["XDG_DATA_HOME"], !data.isEmpty { return data + "/cairn/store" }
        let home = env["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.local/share/cairn/store"
    }

    /// The acting user: --user, else $CAIRN_USER, else the OS user.
    var actor: String {
        if let user, !user.isEmpty { return user }
        let env = ProcessInfo.processInfo.environment
        if let name = env["CAIRN_USER"], !name.isEmpty { return name }
        if let name = env["USER"], !name.isEmpty { return name }
        return NSUserName()
    }

    /// The registry the command works on: the server at --remote, else the local store.
    func openRegistry() throws -> any RegistryService {
        if let url = remoteURL { return try RemoteRegistry(url: url, token: bearerToken, cacheDirectory: cache) }
        return try openLocalRegistry()
    }

    /// The local store's registry (commands that only work on a local store).
    func openLocalRegistry() throws -> Registry {
        let store: Store
        do {
            store = try Store.open(at: storePath)
        } catch let error as CairnStoreError where error.code == .notFound {
            throw CairnStoreError(.notFound, error.message + " (run `cairn init` first, or give --store PATH)")
        }
        return try Registry(store: store)
    }
}

/// A bad argument or option value that a command's own checks found (its `validate()`, or while
/// running): one `error:` line, exit code 2.
struct BadArgument: CodedError {
    let message: String

    init(_ message: String) { self.message = message }

    var code: ErrorCode { .invalidArgument }
}

func printError(_ message: String) {
    FileHandle.standardError.write(Data("error: \(Output.escaped(message))\n".utf8))
}

/// Parses repeatable `K=V` options.
///
/// - Throws: ``BadArgument`` for an item without `=` or with an empty key, and for a key given
///   twice (which value was meant is not for cairn to guess).
func parsePairs(_ items: [String], what: String) throws -> [String: String] {
    var out: [String: String] = [:]
    for item in items {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw BadArgument("--\(what) expects KEY=VALUE, got \"\(item)\"")
        }
        let key = String(item[..<eq])
        guard out.updateValue(String(item[item.index(after: eq)...]), forKey: key) == nil else {
            throw BadArgument("--\(what) \(key) is given more than once")
        }
    }
    return out
}
