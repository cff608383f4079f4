import CairnFormats
import CairnStore
import Digest

extension Registry {
    /// The chunking plans a push uses (safetensors tensors in fixed slices, other files by content),
    /// for a client that chunks a tree itself (``Store/scan(directory:parameters:planner:progress:)``)
    /// so that its chunk ids match what a push into this store would produce.
    public static func chunkingPlanner(sliceSize: Int) -> ChunkingPlanner {
        StructuredChunking.planner(sliceSize: sliceSize)
    }

    /// The chunking plans a push uses with a parent version (delta references for the tensors the
    /// parent has with the same name, dtype and shape), for a client whose parent lives elsewhere:
    /// `read` returns bytes of the parent's files (only their safetensors headers are read).
    /// The parent is chosen as a local push chooses it: the first `--parent`, else the model's
    /// latest version.
    public static func chunkingPlanner(
        sliceSize: Int, parent manifest: Manifest, read: (FileEntry, Range<Int64>) throws -> [UInt8]
    ) -> ChunkingPlanner {
        StructuredChunking.planner(
            sliceSize: sliceSize, parent: StructuredChunking.parentTensors(of: manifest, sliceSize: sliceSize, read: read))
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
    public func push(
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
}

extension PastResolution {
    /// What a reference named at a past time (for clients that receive it over the wire).
    public init(record version: VersionRecord, stage: Stage, aliases: [String], at: String) {
        self.version = version
        self.stage = stage
        self.aliases = aliases
        self.at = at
    }
}
