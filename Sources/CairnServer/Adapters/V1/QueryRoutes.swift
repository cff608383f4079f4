import CairnRegistry
import CairnAPI
import CairnStore
import Digest
import Foundation
import Hummingbird
import NIOCore

/// Read routes: configuration, models, versions (lookup by reference, listings with filters),
/// lineage, aliases, policy, history, audit log, stats, manifests.
///
/// Metadata reads run inline: LMDB readers never wait for a writer, and a version lookup is
/// answered from a cache that holds while the index generation is unchanged.
func addQueryRoutes(_ v1: RouterGroup<CairnRequestContext>, server: CairnServer) {
    let registry = server.registry

    v1.get("config") { _, context in
        try context.require(.reader, "read the configuration")
        return jsonResponse(server.config)
    }

    v1.get("whoami") { _, context in
        jsonResponse(
            Identity(user: context.identity?.user, role: context.identity?.role, tokenID: context.identity?.id)
        )
    }

    v1.get("models") { _, context in
        try context.require(.reader, "list models")
        return jsonResponse(try registry.listModels())
    }

    // What is production now (and any other reference): cached per index generation.
    v1.get("models/:model/versions/:ref") { request, context in
        try context.require(.reader, "read versions")
        let model = try context.parameter("model")
        let ref = try context.parameter("ref")
        if let at = request.query("at") {
            let date = try RegistryTime.parse(at, dateOnly: .endOfDay)
            let past = try registry.resolve(try reference(model: model, ref: ref), at: date)
            let info = try registry.info(Reference(model: past.version.model, selector: .number(past.version.version)))
            return jsonResponse(
                VersionDocument(info: info, manifest: try registry.manifest(of: info.record), past: past)
            )
        }
        let key = model + "\u{0}" + ref
        let generation = server.generation
        if let hit = server.versionCache.get(key, generation: generation) { return jsonResponse(hit) }
        let info = try registry.info(try reference(model: model, ref: ref))
        let buffer = try jsonBuffer(VersionDocument(info: info, manifest: try registry.manifest(of: info.record)))
        server.versionCache.put(key, buffer, generation: generation)
        return jsonResponse(buffer)
    }

    v1.get("models/:model/versions") { request, context in
        try context.require(.reader, "list versions")
        let model = try context.parameter("model")
        return jsonResponse(try findVersions(request, model: model, registry: registry))
    }

    v1.get("versions") { request, context in
        try context.require(.reader, "list versions")
        return jsonResponse(try findVersions(request, model: nil, registry: registry))
    }

    v1.get("models/:model/versions/:ref/lineage") { _, context in
        try context.require(.reader, "read lineage")
        let ref = try reference(model: try context.parameter("model"), ref: try context.parameter("ref"))
        return jsonResponse(try registry.lineage(ref))
    }

    v1.get("models/:model/aliases") { _, context in
        try context.require(.reader, "list aliases")
        return jsonResponse(try registry.aliases(of: try context.parameter("model")))
    }

    v1.get("models/:model/policy") { _, context in
        try context.require(.reader, "read policies")
        let model = try context.parameter("model")
        return jsonResponse(PolicyDocument(model: model, policy: try registry.policy(of: model)))
    }

    v1.get("models/:model/history") { _, context in
        try context.require(.reader, "read history")
        return jsonResponse(try registry.history(of: try context.parameter("model")))
    }

    v1.get("audit") { request, context in
        try context.require(.reader, "read the audit log")
        let since = try request.query("since").map { try RegistryTime.parse($0, dateOnly: .startOfDay) }
        return jsonResponse(try registry.auditLog(model: request.query("model"), since: since))
    }

    v1.get("audit/verify") { _, context in
        try context.require(.reader, "verify the audit log")
        return jsonResponse(try registry.verifyAudit())
    }

    v1.get("diff") { request, context in
        try context.require(.reader, "diff versions")
        guard let from = request.query("from"), let to = request.query("to") else {
            throw APIError.badRequest("diff needs ?from=REF&to=REF")
        }
        let a = try registry.resolve(try Reference(parsing: from))
        let b = try registry.resolve(try Reference(parsing: to))
        return jsonResponse(try await server.blocking { try registry.diff(a, b) })
    }

    v1.get("stats") { _, context in
        try context.require(.reader, "read statistics")
        return jsonResponse(try await server.statistics())
    }

    v1.get("manifests/:id") { _, context in
        try context.require(.reader, "read manifests")
        let text = try context.parameter("id")
        guard let id = SHA256Digest(hex: text), text.count == 64 else {
            throw APIError.badRequest("a manifest id is 64 hex digits")
        }
        let manifest = try registry.store.manifest(id)
        return binaryResponse(manifest.encoded())
    }
}

/// `ls` with filters: `?stage=S&tag=K=V&metric=COND` (tag and metric repeatable).
private func findVersions(_ request: Request, model: String?, registry: Registry) throws -> [VersionDocument] {
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
    let query = VersionQuery(
        model: model,
        stage: stage,
        tags: tags,
        metrics: try request.queryAll("metric").map { try MetricCondition(parsing: $0) }
    )
    return try registry.findVersions(query).map { VersionDocument(info: $0) }
}
