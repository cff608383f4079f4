import CairnAPI
import CairnRegistry
import Foundation
import Hummingbird

/// Admin routes: garbage collection, verification, tokens; all of their store work on the
/// blocking threads.
func addAdminRoutes(_ v1: RouterGroup<CairnRequestContext>, server: CairnServer) {
    let registry = server.registry

    v1.post("gc") { request, context in
        let actor = try context.require(.admin, "collect garbage")
        let grace =
            try request.query("grace_period").map { text -> Double in
                guard let value = Double(text), value >= 0, value.isFinite else {
                    throw APIError.badRequest("grace_period is seconds")
                }
                return value
            } ?? 3600
        let report = try await server.blocking { try registry.collectGarbage(gracePeriod: grace) }
        server.logger.info("gc", metadata: ["user": "\(actor)", "removed_chunks": "\(report.removedChunks)"])
        return try jsonResponse(report)
    }

    v1.post("verify") { request, context in
        try context.require(.admin, "verify the store")
        let deep = request.query("deep") == "true"
        return try jsonResponse(try await server.blocking { try registry.verifySummary(deep: deep, progress: nil) })
    }

    v1.get("tokens") { _, context in
        try context.require(.admin, "list tokens")
        return try jsonResponse(try await server.blocking { try registry.listTokens() })
    }

    v1.post("tokens") { request, context in
        let actor = try context.require(.admin, "create tokens")
        var request = request
        let body = try await request.json(TokenBody.self)
        let token = try await server.blocking {
            try registry.createToken(user: body.user, role: body.role, actor: actor)
        }
        server.logger.info(
            "token created",
            metadata: ["user": "\(actor)", "for": "\(body.user)", "role": "\(body.role.rawValue)"]
        )
        return try jsonResponse(token, status: .created)
    }

    v1.delete("tokens/:id") { _, context in
        let actor = try context.require(.admin, "revoke tokens")
        let id = try context.parameter("id")
        let record = try await server.blocking { try registry.revokeToken(id: id, actor: actor) }
        server.logger.info("token revoked", metadata: ["user": "\(actor)", "token": "\(record.id)"])
        return try jsonResponse(record)
    }
}
