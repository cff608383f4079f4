import CairnRegistry
import Hummingbird

// The /v1 API (docs/http-api.md): Cairn's own JSON REST API and chunk protocol, the one the CLI's
// `--remote` speaks. It is one adapter among those the server will have (the Hugging Face Hub API,
// MLflow's registry API, the web UI: each a folder beside this one): its routes map requests onto
// the registry and own no registry logic. Route handlers hand every store access to the server's
// blocking threads (`server.blocking`), except lookups answered from memory, which say so.

/// Adds the /v1 API's routes to `v1` (the router's `/v1` group).
func addV1Routes(_ v1: RouterGroup<CairnRequestContext>, server: CairnServer) {
    addQueryRoutes(v1, server: server)
    addChangeRoutes(v1, server: server)
    addChunkRoutes(v1, server: server)
    addFileRoutes(v1, server: server)
    addAdminRoutes(v1, server: server)
}

/// Parses the `{ref}` of a version route: a number, `latest`, a stage or an alias.
///
/// - Throws: `RegistryError` with `.invalidArgument` for a malformed model name or reference.
func reference(model: String, ref: String) throws -> Reference {
    try Reference(parsing: ref == "latest" ? model : "\(model)@\(ref)")
}
