import CairnStore
import Digest

extension Registry {
    /// Verifies the store (``Store/verify(deep:progress:)``: every index entry points at readable
    /// data; `deep` also re-hashes every chunk) and names, for every damaged chunk, the versions and
    /// files that use it. Damage is reported, not thrown.
    ///
    /// - Throws: ``RegistryError`` with `.io` when the store cannot be read at all, `.corruption` for
    ///   a damaged version record.
    public func verify(deep: Bool, progress: ((TransferProgress) -> Void)? = nil) throws -> RegistryVerifyReport {
        let report = try storeCall { try store.verify(deep: deep, progress: progress) }
        let damaged = report.damagedChunks
        var affected: [RegistryVerifyReport.AffectedFile] = []
        if !damaged.isEmpty {
            try storeCall {
                try store.readMetadata { txn in
                    for entry in try txn.scan(versions) {
                        let record = try RecordCoding.decode(VersionRecord.self, entry.value, what: "a version")
                        guard let id = SHA256Digest(hex: record.manifest), let manifest = try? txn.manifest(id) else {
                            continue
                        }
                        for file in manifest.files {
                            for chunk in file.chunks where damaged.contains(chunk.id) {
                                affected.append(
                                    .init(
                                        model: record.model,
                                        version: record.version,
                                        path: file.path,
                                        chunk: chunk.id.hex
                                    )
                                )
                            }
                        }
                    }
                }
            }
        }
        return RegistryVerifyReport(store: report, affected: affected)
    }
}

/// The store's verify report plus the model versions and files that damaged chunks belong to.
public struct RegistryVerifyReport: Sendable {
    /// A file of a version that uses a damaged chunk.
    public struct AffectedFile: Sendable, Equatable, Codable {
        /// The model's name.
        public var model: String
        /// The version's number.
        public var version: Int
        /// The file's path in the version.
        public var path: String
        /// The damaged chunk's id (hex SHA-256).
        public var chunk: String
    }

    /// What the store found.
    public var store: VerifyReport
    /// Every file of every version that uses a damaged chunk.
    public var affected: [AffectedFile]
}

/// What `cairn verify` reports (`verify --json`, `POST /v1/verify`).
public struct VerifySummary: Codable, Sendable {
    /// Whether nothing is damaged.
    public var ok: Bool
    /// Whether every chunk was re-hashed (`--deep`).
    public var deep: Bool
    /// Pack files checked.
    public var packs: Int
    /// Index entries checked.
    public var chunks: Int
    /// Manifests checked.
    public var manifests: Int
    /// Bytes re-hashed (deep only).
    public var verifiedBytes: Int64
    /// Pack files on disk the index does not reference (left by interrupted pushes; GC removes them).
    public var unreferencedPacks: Int
    /// Temporary files in the store's `tmp/` left by killed pushes (GC removes them); nil from a
    /// server that does not report them.
    public var leftoverTemporaryFiles: Int?
    /// Their bytes.
    public var leftoverTemporaryBytes: Int64?
    /// What is damaged, one entry per problem.
    public var problems: [Problem]
    /// The files of versions that use a damaged chunk.
    public var affected: [RegistryVerifyReport.AffectedFile]

    /// One problem found.
    public struct Problem: Codable, Sendable {
        /// What kind: `damaged-pack`, `bad-index-entry`, `corrupt-chunk`, `missing-chunk` or
        /// `damaged-manifest` (``VerifyReport/Problem/Kind``).
        public var kind: String
        /// The damaged chunk's id (hex), when one is named.
        public var chunk: String?
        /// What is wrong, for a person.
        public var message: String
    }

    enum CodingKeys: String, CodingKey {
        case ok, deep, packs, chunks, manifests, problems, affected
        case verifiedBytes = "verified_bytes"
        case unreferencedPacks = "unreferenced_packs"
        case leftoverTemporaryFiles = "leftover_temporary_files"
        case leftoverTemporaryBytes = "leftover_temporary_bytes"
    }

    /// The summary of a registry's verify report.
    init(_ r: RegistryVerifyReport) {
        ok = r.store.isHealthy
        deep = r.store.deep
        packs = r.store.packs
        chunks = r.store.chunks
        manifests = r.store.manifests
        verifiedBytes = r.store.verifiedBytes
        unreferencedPacks = r.store.unreferencedPacks
        leftoverTemporaryFiles = r.store.leftoverTemporaryFiles
        leftoverTemporaryBytes = r.store.leftoverTemporaryBytes
        problems = r.store.problems.map { Problem(kind: $0.kind.rawValue, chunk: $0.chunk?.hex, message: $0.message) }
        affected = r.affected
    }
}
