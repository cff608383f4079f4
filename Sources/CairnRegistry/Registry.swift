import CairnStore
import Digest
import Foundation

/// The model registry: models, numbered versions and their metadata, over a ``Store``.
///
/// ```swift
/// let registry = try Registry(store: try Store.open(at: path))
/// let result = try registry.push(directory: "./out", request: PushRequest(model: "llama-support", actor: "alice"))
/// let version = try registry.resolve(try Reference(parsing: "llama-support@\(result.version)"))
/// try registry.pull(version, to: "/srv/models/llama")
/// ```
///
/// Every push registers a new version (1, 2, 3 … per model) in the same index transaction that makes
/// its chunks and manifest visible: a version is either wholly there or not at all.
public final class Registry: @unchecked Sendable {
    // @unchecked Sendable: immutable after init; all state lives in the store's index.
    public let store: Store
    /// model → ``ModelRecord``.
    let models: MetadataTable
    /// model \0 version (u32 big-endian) → ``VersionRecord``.
    let versions: MetadataTable
    /// model \0 alias → ``AliasRecord``.
    let aliases: MetadataTable
    /// model → ``Policy``.
    let policies: MetadataTable
    /// sequence (u64 big-endian) → ``AuditEntry``.
    let audit: MetadataTable
    /// model \0 sequence → empty: the audit entries of one model.
    let auditByModel: MetadataTable
    /// "head" → ``AuditHead``.
    let auditHead: MetadataTable
    /// The clock that times changes (tests pass their own).
    let clock: @Sendable () -> Date

    public init(store: Store, clock: @escaping @Sendable () -> Date = { Date() }) throws {
        self.store = store
        self.clock = clock
        (models, versions, aliases, policies, audit, auditByModel, auditHead) = try storeCall {
            (
                try store.table("models"), try store.table("versions"), try store.table("aliases"),
                try store.table("policies"), try store.table("audit"), try store.table("audit-by-model"),
                try store.table("audit-head")
            )
        }
    }

    // MARK: Keys

    static func modelKey(_ name: String) -> [UInt8] { Array(name.utf8) }

    static func versionPrefix(_ model: String) -> [UInt8] { Array(model.utf8) + [0] }

    static func versionKey(_ model: String, _ number: Int) -> [UInt8] {
        versionPrefix(model) + withUnsafeBytes(of: UInt32(number).bigEndian) { Array($0) }
    }

    static func aliasKey(_ model: String, _ alias: String) -> [UInt8] { versionPrefix(model) + Array(alias.utf8) }

    // MARK: Records in a transaction

    func model(_ name: String, in txn: MetadataTransaction) throws -> ModelRecord {
        guard let bytes = try txn.get(models, Self.modelKey(name)) else {
            throw RegistryError(.notFound, "no model named \(name)")
        }
        return try RecordCoding.decode(ModelRecord.self, bytes, what: "model \(name)")
    }

    func put(_ model: ModelRecord, in txn: MetadataTransaction) throws {
        try txn.put(models, Self.modelKey(model.name), try RecordCoding.encode(model))
    }

    func version(_ model: String, _ number: Int, in txn: MetadataTransaction) throws -> VersionRecord? {
        try txn.get(versions, Self.versionKey(model, number)).map {
            try RecordCoding.decode(VersionRecord.self, $0, what: "\(model)@\(number)")
        }
    }

    func put(_ version: VersionRecord, in txn: MetadataTransaction) throws {
        try txn.put(versions, Self.versionKey(version.model, version.version), try RecordCoding.encode(version))
    }

    func policy(of model: String, in txn: MetadataTransaction) throws -> Policy {
        try txn.get(policies, Self.modelKey(model)).map { try RecordCoding.decode(Policy.self, $0, what: "the policy of \(model)") }
            ?? Policy()
    }

    // MARK: Push

    /// Stores the tree at `directory` as the next version of `request.model` (creating the model on
    /// its first push).
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` (bad name, metadata, unsafe paths — before
    ///   anything is written), `.notFound` (a parent that does not exist), `.io`, `.conflict`.
    public func push(
        directory: String, request: PushRequest, progress: ((TransferProgress) -> Void)? = nil
    ) throws -> PushResult {
        try ModelName.validate(request.model)
        try request.validate()
        // Resolve parents first, so a bad reference fails before any work.
        let parents = try request.parents.map { try resolve(try Reference(parsing: $0)).reference }
        if let stage = request.stage, stage != .experimental {
            // Fail before any work when the gate cannot pass; re-checked in the commit transaction.
            try storeCall { try store.readMetadata { try checkPushGate(request, stage: stage, in: $0) } }
        }
        // Delta references: the first parent, else the model's latest version.
        let slice = store.config.chunker.slice
        var parentTensors: [String: StructuredChunking.ParentTensor] = [:]
        let lineageParent = try request.parents.first.map { try resolve(try Reference(parsing: $0)) }
        let previous = try? resolve(Reference(model: request.model, selector: .latest))
        if let base = lineageParent ?? previous, let manifest = try? manifest(of: base) {
            parentTensors = StructuredChunking.parentTensors(of: manifest, store: store, sliceSize: slice)
        }
        let planner = StructuredChunking.planner(sliceSize: slice, parent: parentTensors)
        let staged = try storeCall { try store.stage(directory: directory, planner: planner, progress: progress) }
        return try storeCall {
            try store.commit(staged) { txn, info in
                var result = try recordPush(
                    request, parents: parents, manifest: staged.manifest, manifestID: staged.manifestID,
                    newBytes: info.newBytes, storedBytes: info.storedBytes, in: txn)
                result.codecs = info.codecs
                return result
            }
        }
    }

    /// Records a pushed tree as the next version of `request.model` inside the transaction that
    /// commits its manifest: the version record, the model record and the audit entry.
    func recordPush(
        _ request: PushRequest, parents: [String], manifest: Manifest, manifestID: SHA256Digest, newBytes: Int64,
        storedBytes: Int64, in txn: MetadataTransaction
    ) throws -> PushResult {
        let time = try changeTime(in: txn)
        var model: ModelRecord
        if let bytes = try txn.get(models, Self.modelKey(request.model)) {
            model = try RecordCoding.decode(ModelRecord.self, bytes, what: "model \(request.model)")
        } else {
            model = ModelRecord(name: request.model, createdAt: time, createdBy: request.actor)
        }
        model.latestVersion += 1
        let stage = request.stage ?? .experimental
        if stage != .experimental { try checkPushGate(request, stage: stage, in: txn) }
        for parent in parents {
            // A parent deleted while we staged would leave dangling lineage.
            _ = try resolve(try Reference(parsing: parent), in: txn)
        }
        let record = VersionRecord(
            model: request.model, version: model.latestVersion, manifest: manifestID.hex,
            stage: stage, createdBy: request.actor, createdAt: time,
            message: request.message, metrics: request.metrics, params: request.params, tags: request.tags,
            parents: parents, datasets: request.datasets, source: request.source,
            fileCount: manifest.files.count, logicalBytes: manifest.logicalBytes,
            newBytes: newBytes, storedBytes: storedBytes)
        try put(record, in: txn)
        try put(model, in: txn)
        var details = ["manifest": record.manifest, "files": "\(record.fileCount)", "logical_bytes": "\(record.logicalBytes)", "new_bytes": "\(record.newBytes)"]
        if !parents.isEmpty { details["parents"] = parents.joined(separator: ",") }
        if !request.datasets.isEmpty { details["datasets"] = request.datasets.joined(separator: ",") }
        if let source = request.source { details["source"] = source }
        if !request.message.isEmpty { details["message"] = request.message }
        try appendAudit(
            [
                AuditDraft(
                    action: .push, model: record.model, version: record.version, target: record.reference,
                    after: stage.rawValue, details: details)
            ], actor: request.actor, time: time, in: txn)
        return PushResult(
            model: request.model, version: model.latestVersion, manifest: manifestID.hex,
            files: manifest.files.count, logicalBytes: manifest.logicalBytes,
            newBytes: newBytes, storedBytes: storedBytes)
    }

    /// Refuses a push that starts in `stage` if the model's gate for it cannot pass (a new version
    /// has no approvals yet).
    func checkPushGate(_ request: PushRequest, stage: Stage, in txn: MetadataTransaction) throws {
        let policy = try policy(of: request.model, in: txn)
        guard !policy.isEmpty else { return }
        let draft = VersionRecord(
            model: request.model, version: 0, manifest: "", stage: .experimental, createdBy: request.actor, createdAt: "",
            message: "", metrics: request.metrics, params: [:], tags: [:], parents: [], datasets: [], source: nil,
            fileCount: 0, logicalBytes: 0, newBytes: 0, storedBytes: 0)
        let missing = policy.unmet(by: draft, for: stage)
        if !missing.isEmpty {
            throw RegistryError(
                .refused, "cannot push a new version of \(request.model) into \(stage.rawValue): \(missing.joined(separator: "; "))")
        }
    }

    // MARK: Lookup

    /// The version a reference names.
    ///
    /// - Throws: ``RegistryError`` with `.notFound` naming what is missing.
    public func resolve(_ reference: Reference) throws -> VersionRecord {
        try storeCall { try store.readMetadata { try resolve(reference, in: $0) } }
    }

    func resolve(_ reference: Reference, in txn: MetadataTransaction) throws -> VersionRecord {
        let model = try self.model(reference.model, in: txn)
        switch reference.selector {
        case .latest:
            guard let last = try txn.scan(versions, prefix: Self.versionPrefix(model.name), reverse: true, limit: 1).first else {
                throw RegistryError(.notFound, "model \(model.name) has no versions")
            }
            return try RecordCoding.decode(VersionRecord.self, last.value, what: "\(model.name)@latest")
        case .number(let n):
            guard let record = try version(model.name, n, in: txn) else {
                if n <= model.latestVersion {
                    throw RegistryError(.notFound, "\(model.name)@\(n) was deleted")
                }
                throw RegistryError(.notFound, "no version \(n) of model \(model.name) (latest is \(model.latestVersion))")
            }
            return record
        case .name(let name):
            if name == Stage.production.rawValue {
                // O(1): the model's production pointer.
                guard let n = model.production, let record = try version(model.name, n, in: txn) else {
                    throw RegistryError(.notFound, "model \(model.name) has no version in production")
                }
                return record
            }
            if let stage = Stage(rawValue: name) {
                let matching = try versions(of: model.name, in: txn).filter { $0.stage == stage }
                guard let found = matching.last else {
                    throw RegistryError(.notFound, "model \(model.name) has no version in stage \(stage.rawValue)")
                }
                return found
            }
            if let bytes = try txn.get(aliases, Self.aliasKey(model.name, name)) {
                let alias = try RecordCoding.decode(AliasRecord.self, bytes, what: "alias \(model.name)@\(name)")
                guard let record = try version(model.name, alias.version, in: txn) else {
                    throw RegistryError(.corruption, "alias \(model.name)@\(name) points at missing version \(alias.version)")
                }
                return record
            }
            throw RegistryError(.notFound, "model \(model.name) has no alias or stage named \"\(name)\"")
        }
    }

    /// Every model, sorted by name.
    public func listModels() throws -> [ModelSummary] {
        try storeCall {
            try store.readMetadata { txn in
                try txn.scan(models).map { entry in
                    let model = try RecordCoding.decode(ModelRecord.self, entry.value, what: "a model")
                    let all = try versions(of: model.name, in: txn)
                    return ModelSummary(
                        model: model.name, versions: all.count, latest: all.last?.version,
                        production: model.production,
                        logicalBytes: all.reduce(0) { $0 + $1.logicalBytes }, updatedAt: all.last?.createdAt ?? model.createdAt)
                }
            }
        }
    }

    /// The versions of `model`, oldest first.
    public func listVersions(of model: String) throws -> [VersionRecord] {
        try ModelName.validate(model)
        return try storeCall {
            try store.readMetadata { txn in
                guard try txn.get(models, Self.modelKey(model)) != nil else {
                    throw RegistryError(.notFound, "no model named \(model)")
                }
                return try versions(of: model, in: txn)
            }
        }
    }

    func versions(of model: String, in txn: MetadataTransaction) throws -> [VersionRecord] {
        try txn.scan(versions, prefix: Self.versionPrefix(model)).map {
            try RecordCoding.decode(VersionRecord.self, $0.value, what: "a version of \(model)")
        }
    }

    /// The files of a version.
    public func manifest(of version: VersionRecord) throws -> Manifest {
        guard let id = SHA256Digest(hex: version.manifest) else {
            throw RegistryError(.corruption, "\(version.reference) has a malformed manifest id")
        }
        return try storeCall(context: version.reference) { try store.manifest(id) }
    }

    // MARK: Reads

    /// Writes the files of `version` under `directory`; with `selection` (globs) or `paths`, only those files.
    ///
    /// - Throws: ``RegistryError``: `.notFound` for a path not in the version, `.corruption` naming
    ///   model, version, file and chunk when stored bytes are damaged (no wrong bytes are written).
    @discardableResult
    public func pull(
        _ version: VersionRecord, to directory: String, paths: [String]? = nil, selection: FileSelection? = nil,
        progress: ((TransferProgress) -> Void)? = nil
    ) throws -> [FileEntry] {
        let files = try Self.files(of: try manifest(of: version), version: version, paths: paths, selection: selection)
        try storeCall {
            try store.restore(files, to: directory, context: "model \(version.model) version \(version.version)", progress: progress)
        }
        return files
    }

    /// The files of a version a pull writes: all, those `selection` matches, or those at `paths`.
    /// The one rule local and remote pulls share.
    ///
    /// - Throws: ``RegistryError`` with `.notFound` when the selection matches no file or a path is
    ///   not in the version.
    public static func files(
        of manifest: Manifest, version: VersionRecord, paths: [String]?, selection: FileSelection?
    ) throws -> [FileEntry] {
        var files = manifest.files
        if let selection, !selection.selectsEverything {
            files = files.filter { selection.contains($0.path) }
            guard !files.isEmpty else {
                throw RegistryError(.notFound, "no file of \(version.reference) matches \(selection)")
            }
        }
        if let paths {
            files = try paths.map { path in
                guard let file = manifest.file(path) else {
                    throw RegistryError(.notFound, "\(version.reference) has no file \(path)")
                }
                return file
            }
        }
        return files
    }

    /// The file `path` of a version and the bytes `range` (inclusive bounds, as in HTTP; an end past
    /// the file is clipped) asks for, or the whole file. The one rule local and remote reads share.
    ///
    /// - Throws: ``RegistryError``: `.notFound` for a path not in the version, `.invalidArgument` for a
    ///   range that starts past the end.
    public static func fileRange(
        in manifest: Manifest, of version: VersionRecord, path: String, range: ClosedRange<Int64>?
    ) throws -> (file: FileEntry, bytes: Range<Int64>) {
        guard let file = manifest.file(path) else {
            throw RegistryError(.notFound, "\(version.reference) has no file \(path)")
        }
        guard let range else { return (file, 0..<file.size) }
        guard range.lowerBound < file.size else {
            throw RegistryError(
                .invalidArgument, "range \(range.lowerBound)-\(range.upperBound) starts past the end of \(path) (\(file.size) bytes)")
        }
        return (file, range.lowerBound..<min(range.upperBound + 1, file.size))
    }

    /// Streams `path` of `version` (or the byte range `range`, inclusive bounds as in HTTP) to `sink`.
    public func read(
        _ version: VersionRecord, path: String, range: ClosedRange<Int64>? = nil,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let (file, bytes) = try Self.fileRange(in: try manifest(of: version), of: version, path: path, range: range)
        try storeCall {
            try store.read(file, range: bytes, context: "model \(version.model) version \(version.version)") { chunk, _ in
                try sink(chunk)
            }
        }
    }

    // MARK: Statistics and verification

    /// Store-wide figures: `logicalBytes` over all versions, `uniqueBytes` after dedup,
    /// `storedBytes` of pack files on disk.
    public func statistics() throws -> RegistryStatistics {
        let storeStats = try storeCall { try store.statistics() }
        return try storeCall {
            try store.readMetadata { txn in
                var logical: Int64 = 0
                var count = 0
                for entry in try txn.scan(versions) {
                    let record = try RecordCoding.decode(VersionRecord.self, entry.value, what: "a version")
                    logical += record.logicalBytes
                    count += 1
                }
                return RegistryStatistics(
                    models: try txn.count(models), versions: count, logicalBytes: logical,
                    uniqueBytes: storeStats.uniqueBytes, compressedBytes: storeStats.compressedBytes,
                    storedBytes: storeStats.storedBytes, chunks: storeStats.chunkCount, packs: storeStats.packCount,
                    manifests: storeStats.manifestCount, indexBytes: storeStats.indexBytes, codecs: storeStats.codecs)
            }
        }
    }

    /// Verifies the store and names, for every damaged chunk, the versions and files that use it.
    public func verify(deep: Bool, progress: ((TransferProgress) -> Void)? = nil) throws -> RegistryVerifyReport {
        let report = try storeCall { try store.verify(deep: deep, progress: progress) }
        let damaged = report.damagedChunks
        var affected: [RegistryVerifyReport.AffectedFile] = []
        if !damaged.isEmpty {
            try storeCall {
                try store.readMetadata { txn in
                    for entry in try txn.scan(versions) {
                        let record = try RecordCoding.decode(VersionRecord.self, entry.value, what: "a version")
                        guard let id = SHA256Digest(hex: record.manifest), let manifest = try? txn.manifest(id) else { continue }
                        for file in manifest.files {
                            for chunk in file.chunks where damaged.contains(chunk.id) {
                                affected.append(.init(model: record.model, version: record.version, path: file.path, chunk: chunk.id.hex))
                            }
                        }
                    }
                }
            }
        }
        return RegistryVerifyReport(store: report, affected: affected)
    }
}

/// What to record with a push.
public struct PushRequest: Sendable {
    public var model: String
    public var actor: String
    public var message: String = ""
    public var metrics: [String: Double] = [:]
    public var params: [String: String] = [:]
    public var tags: [String: String] = [:]
    /// References (`MODEL@N`, …) of the versions this one derives from.
    public var parents: [String] = []
    public var datasets: [String] = []
    public var source: String?
    public var stage: Stage?

    public init(model: String, actor: String) {
        self.model = model
        self.actor = actor
    }

    func validate() throws {
        guard !actor.isEmpty else { throw RegistryError(.invalidArgument, "the acting user must not be empty") }
        for (key, value) in metrics {
            try Self.validateKey(key, kind: "metric")
            guard value.isFinite else { throw RegistryError(.invalidArgument, "metric \(key) must be a finite number") }
        }
        for key in params.keys { try Self.validateKey(key, kind: "param") }
        for key in tags.keys { try Self.validateKey(key, kind: "tag") }
        if stage == .production || stage == .archived {
            throw RegistryError(.invalidArgument, "a push can start in experimental or staging only; use promote")
        }
    }

    static func validateKey(_ key: String, kind: String) throws {
        guard !key.isEmpty, key.utf8.count <= 128,
            key.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f && $0 != UInt8(ascii: "=") && $0 != UInt8(ascii: "<") && $0 != UInt8(ascii: ">") })
        else {
            throw RegistryError(.invalidArgument, "invalid \(kind) name \"\(key)\": use printable characters without spaces, '=', '<' or '>'")
        }
    }
}

/// What a push did.
public struct PushResult: Codable, Sendable, Equatable {
    public var model: String
    public var version: Int
    public var manifest: String
    public var files: Int
    public var logicalBytes: Int64
    public var newBytes: Int64
    public var storedBytes: Int64
    /// What each codec stored the new chunks in (raw and stored bytes per codec); nil when unknown
    /// (a server that does not report it).
    public var codecs: [Codec.Usage]? = nil

    enum CodingKeys: String, CodingKey {
        case model, version, manifest, files, codecs
        case logicalBytes = "logical_bytes"
        case newBytes = "new_bytes"
        case storedBytes = "stored_bytes"
    }
}

/// One line of `ls`: a model with its version count, latest and production version.
public struct ModelSummary: Codable, Sendable, Equatable {
    public var model: String
    public var versions: Int
    public var latest: Int?
    public var production: Int?
    public var logicalBytes: Int64
    public var updatedAt: String

    enum CodingKeys: String, CodingKey {
        case model, versions, latest, production
        case logicalBytes = "logical_bytes"
        case updatedAt = "updated_at"
    }
}

/// Store-wide figures.
public struct RegistryStatistics: Codable, Sendable, Equatable {
    public var models: Int
    public var versions: Int
    /// Sum of the sizes of every version's files.
    public var logicalBytes: Int64
    /// Raw bytes of distinct chunks.
    public var uniqueBytes: Int64
    /// Bytes of distinct chunks after compression.
    public var compressedBytes: Int64
    /// Bytes of pack files on disk.
    public var storedBytes: Int64
    public var chunks: Int
    public var packs: Int
    public var manifests: Int
    public var indexBytes: Int64
    /// Distinct chunks per codec: how many, raw and stored bytes (what each codec saved).
    public var codecs: [Codec.Usage]? = nil

    enum CodingKeys: String, CodingKey {
        case models, versions, chunks, packs, manifests
        case logicalBytes = "logical_bytes"
        case uniqueBytes = "unique_bytes"
        case compressedBytes = "compressed_bytes"
        case storedBytes = "stored_bytes"
        case codecs
        case indexBytes = "index_bytes"
    }
}

/// The store's verify report plus the model versions and files that damaged chunks belong to.
public struct RegistryVerifyReport: Sendable {
    public struct AffectedFile: Sendable, Equatable, Codable {
        public var model: String
        public var version: Int
        public var path: String
        public var chunk: String
    }

    public var store: VerifyReport
    public var affected: [AffectedFile]
}
