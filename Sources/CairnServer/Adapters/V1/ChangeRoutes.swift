import CairnAPI
import CairnRegistry
import CairnStore
import Digest
import Foundation
import Hummingbird
import NIOCore

/// Write routes: create a version from a manifest, promote, approve, archive, delete, rollback,
/// aliases, tags, policies. The actor of every change is the token's user — never anything the
/// client claims — so gates and the four-eyes rule apply to who actually asks.
///
/// Every store access, the checks before a change included, runs on the server's blocking threads
/// (commits fsync).
func addChangeRoutes(_ v1: RouterGroup<CairnRequestContext>, server: CairnServer) {
    let registry = server.registry

    v1.post("models/:model/versions") { request, context in
        let actor = try context.require(.writer, "push")
        let model = try context.parameter("model")
        var request = request
        let body = try await request.json(CreateVersionBody.self, limit: server.options.maxJSONBytes)
        guard let bytes = Data(base64Encoded: body.manifest) else {
            throw APIError.badRequest("manifest is not base64")
        }
        let manifest: Manifest
        do {
            manifest = try bytes.withUnsafeBytes { try Manifest.decode($0) }
        } catch let error as CairnStoreError {
            throw APIError.badRequest("invalid manifest: \(error.message)")
        }
        if let claimed = body.manifestID, claimed != SHA256Digest.hash(Array(bytes)).hex {
            throw APIError(.manifestMismatch, "the manifest does not hash to \(claimed)")
        }
        let push = body.request(model: model, actor: actor)
        let upload = try body.upload.map { try server.uploads.get($0, user: actor) }
        let uploads = server.uploads
        let result = try await server.blocking {
            let result: PushResult
            do {
                result = try registry.push(
                    manifest: manifest,
                    request: push,
                    upload: upload,
                    newBytes: body.newBytes,
                    storedBytes: body.storedBytes
                )
            } catch let error as MissingChunksError {
                throw error  // the upload stays open: the client adds the missing chunks and retries
            } catch {
                if let id = body.upload { uploads.close(id) }
                throw error
            }
            if let id = body.upload { uploads.close(id) }
            return result
        }
        server.logger.info(
            "push",
            metadata: [
                "model": "\(result.model)", "version": "\(result.version)", "user": "\(actor)",
                "manifest": "\(result.manifest)",
            ]
        )
        return try jsonResponse(result, status: .created)
    }

    v1.post("models/:model/versions/:ref/promote") { request, context in
        let actor = try context.require(.approver, "promote")
        let ref = try reference(model: try context.parameter("model"), ref: try context.parameter("ref"))
        var request = request
        let body = try await request.json(StageChangeBody.self)
        return try jsonResponse(
            try await server.blocking {
                try registry.promote(
                    ref,
                    to: body.to,
                    actor: actor,
                    reason: body.reason,
                    evidence: body.evidence ?? [:]
                )
            }
        )
    }

    v1.post("models/:model/versions/:ref/approve") { request, context in
        let actor = try context.require(.approver, "approve")
        let ref = try reference(model: try context.parameter("model"), ref: try context.parameter("ref"))
        var request = request
        let body = try await request.json(StageChangeBody.self)
        return try jsonResponse(
            try await server.blocking { try registry.approve(ref, for: body.to, actor: actor, reason: body.reason) }
        )
    }

    v1.post("models/:model/versions/:ref/archive") { request, context in
        let actor = try context.require(.approver, "archive")
        let ref = try reference(model: try context.parameter("model"), ref: try context.parameter("ref"))
        var request = request
        let body = try await request.json(ReasonBody.self)
        return try jsonResponse(
            try await server.blocking {
                try registry.archive(ref, actor: actor, reason: body.reason, evidence: body.evidence ?? [:])
            }
        )
    }

    v1.delete("models/:model/versions/:ref") { request, context in
        let actor = try context.require(.admin, "delete versions")
        let ref = try reference(model: try context.parameter("model"), ref: try context.parameter("ref"))
        let reason = request.query("reason")
        return try jsonResponse(try await server.blocking { try registry.delete(ref, actor: actor, reason: reason) })
    }

    v1.post("models/:model/rollback") { request, context in
        let actor = try context.require(.approver, "roll back")
        let model = try context.parameter("model")
        var request = request
        let body = try await request.json(RollbackBody.self)
        return try jsonResponse(
            try await server.blocking {
                try registry.rollback(model: model, to: body.to, actor: actor, reason: body.reason)
            }
        )
    }

    v1.put("models/:model/aliases/:alias") { request, context in
        let actor = try context.require(.writer, "set aliases")
        let model = try context.parameter("model")
        let alias = try context.parameter("alias")
        var request = request
        let body = try await request.json(AliasBody.self)
        let isWriter = context.identity?.role == .writer
        return try jsonResponse(
            try await server.blocking {
                if isWriter {
                    // Writers move aliases among experimental and staging versions only.
                    let target = try registry.resolve(Reference(model: model, selector: .number(body.version)))
                    try requireEarlyStage(target, what: "point an alias at")
                    if let current = try registry.aliases(of: model).first(where: { $0.alias == alias }) {
                        try requireEarlyStage(
                            try registry.resolve(Reference(model: model, selector: .number(current.version))),
                            what: "move an alias away from"
                        )
                    }
                }
                return try registry.setAlias(
                    model: model,
                    alias: alias,
                    version: body.version,
                    actor: actor,
                    reason: body.reason
                )
            }
        )
    }

    v1.delete("models/:model/aliases/:alias") { request, context in
        let actor = try context.require(.writer, "remove aliases")
        let model = try context.parameter("model")
        let alias = try context.parameter("alias")
        let isWriter = context.identity?.role == .writer
        let reason = request.query("reason")
        return try jsonResponse(
            try await server.blocking {
                if isWriter, let current = try registry.aliases(of: model).first(where: { $0.alias == alias }) {
                    try requireEarlyStage(
                        try registry.resolve(Reference(model: model, selector: .number(current.version))),
                        what: "remove an alias of"
                    )
                }
                return try registry.removeAlias(model: model, alias: alias, actor: actor, reason: reason)
            }
        )
    }

    v1.post("models/:model/versions/:ref/tags") { request, context in
        let actor = try context.require(.writer, "tag")
        let ref = try reference(model: try context.parameter("model"), ref: try context.parameter("ref"))
        var request = request
        let body = try await request.json(TagsBody.self)
        let isWriter = context.identity?.role == .writer
        return try jsonResponse(
            try await server.blocking {
                if isWriter { try requireEarlyStage(try registry.resolve(ref), what: "tag") }
                return try registry.tag(ref, body.tags ?? [:], actor: actor)
            }
        )
    }

    v1.post("models/:model/versions/:ref/untag") { request, context in
        let actor = try context.require(.writer, "untag")
        let ref = try reference(model: try context.parameter("model"), ref: try context.parameter("ref"))
        var request = request
        let body = try await request.json(TagsBody.self)
        let isWriter = context.identity?.role == .writer
        return try jsonResponse(
            try await server.blocking {
                if isWriter { try requireEarlyStage(try registry.resolve(ref), what: "untag") }
                return try registry.untag(ref, body.keys ?? [], actor: actor)
            }
        )
    }

    v1.put("models/:model/policy") { request, context in
        let actor = try context.require(.admin, "set policies")
        let model = try context.parameter("model")
        var request = request
        let body = try await request.json(PolicyBody.self)
        return try jsonResponse(
            try await server.blocking {
                try registry.setPolicy(model: model, body.policy, actor: actor, reason: body.reason)
            }
        )
    }
}

/// Writers may tag and alias versions in experimental or staging only.
///
/// - Throws: ``APIError`` with `.forbidden` for a version in production or archived.
private func requireEarlyStage(_ version: VersionRecord, what: String) throws {
    guard version.stage == .experimental || version.stage == .staging else {
        throw APIError.forbidden(
            "a writer cannot \(what) \(version.reference), which is in \(version.stage.rawValue): that needs role approver"
        )
    }
}
