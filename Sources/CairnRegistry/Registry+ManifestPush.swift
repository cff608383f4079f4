import CairnStore
import Digest

extension Registry {
    /// The chunking plans a push uses (safetensors tensors in fixed slices, other files by content),
    /// for a client that chunks a tree itself (``Store/scan(directory:parameters:planner:progress:)``)
    /// so that its chunk ids match what a push into this store would produce.
    public static func chunkingPlanner(sliceSize: Int) -> ChunkingPlanner {
        StructuredChunking.planner(sliceSize: sliceSize)
    }

    /// Registers `manifest`, whose chunks were stored earlier (``Store/storeChunks(bundle:)``), as
    /// the next version of `request.model`: the server side of a remote push.
    ///
    /// One index transaction checks that every chunk the manifest references is indexed, stores the
    /// manifest and records the version exactly as ``push(directory:request:progress:)`` does
    /// (metadata, lineage, gates for the initial stage, audit entry). `newBytes` and `storedBytes`
    /// are what the chunk uploads of this push added, as reported to the uploader.
    ///
    /// - Throws: ``MissingChunksError`` (nothing recorded; upload those chunks and retry),
    ///   ``RegistryError``: `.invalidArgument` (bad name, metadata or manifest), `.notFound` (a
    ///   parent), `.refused` (a gate for the initial stage).
    public func push(
        manifest: Manifest,
        request: PushRequest,
        newBytes: Int64 = 0,
        storedBytes: Int64 = 0
    ) throws
        -> PushResult
    {
        try ModelName.validate(request.model)
        try request.validate()
        for file in manifest.files { try storeCall { try RelativePath.validate(file.path) } }
        let parents = try request.parents.map { try resolve(try Reference(parsing: $0)).reference }
        let logical = manifest.logicalBytes
        let newBytes = min(max(newBytes, 0), logical)
        let storedBytes = max(storedBytes, 0)
        return try storeCall {
            try store.commit(manifest: manifest) { txn, info in
                try recordPush(
                    request,
                    parents: parents,
                    manifest: manifest,
                    manifestID: info.manifestID,
                    newBytes: newBytes,
                    storedBytes: storedBytes,
                    in: txn
                )
            }
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
