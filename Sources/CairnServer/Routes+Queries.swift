import CairnRegistry
import CairnRemote
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
        jsonResponse(Identity(user: context.identity?.user, role: context.identity?.role, tokenID: context.identity?.id))
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
            return jsonResponse(VersionDocument(info: info, manifest: try registry.manifest(of: info.record), past: past))
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
        return jsonResponse(try VersionDiff.compute(registry, from: try Reference(parsing: from), to: try Reference(parsing: to)))
    }

    v1.get("stats") { _, context in
        try context.require(.reader, "read statistics")
        return jsonResponse(try await server.statistics())
    }

    v1.get("manifests/:id") { _, context in
        try context.require(.reader, "read manifests")
        let text = try context.parameter("id")
        guard let id = SHA256Digest(hex: text), text.count == 64 else { throw APIError.badRequest("a manifest id is 64 hex digits") }
        let manifest = try registry.store.manifest(id)
        return binaryResponse(manifest.encoded())
    }
}

/// `ls` with filters: `?stage=S&tag=K=V&metric=COND` (tag and metric repeatable).
private func findVersions(_ request: Request, model: String?, registry: Registry) throws -> [VersionDocument] {
    var tags: [String: String] = [:]
    for item in request.queryAll("tag") {
        guard let eq = item.firstIndex(of: "="), eq != item.startIndex else { throw APIError.badRequest("tag filters are K=V, got \(item)") }
        tags[String(item[..<eq])] = String(item[item.index(after: eq)...])
    }
    var stage: Stage?
    if let text = request.query("stage") {
        guard let s = Stage(rawValue: text) else { throw APIError.badRequest("unknown stage \"\(text)\"") }
        stage = s
    }
    let query = VersionQuery(
        model: model, stage: stage, tags: tags, metrics: try request.queryAll("metric").map { try MetricCondition(parsing: $0) })
    return try registry.findVersions(query).map { VersionDocument(info: $0) }
}

/// What changed between two versions: files added, removed and changed (by SHA-256), with the
/// bytes of changed files' chunks the newer version shares with the older one, and metadata changes.
struct VersionDiff: Encodable {
    struct FileChange: Encodable {
        var path: String
        var change: String
        var sizeFrom: Int64?
        var sizeTo: Int64?
        var sha256From: String?
        var sha256To: String?
        /// Bytes of the newer file in chunks the older version also has.
        var sharedBytes: Int64?

        enum CodingKeys: String, CodingKey {
            case path, change
            case sizeFrom = "size_from"
            case sizeTo = "size_to"
            case sha256From = "sha256_from"
            case sha256To = "sha256_to"
            case sharedBytes = "shared_bytes"
        }
    }

    var from: String
    var to: String
    var files: [FileChange]
    var metrics: [String: [Double?]]
    var params: [String: [String?]]
    var tags: [String: [String?]]
    var changedBytes: Int64

    enum CodingKeys: String, CodingKey {
        case from, to, files, metrics, params, tags
        case changedBytes = "changed_bytes"
    }

    static func compute(_ registry: Registry, from a: Reference, to b: Reference) throws -> VersionDiff {
        let va = try registry.resolve(a)
        let vb = try registry.resolve(b)
        let ma = try registry.manifest(of: va)
        let mb = try registry.manifest(of: vb)
        let chunksA = Set(ma.files.flatMap { $0.chunks.map(\.id) })
        var files: [FileChange] = []
        var changed: Int64 = 0
        let byPathA = Dictionary(ma.files.map { ($0.path, $0) }, uniquingKeysWith: { x, _ in x })
        let byPathB = Dictionary(mb.files.map { ($0.path, $0) }, uniquingKeysWith: { x, _ in x })
        for path in Set(byPathA.keys).union(byPathB.keys).sorted() {
            let fa = byPathA[path]
            let fb = byPathB[path]
            if let fa, let fb, fa.sha256 == fb.sha256 { continue }
            let shared = fb.map { $0.chunks.filter { chunksA.contains($0.id) }.reduce(Int64(0)) { $0 + Int64($1.length) } }
            if let fb, let shared { changed += fb.size - shared }
            files.append(
                FileChange(
                    path: path, change: fa == nil ? "added" : fb == nil ? "removed" : "changed", sizeFrom: fa?.size, sizeTo: fb?.size,
                    sha256From: fa?.sha256.hex, sha256To: fb?.sha256.hex, sharedBytes: shared))
        }
        func compare<V: Equatable>(_ x: [String: V], _ y: [String: V]) -> [String: [V?]] {
            var out: [String: [V?]] = [:]
            for key in Set(x.keys).union(y.keys) where x[key] != y[key] { out[key] = [x[key], y[key]] }
            return out
        }
        return VersionDiff(
            from: va.reference, to: vb.reference, files: files, metrics: compare(va.metrics, vb.metrics),
            params: compare(va.params, vb.params), tags: compare(va.tags, vb.tags), changedBytes: changed)
    }
}
