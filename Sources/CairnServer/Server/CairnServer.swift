import CairnAPI
import CairnRegistry
import CairnStore
import Logging

/// A registry served over HTTP: the registry, the threads for its blocking work, the state shared
/// by requests (open uploads, metrics) and the server's options. Build the application that runs
/// it with ``buildApplication(server:logger:onServerRunning:)``.
///
/// ```swift
/// let registry = try Registry(store: try Store.open(at: "/srv/cairn"))
/// let server = CairnServer(registry: registry, options: ServerOptions(port: 8080))
/// try await buildApplication(server: server).runService()  // until SIGTERM or SIGINT
/// ```
///
/// The server serves one store; open one server per store and process (LMDB's rule of one
/// environment per file and process).
public final class CairnServer: Sendable {
    /// The registry the server serves.
    public let registry: Registry
    /// How the server runs.
    public let options: ServerOptions
    /// Counters of requests and transfers, exported at `/metrics`.
    package let metrics = ServerMetrics()
    let logger: Logger
    /// Where store work runs: never on the threads that serve requests.
    let work: BlockingWork
    /// Open uploads of the chunk protocol.
    let uploads = UploadTable()
    /// Response bodies sent from pack files by the connections' ``FileBodyWriter``s.
    let fileBodies = FileBodies()
    private let statisticsCache = GenerationCache<RegistryStatistics>(capacity: 1)

    /// A server of `registry`, with its own threads for blocking store work (`options.threads`).
    /// Nothing listens until the application built with
    /// ``buildApplication(server:logger:onServerRunning:)`` runs.
    public init(registry: Registry, options: ServerOptions, logger: Logger = Logger(label: "cairn.server")) {
        self.registry = registry
        self.options = options
        self.logger = logger
        work = BlockingWork(threads: options.threads)
    }

    /// Runs blocking store work (LMDB transactions, audit walks, pack I/O, file reads) on the
    /// server's threads for it (``BlockingWork``), never on a thread that serves requests.
    func blocking<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await work.run(body)
    }

    /// The index generation (`Store.indexGeneration()`), -1 if it cannot be read: the
    /// key of the caches that answer from memory. It reads LMDB's meta pages (`mdb_env_info`), no
    /// transaction: cheap enough for the threads that serve requests.
    var generation: Int { (try? registry.store.indexGeneration()) ?? -1 }

    /// Store-wide figures for `/metrics` and `/v1/stats`, recomputed on the blocking threads only
    /// after a change.
    func statistics() async throws -> RegistryStatistics {
        let generation = self.generation
        if let hit = statisticsCache.get("stats", generation: generation) { return hit }
        let registry = self.registry
        let stats = try await blocking { try registry.statistics() }
        statisticsCache.put("stats", stats, generation: generation)
        return stats
    }
}
