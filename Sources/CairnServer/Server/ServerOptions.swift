/// How a server runs: where it listens, what anonymous clients may do, and its limits.
///
/// ```swift
/// let options = ServerOptions(host: "0.0.0.0", port: 8080, publicRead: true)
/// ```
public struct ServerOptions: Sendable {
    /// The address to listen on: a host name or an IP address (`0.0.0.0` or `::` for every interface).
    public var host: String
    /// The port to listen on; 0 lets the system pick a free one (the channel that
    /// ``buildApplication(server:logger:onServerRunning:)`` hands to `onServerRunning` tells which).
    public var port: Int
    /// Allow reads without a token (writes always need one). `/metrics` is not a read of the
    /// registry: it needs ``publicMetrics``.
    public var publicRead: Bool
    /// Serve `/metrics` without a token (it says how busy the server is and what the store holds;
    /// by default it needs a token of any role).
    public var publicMetrics: Bool
    /// Largest chunk bundle accepted by `POST /v1/chunks` and returned by `POST /v1/chunks/fetch`.
    public var maxBatchBytes: Int
    /// Largest number of ids in one chunk id list.
    public var maxBatchIDs: Int
    /// Largest JSON body (a version's manifest travels in one).
    public var maxJSONBytes: Int
    /// Threads for blocking store work: every index transaction, the audit log's walk, pack and
    /// file I/O (at least 2).
    public var threads: Int

    /// Options with `cairn serve`'s defaults: loopback port 8080, tokens needed for reads, 33 MiB
    /// chunk bundles, 65,536 ids per list, 64 MiB JSON bodies, 8 threads for store work.
    public init(
        host: String = "127.0.0.1",
        port: Int = 8080,
        publicRead: Bool = false,
        publicMetrics: Bool = false,
        maxBatchBytes: Int = 33 << 20,
        maxBatchIDs: Int = 65536,
        maxJSONBytes: Int = 64 << 20,
        threads: Int = 8
    ) {
        self.host = host
        self.port = port
        self.publicRead = publicRead
        self.publicMetrics = publicMetrics
        self.maxBatchBytes = maxBatchBytes
        self.maxBatchIDs = maxBatchIDs
        self.maxJSONBytes = maxJSONBytes
        self.threads = threads
    }
}
