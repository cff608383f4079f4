import CairnStore

// What the registry's operations report to their callers, local or remote (``RegistryService``):
// the JSON of `verify --json` and `push --json`, and of the server's replies to them.

/// What `cairn verify` reports (`verify --json`, `POST /v1/verify`).
public struct VerifySummary: Codable, Sendable {
    public var ok: Bool
    public var deep: Bool
    public var packs: Int
    public var chunks: Int
    public var manifests: Int
    public var verifiedBytes: Int64
    public var unreferencedPacks: Int
    public var problems: [Problem]
    public var affected: [RegistryVerifyReport.AffectedFile]

    public struct Problem: Codable, Sendable {
        public var kind: String
        public var chunk: String?
        public var message: String
    }

    enum CodingKeys: String, CodingKey {
        case ok, deep, packs, chunks, manifests, problems, affected
        case verifiedBytes = "verified_bytes"
        case unreferencedPacks = "unreferenced_packs"
    }

    public init(_ r: RegistryVerifyReport) {
        ok = r.store.isHealthy
        deep = r.store.deep
        packs = r.store.packs
        chunks = r.store.chunks
        manifests = r.store.manifests
        verifiedBytes = r.store.verifiedBytes
        unreferencedPacks = r.store.unreferencedPacks
        problems = r.store.problems.map { Problem(kind: $0.kind.rawValue, chunk: $0.chunk?.hex, message: $0.message) }
        affected = r.affected
    }
}

/// A push's result with, for a remote push, the bytes of chunk data sent over the wire.
public struct PushReport: Encodable, Sendable {
    public var result: PushResult
    /// Bytes of chunk bundles uploaded (nil for a local push).
    public var transferredBytes: Int64?

    public init(result: PushResult, transferredBytes: Int64?) {
        self.result = result
        self.transferredBytes = transferredBytes
    }

    enum CodingKeys: String, CodingKey {
        case transferredBytes = "transferred_bytes"
    }

    public func encode(to encoder: any Encoder) throws {
        try result.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        if let transferredBytes { try c.encode(transferredBytes, forKey: .transferredBytes) }
    }
}
