import CairnStore
import Digest

extension Registry {
    // MARK: Pushing a directory

    /// Stores the tree at `directory` as the next version of `request.model` (creating the model on
    /// its first push). Safetensors files are cut at tensor boundaries, with delta references to the
    /// tensors of the first parent (else the model's latest version); other files by content.
    /// `progress` hears of the bytes read and stored.
    ///
    /// - Throws: ``RegistryError``: `.invalidArgument` (bad name, metadata, unsafe paths — before
    ///   anything is written), `.notFound` (a parent that does not exist), `.refused` (the model's
    ///   gate for a push into staging), `.io`, `.conflict`.
    public func push(
        directory: String,
        request: PushRequest,
        progress: ((TransferProgress) -> Void)? = nil
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
                    request,
                    parents: parents,
                    manifest: staged.manifest,
                    manifestID: staged.manifestID,
                    newBytes: info.newBytes,
                    storedBytes: info.storedBytes,
                    in: txn
                )
                result.codecs = info.codecs
                return result
            }
        }
    }

    // MARK: Pushing a manifest (the server side of a remote push)

    /// The chunking plans a push uses (safetensors tensors in fixed slices, other files by content),
    /// for a client that chunks a tree itself (``Store/scan(directory:parameters:planner:progress:control:onRound:)``)
    /// so that its chunk ids match what a push into this store would produce.
    package static func chunkingPlanner(sliceSize: Int) -> ChunkingPlanner {
        StructuredChunking.planner(sliceSize: sliceSize)
    }

    /// The chunking plans a push uses with a parent version (delta references for the tensors the
    /// parent has with the same name, dtype and shape), for a client whose parent lives elsewhere:
    /// `read` returns bytes of the parent's files (only their safetensors headers are read).
    /// The parent is chosen as a local push chooses it: the first `--parent`, else the model's
    /// latest version.
    package static func chunkingPlanner(
        sliceSize: Int,
        parent manifest: Manifest,
        read: (FileEntry, Range<Int64>) throws -> [UInt8]
    ) -> ChunkingPlanner {
        StructuredChunking.planner(
            sliceSize: sliceSize,
            parent: StructuredChunking.parentTensors(of: manifest, sliceSize: sliceSize, read: read)
        )
    }

    /// Registers `manifest` as the next version of `request.model`: the server side of a remote
    /// push. Its chunks were uploaded before, into `upload` (staged, committed here in the same
    /// transaction) or stored on their own (``Store/storeChunks(bundle:compressRaw:onVerified:)``).
    ///
    /// One index transaction indexes the upload's chunks, checks that every chunk the manifest
    /// references is indexed, stores the manifest and records the version exactly as
    /// ``push(directory:request:progress:)`` does (metadata, lineage, gates for the initial stage,
    /// audit entry). With an upload, `new_bytes` and `stored_bytes` are what its chunks added;
    /// without, the `newBytes` and `storedBytes` given (what earlier uploads reported).
    ///
    /// - Throws: ``MissingChunksError`` (nothing recorded; upload those chunks and retry),
    ///   ``RegistryError``: `.invalidArgument` (bad name, metadata or manifest), `.notFound` (a
    ///   parent), `.refused` (a gate for the initial stage).
    package func push(
        manifest: Manifest,
        request: PushRequest,
        upload: ChunkUpload? = nil,
        newBytes: Int64 = 0,
        storedBytes: Int64 = 0
    ) throws -> PushResult {
        try ModelName.validate(request.model)
        try request.validate()
        for file in manifest.files { try storeCall { try RelativePath.validate(file.path) } }
        let parents = try request.parents.map { try resolve(try Reference(parsing: $0)).reference }
        if let stage = request.stage, stage != .experimental {
            // Fail before the upload is committed when the gate cannot pass.
            try storeCall { try store.readMetadata { try checkPushGate(request, stage: stage, in: $0) } }
        }
        let logical = manifest.logicalBytes
        let record = { (txn: MetadataTransaction, info: CommitInfo) throws -> PushResult in
            try self.recordPush(
                request,
                parents: parents,
                manifest: manifest,
                manifestID: info.manifestID,
                newBytes: upload == nil ? min(max(newBytes, 0), logical) : info.newBytes,
                storedBytes: upload == nil ? max(storedBytes, 0) : info.storedBytes,
                in: txn
            )
        }
        return try storeCall {
            if let upload { return try upload.commit(manifest: manifest, record) }
            return try store.commit(manifest: manifest, record)
        }
    }

    // MARK: Recording a push

    /// Records a pushed tree as the next version of `request.model` inside the transaction that
    /// commits its manifest: the version record, the model record and the audit entry.
    func recordPush(
        _ request: PushRequest,
        parents: [String],
        manifest: Manifest,
        manifestID: SHA256Digest,
        newBytes: Int64,
        storedBytes: Int64,
        in txn: MetadataTransaction
    ) throws -> PushResult {
        guard !manifest.files.isEmpty || request.allowEmpty else {
            throw RegistryError(
                .invalidArgument,
                "the pushed tree holds no files, and an empty version was not asked for; nothing was stored"
            )
        }
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
            model: request.model,
            version: model.latestVersion,
            manifest: manifestID.hex,
            stage: stage,
            createdBy: request.actor,
            createdAt: time,
            message: request.message,
            metrics: request.metrics,
            params: request.params,
            tags: request.tags,
            parents: parents,
            datasets: request.datasets,
            source: request.source,
            fileCount: manifest.files.count,
            logicalBytes: manifest.logicalBytes,
            newBytes: newBytes,
            storedBytes: storedBytes
        )
        try put(record, in: txn)
        try put(model, in: txn)
        var details = [
            "manifest": record.manifest, "files": "\(record.fileCount)", "logical_bytes": "\(record.logicalBytes)",
            "new_bytes": "\(record.newBytes)",
        ]
        if !parents.isEmpty { details["parents"] = parents.joined(separator: ",") }
        if !request.datasets.isEmpty { details["datasets"] = request.datasets.joined(separator: ",") }
        if let source = request.source { details["source"] = source }
        if !request.message.isEmpty { details["message"] = request.message }
        try appendAudit(
            [
                AuditDraft(
                    action: .push,
                    model: record.model,
                    version: record.version,
                    target: record.reference,
                    after: stage.rawValue,
                    details: details
                )
            ],
            actor: request.actor,
            time: time,
            in: txn
        )
        return PushResult(
            model: request.model,
            version: model.latestVersion,
            manifest: manifestID.hex,
            files: manifest.files.count,
            logicalBytes: manifest.logicalBytes,
            newBytes: newBytes,
            storedBytes: storedBytes
        )
    }

    /// Refuses a push that starts in `stage` if the model's gate for it cannot pass (a new version
    /// has no approvals yet).
    func checkPushGate(_ request: PushRequest, stage: Stage, in txn: MetadataTransaction) throws {
        let policy = try policy(of: request.model, in: txn)
        guard !policy.isEmpty else { return }
        let draft = VersionRecord(
            model: request.model,
            version: 0,
            manifest: "",
            stage: .experimental,
            createdBy: request.actor,
            createdAt: "",
            message: "",
            metrics: request.metrics,
            params: [:],
            tags: [:],
            parents: [],
            datasets: [],
            source: nil,
            fileCount: 0,
            logicalBytes: 0,
            newBytes: 0,
            storedBytes: 0
        )
        let missing = policy.unmet(by: draft, for: stage)
        if !missing.isEmpty {
            throw RegistryError(
                .refused,
                "cannot push a new version of \(request.model) into \(stage.rawValue): \(missing.joined(separator: "; "))"
            )
        }
    }
}

/// What to record with a push: the model, the acting user and the version's metadata.
///
/// ```swift
/// var request = PushRequest(model: "llama-support", actor: "alice")
/// request.metrics = ["eval_loss": 1.83]
/// request.parents = ["llama-base@3"]
/// ```
public struct PushRequest: Sendable {
    /// The model to push a version of (created by its first push).
    public var model: String
    /// Who pushes (recorded as the version's creator).
    public var actor: String
    /// What the version is (empty for none).
    public var message: String = ""
    /// Metrics (`eval_loss` → 1.83): finite numbers, names without spaces, `=`, `<` or `>`.
    public var metrics: [String: Double] = [:]
    /// Parameters (`lr` → `3e-4`).
    public var params: [String: String] = [:]
    /// Tags (`dataset` → `tickets-v7`).
    public var tags: [String: String] = [:]
    /// References (`MODEL@N`, …) of the versions this one derives from.
    public var parents: [String] = []
    /// Ids of the datasets the version was trained on.
    public var datasets: [String] = []
    /// The run that produced it (a URI).
    public var source: String?
    /// The stage to start in: experimental (the default) or staging (through its gate).
    public var stage: Stage?
    /// Whether a tree with no files may become a version (refused otherwise: an empty directory
    /// pushed by mistake would become a version that pulls nothing).
    public var allowEmpty = false

    /// A push of a version of `model` by `actor`, with no metadata yet.
    public init(model: String, actor: String) {
        self.model = model
        self.actor = actor
    }

    func validate() throws {
        guard !actor.isEmpty else { throw RegistryError(.invalidArgument, "the acting user must not be empty") }
        for (key, value) in metrics {
            try Names.validateKey(key, kind: "metric")
            guard value.isFinite else { throw RegistryError(.invalidArgument, "metric \(key) must be a finite number") }
        }
        for key in params.keys { try Names.validateKey(key, kind: "param") }
        for key in tags.keys { try Names.validateKey(key, kind: "tag") }
        if stage == .production || stage == .archived {
            throw RegistryError(.invalidArgument, "a push can start in experimental or staging only; use promote")
        }
    }
}

/// What a push did (`push --json`).
public struct PushResult: Codable, Sendable, Equatable {
    /// The model pushed to.
    public var model: String
    /// The new version's number.
    public var version: Int
    /// Its manifest's id (hex SHA-256).
    public var manifest: String
    /// How many files it has.
    public var files: Int
    /// The sum of its file sizes.
    public var logicalBytes: Int64
    /// Raw bytes of the chunks the push added to the store (what was not there already).
    public var newBytes: Int64
    /// Bytes on disk the push added (new chunks after compression).
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

/// A push's result with, for a remote push, the bytes of chunk data sent over the wire.
public struct PushReport: Encodable, Sendable {
    /// What the push did.
    public var result: PushResult
    /// Bytes of chunk bundles uploaded (nil for a local push).
    public var transferredBytes: Int64?

    package init(result: PushResult, transferredBytes: Int64?) {
        self.result = result
        self.transferredBytes = transferredBytes
    }

    enum CodingKeys: String, CodingKey {
        case transferredBytes = "transferred_bytes"
    }

    /// The fields of ``result``, plus `transferred_bytes` for a remote push.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
    public func encode(to encoder: any Encoder) throws {
        try result.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        if let transferredBytes { try c.encode(transferredBytes, forKey: .transferredBytes) }
    }
}
