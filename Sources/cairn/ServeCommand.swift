import ArgumentParser
import CairnAPI
import CairnFixtures
import CairnRegistry
import CairnServer
import CairnStore
import Foundation
import Glibc
import Logging

extension Cairn {
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Serve the store over HTTP: the registry's API under /v1, chunk transfers, files with Range.",
            discussion: """
                Clients use it with --remote URL and --token (cairn token create --user NAME --role reader|writer|approver|admin, run against the same store). Without a token a request is refused (401) unless the server was started with --public-read, which allows reads only. When the store has no token yet, the server creates an admin token for the OS user and prints it once. /healthz answers ok; /metrics gives Prometheus metrics. SIGTERM or SIGINT stops accepting connections and finishes the requests in flight. docs/http-api.md describes the API.

                --demo creates the store if needed and, when it has no models, a small demo model (demo-llama: a base in production and a fine-tune in staging, aliases champion and challenger); it also allows public reads.
                """
        )

        @OptionGroup var global: GlobalOptions
        @Option(help: "Address to listen on.") var host = "127.0.0.1"
        @Option(help: "Port to listen on (0: any free port).") var port = 8080
        @Flag(help: "Allow reads without a token (writes always need one; /metrics needs --public-metrics).")
        var publicRead = false
        @Flag(help: "Serve /metrics without a token (by default it needs a token of any role).") var publicMetrics =
            false
        @Flag(help: "Create the store and a small demo model when they do not exist; implies --public-read.") var demo =
            false
        @Option(help: "Log level.") var logLevel = Choice<Logger.Level>(.info)
        @Option(help: "Threads for blocking store work.") var threads = 8

        func validate() throws {
            _ = try logLevel.value(for: "--log-level")
            guard (0...65535).contains(port) else { throw BadArgument("--port must be between 0 and 65535") }
        }

        func run() async throws {
            // Memory that finished requests free stays with the process for the next ones: glibc
            // would give it back to the kernel and fault it in again page by page (a third of a
            // push's page faults on the server came from 1 MiB socket read buffers).
            keepFreedMemory()
            var server: CairnServer?
            var banner: [String] = []
            var example = "MODEL"
            let level = try logLevel.value(for: "--log-level")
            let path = global.storePath
            let store: Store
            if FileManager.default.fileExists(atPath: path + "/config.json") {
                store = try Store.open(at: path)
            } else if demo {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
                store = try Store.create(at: path)
                banner.append("created store \(path)")
            } else {
                throw CairnStoreError(
                    .notFound,
                    "no cairn store at \(path) (run `cairn init`, or `cairn serve --demo`)"
                )
            }
            let registry = try Registry(store: store)
            if demo, try registry.listModels().isEmpty {
                try Self.createDemo(registry, actor: global.actor)
                banner.append("created demo model demo-llama (v1 in production, v2 in staging)")
            }
            if let first = try registry.listModels().first { example = PathSegment.encode(first.model) }
            if try registry.listTokens().isEmpty {
                let token = try registry.createToken(user: global.actor, role: .admin, actor: global.actor)
                banner.append(
                    "created admin token for \(global.actor) (shown once; `cairn token create` makes more):"
                )
                banner.append("  export CAIRN_TOKEN=\(token.token)")
            }
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
            var logger = Logger(label: "cairn.server")
            logger.logLevel = level
            server = CairnServer(
                registry: registry,
                options: ServerOptions(
                    host: host,
                    port: port,
                    publicRead: publicRead || demo,
                    publicMetrics: publicMetrics,
                    threads: threads
                ),
                logger: logger
            )
            guard let server else { return }
            let lines = banner
            let model = example
            let publicReads = server.options.publicRead
            let storePath = server.registry.store.root
            let app = buildApplication(server: server) { channel in
                let port = channel.localAddress?.port ?? 0
                let host = server.options.host.contains(":") ? "[\(server.options.host)]" : server.options.host
                let url = "http://\(host):\(port)"
                var out = lines
                out.append(
                    "cairn serve: listening on \(url) (store \(storePath)\(publicReads ? ", public reads" : ""))"
                )
                let auth = publicReads ? "" : " -H \"Authorization: Bearer $CAIRN_TOKEN\""
                out.append("  what is production:  curl\(auth) \(url)/v1/models/\(model)/versions/production")
                out.append(
                    "  a file, resumable:   curl\(auth) -C - -O \(url)/v1/models/\(model)/versions/production/files/config.json"
                )
                out.append("  the CLI, remotely:   cairn ls --remote \(url) --token $CAIRN_TOKEN")
                let metricsAuth = server.options.publicMetrics ? "" : " -H \"Authorization: Bearer $CAIRN_TOKEN\""
                out.append("  health, metrics:     curl \(url)/healthz · curl\(metricsAuth) \(url)/metrics")
                out.append("stop with Ctrl-C or SIGTERM (requests in flight finish first)")
                FileHandle.standardOutput.write(Data((out.joined(separator: "\n") + "\n").utf8))
            }
            do {
                try await app.runService()
            } catch {
                printError("the server stopped: \(error)")
                throw ExitCode.failure
            }
        }

        /// A base model in production (alias champion) and a fine-tune of its last two layers in
        /// staging (alias challenger).
        static func createDemo(_ registry: Registry, actor: String) throws {
            let work = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-serve-demo-\(getpid())")
            defer { try? FileManager.default.removeItem(at: work) }
            let shape = FixtureModels.Shape.small
            let base = work.appendingPathComponent("base")
            let finetune = work.appendingPathComponent("finetune")
            try FixtureModels.writeBase(to: base, shape: shape, seed: 1)
            try FixtureModels.writeVariant(
                to: finetune,
                shape: shape,
                seed: 1,
                changedLayers: [shape.layers - 2, shape.layers - 1],
                variantSeed: 7
            )
            var request = PushRequest(model: "demo-llama", actor: actor)
            request.message = "base model"
            request.metrics = ["eval_loss": 1.92]
            let v1 = try registry.push(directory: base.path, request: request)
            request.message = "fine-tune of the last 2 layers"
            request.metrics = ["eval_loss": 1.83]
            request.parents = ["demo-llama@\(v1.version)"]
            let v2 = try registry.push(directory: finetune.path, request: request)
            let r1 = Reference(model: "demo-llama", selector: .number(v1.version))
            let r2 = Reference(model: "demo-llama", selector: .number(v2.version))
            try registry.promote(r1, to: .staging, actor: actor, reason: "demo")
            try registry.promote(r1, to: .production, actor: actor, reason: "demo")
            try registry.promote(r2, to: .staging, actor: actor, reason: "demo")
            try registry.setAlias(model: "demo-llama", alias: "champion", version: v1.version, actor: actor)
            try registry.setAlias(model: "demo-llama", alias: "challenger", version: v2.version, actor: actor)
        }
    }
}

/// glibc's `mallopt(M_TRIM_THRESHOLD, 512 MiB)` and `mallopt(M_MMAP_THRESHOLD, 32 MiB)`: freed
/// memory is kept for reuse instead of being returned to the kernel. (`malloc.h` is not part of
/// Swift's Glibc module, hence the lookup by name.)
private func keepFreedMemory() {
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }  // RTLD_DEFAULT
    let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
    _ = mallopt(-1, 512 << 20)  // M_TRIM_THRESHOLD
    _ = mallopt(-3, 32 << 20)  // M_MMAP_THRESHOLD
}
