import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Foundation
import Hummingbird
import NIOCore

/// Read routes: configuration, models, versions (lookup by reference, listings with filters),
/// lineage, aliases, policy, history, audit log (and its verification), diffs, stats, manifests.
///
/// Every read of the store runs on the blocking threads: LMDB readers never wait for a writer, but
/// a read transaction still costs page faults and CPU on whatever thread runs it, and the audit
/// walk re-hashes the whole log. The one exception is the version lookup's cache, below.
func addQueryRoutes(_ v1: RouterGroup<CairnRequestContext>, server: CairnServer) {
    let registry = server.registry
    let storeConfig = registry.store.config
    let config = ServerConfig(
        chunker: storeConfig.chunker,
        compressionLevel: storeConfig.compression.level,
        maxBatchBytes: server.options.maxBatchBytes,
        maxBatchIDs: server.options.maxBatchIDs,
        version: "0.1.0"
    )
    /// Version documents by `model \0 ref`, valid while the index generation is unchanged.
    let versionDocuments = GenerationCache<ByteBuffer>()

    v1.get("config") { _, context in
        try context.require(.reader, "read the configuration")
        return try jsonResponse(config)
    }

    v1.get("whoami") { _, context in
        try jsonResponse(
            Identity(user: context.identity?.user, role: context.identity?.role, tokenID: context.identity?.id)
        )
    }

    v1.get("models") { _, context in
        try context.require(.reader, "list models")
        return try jsonResponse(try await server.blocking { try registry.listModels() })
    }

    // What is production now (and any other reference): the hot path of serving systems (target
    // ≥ 20,000 lookups/s at 64 connections with p99 ≤ 5 ms; measured 34–42k/s, p99 3.1–4.8 ms,
    // Benchmarks/SERVER.md). A known answer comes from memory on the request's thread: the index
    // generation (`mdb_env_info`, no transaction) and a cache lookup under a lock, nothing else.
    // Only the first lookup of a reference after a change reads the store, on the blocking
    // threads.
    v1.get("models/:model/versions/:ref") { request, context in
        try context.require(.reader, "read versions")
        let model = try context.parameter("model")
        let ref = try context.parameter("ref")
        if let at = request.query("at") {
            let date = try RegistryTime.parse(at, dateOnly: .endOfDay)
            let asked = try reference(model: model, ref: ref)
            return try jsonResponse(
                try await server.blocking {
                    let past = try registry.resolve(asked, at: date)
                    let info = try registry.info(
                        Reference(model: past.version.model, selector: .number(past.version.version))
                    )
                    return VersionDocument(info: info, manifest: try registry.manifest(of: info.record), past: past)
                }
            )
        }
        let key = model + "\u{0}" + ref
        let generation = server.generation
        if let hit = versionDocuments.get(key, generation: generation) { return jsonResponse(hit) }
        let asked = try reference(model: model, ref: ref)
        let buffer = try await server.blocking {
            let info = try registry.info(asked)
            return try jsonBuffer(VersionDocument(info: info, manifest: try registry.manifest(of: info.record)))
        }
        versionDocuments.put(key, buffer, generation: generation)
        return jsonResponse(buffer)
    }

    v1.get("models/:model/versions") { request, context in
        try context.require(.reader, "list versions")
        let query = try versionQuery(request, model: try context.parameter("model"))
        return try jsonResponse(try await server.blocking { try findVersions(query, registry: registry) })
    }

    v1.get("versions") { request, context in
        try context.require(.reader, "list versions")
        let query = try versionQuery(request, model: nil)
        return try jsonResponse(try await server.blocking { try findVersions(query, registry: registry) })
    }

    v1.get("models/:model/versions/:ref/lineage") { _, context in
        try context.require(.reader, "read lineage")
        let ref = try reference(model: try context.parameter("model"), ref: try context.parameter("ref"))
        return try jsonResponse(try await server.blocking { try registry.lineage(ref) })
    }

    v1.get("models/:model/aliases") { _, context in
        try context.require(.reader, "list aliases")
        let model = try context.parameter("model")
        return try jsonResponse(try await server.blocking { try registry.aliases(of: model) })
    }

    v1.get("models/:model/policy") { _, context in
        try context.require(.reader, "read policies")
        let model = try context.parameter("model")
        let policy = try await server.blocking { try registry.policy(of: model) }
        return try jsonResponse(PolicyDocument(model: model, policy: policy))
    }

    v1.get("models/:model/history") { _, context in
        try context.require(.reader, "read history")
        let model = try context.parameter("model")
        return try jsonResponse(try await server.blocking { try registry.history(of: model) })
    }

    v1.get("audit") { request, context in
        try context.require(.reader, "read the audit log")
        let since = try request.query("since").map { try RegistryTime.parse($0, dateOnly: .startOfDay) }
        let model = request.query("model")
        return try jsonResponse(try await server.blocking { try registry.auditLog(model: model, since: since) })
    }

    // Walks the whole log and re-hashes every entry: never on a thread that serves requests.
    v1.get("audit/verify") { _, context in
        try context.require(.reader, "verify the audit log")
        return try jsonResponse(try await server.blocking { try registry.verifyAudit() })
    }

    v1.get("diff") { request, context in
        try context.require(.reader, "diff versions")
        guard let from = request.query("from"), let to = request.query("to") else {
            throw APIError.badRequest("diff needs ?from=REF&to=REF")
        }
        return try jsonResponse(
            try await server.blocking {
                let a = try registry.resolve(try Reference(parsing: from))
                let b = try registry.resolve(try Reference(parsing: to))
                return try registry.diff(a, b)
            }
        )
    }

    v1.get("stats") { _, context in
        try context.require(.reader, "read statistics")
        return try jsonResponse(try await server.statistics())
    }

    v1.get("manifests/:id") { _, context in
        try context.require(.reader, "read manifests")
        let text = try context.parameter("id")
        guard let id = SHA256Digest(hex: text), text.count == 64 else {
            throw APIError.badRequest("a manifest id is 64 hex digits")
        }
        let store = registry.store
        return binaryResponse(try await server.blocking { try store.manifest(id).encoded() })
    }
}

/// The filters of `ls`: `?stage=S&tag=K=V&metric=COND` (tag and metric repeatable).
///
/// - Throws: ``APIError`` with `.invalidArgument` for a malformed tag filter or an unknown stage;
///   `RegistryError` with `.invalidArgument` for a malformed metric condition.
private func versionQuery(_ request: Request, model: String?) throws -> VersionQuery {
    var tags: [String: String] = [:]
    for item in request.queryAll("tag") {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else {
            throw APIError.badRequest("tag filters are K=V, got \(item)")
        }
        tags[String(item[..<eq])] = String(item[item.index(after: eq)...])
    }
    var stage: Stage?
    if let text = request.query("stage") {
        guard let s = Stage(rawValue: text) else { throw APIError.badRequest("unknown stage \"\(text)\"") }
        stage = s
    }
    return VersionQuery(
        model: model,
        stage: stage,
        tags: tags,
        metrics: try request.queryAll("metric").map { try MetricCondition(parsing: $0) }
    )
}

/// The versions `query` selects, as documents (reads the store: call on the blocking threads).
private func findVersions(_ query: VersionQuery, registry: Registry) throws -> [VersionDocument] {
    try registry.findVersions(query).map { VersionDocument(info: $0) }
}
