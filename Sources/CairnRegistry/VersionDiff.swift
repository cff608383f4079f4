/// What changed between two versions: metadata, files, the tensors of safetensors files, and the
/// store bytes they share. Field names are snake_case (`diff --json`).
public struct VersionDiff: Codable, Sendable, Equatable {
    /// One of the two versions.
    public struct Side: Codable, Sendable, Equatable {
        /// `model@N`.
        public var reference: String
        /// The model's name.
        public var model: String
        /// The version's number.
        public var version: Int
        /// Its stage now.
        public var stage: Stage
        /// Who pushed it.
        public var createdBy: String
        /// When (ISO 8601 UTC).
        public var createdAt: String
        /// Its push message.
        public var message: String
        /// Its manifest's id (hex SHA-256).
        public var manifest: String
        /// How many files it has.
        public var fileCount: Int
        /// The sum of its file sizes.
        public var logicalBytes: Int64

        enum CodingKeys: String, CodingKey {
            case reference, model, version, stage, message, manifest
            case createdBy = "created_by"
            case createdAt = "created_at"
            case fileCount = "file_count"
            case logicalBytes = "logical_bytes"
        }

        init(_ r: VersionRecord) {
            reference = r.reference
            model = r.model
            version = r.version
            stage = r.stage
            createdBy = r.createdBy
            createdAt = r.createdAt
            message = r.message
            manifest = r.manifest
            fileCount = r.fileCount
            logicalBytes = r.logicalBytes
        }
    }

    /// A metric of either version: its values and `to - from` when both have it.
    public struct MetricChange: Codable, Sendable, Equatable {
        /// The metric's name.
        public var name: String
        /// Its value in the first version, if it has it.
        public var from: Double?
        /// Its value in the second version, if it has it.
        public var to: Double?
        /// `to - from`, when both have it.
        public var delta: Double?

        package init(name: String, from: Double?, to: Double?, delta: Double?) {
            self.name = name
            self.from = from
            self.to = to
            self.delta = delta
        }

        /// Encodes every field, absent values as null.
        ///
        /// - Throws: What `encoder` throws (`EncodingError`).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(from, forKey: .from)
            try c.encode(to, forKey: .to)
            try c.encode(delta, forKey: .delta)
        }
    }

    /// A key whose value differs: nil `from` means added, nil `to` removed.
    public struct ValueChange: Codable, Sendable, Equatable {
        /// The key.
        public var name: String
        /// Its value in the first version (nil: added).
        public var from: String?
        /// Its value in the second version (nil: removed).
        public var to: String?

        package init(name: String, from: String?, to: String?) {
            self.name = name
            self.from = from
            self.to = to
        }

        /// Encodes every field, absent values as null.
        ///
        /// - Throws: What `encoder` throws (`EncodingError`).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            try c.encode(from, forKey: .from)
            try c.encode(to, forKey: .to)
        }
    }

    /// The stages of the two versions.
    public struct StageChange: Codable, Sendable, Equatable {
        /// The first version's stage.
        public var from: Stage
        /// The second version's stage.
        public var to: Stage
        /// Whether they differ.
        public var changed: Bool

        package init(from: Stage, to: Stage, changed: Bool) {
            self.from = from
            self.to = to
            self.changed = changed
        }
    }

    /// How the lineage differs: parents and datasets only one version has, and the source run.
    public struct LineageChange: Codable, Sendable, Equatable {
        /// Parents of the second version only.
        public var parentsAdded: [String]
        /// Parents of the first version only.
        public var parentsRemoved: [String]
        /// Datasets of the second version only.
        public var datasetsAdded: [String]
        /// Datasets of the first version only.
        public var datasetsRemoved: [String]
        /// Set when the source run differs.
        public var source: ValueChange?

        enum CodingKeys: String, CodingKey {
            case source
            case parentsAdded = "parents_added"
            case parentsRemoved = "parents_removed"
            case datasetsAdded = "datasets_added"
            case datasetsRemoved = "datasets_removed"
        }

        /// Encodes every field, absent values as null.
        ///
        /// - Throws: What `encoder` throws (`EncodingError`).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(parentsAdded, forKey: .parentsAdded)
            try c.encode(parentsRemoved, forKey: .parentsRemoved)
            try c.encode(datasetsAdded, forKey: .datasetsAdded)
            try c.encode(datasetsRemoved, forKey: .datasetsRemoved)
            try c.encode(source, forKey: .source)
        }

        /// Whether the lineage is the same.
        public var isEmpty: Bool {
            parentsAdded.isEmpty && parentsRemoved.isEmpty && datasetsAdded.isEmpty && datasetsRemoved.isEmpty
                && source == nil
        }
    }

    /// How the versions' metadata differ.
    public struct Metadata: Codable, Sendable, Equatable {
        /// Every metric of either version, by name.
        public var metrics: [MetricChange]
        /// Params that differ, by name.
        public var params: [ValueChange]
        /// Tags that differ, by name.
        public var tags: [ValueChange]
        /// The two stages.
        public var stage: StageChange
        /// How the lineage differs.
        public var lineage: LineageChange
    }

    /// A file only one version has.
    public struct FileSummary: Codable, Sendable, Equatable {
        /// Its path.
        public var path: String
        /// Its size in bytes.
        public var size: Int64
        /// Its content's SHA-256 (hex).
        public var sha256: String
    }

    /// A file at the same path in both versions with different content.
    public struct FileChange: Codable, Sendable, Equatable {
        /// Its path.
        public var path: String
        /// Its size in the first version.
        public var fromSize: Int64
        /// Its size in the second version.
        public var toSize: Int64
        /// Its SHA-256 in the first version.
        public var fromSHA256: String
        /// Its SHA-256 in the second version.
        public var toSHA256: String

        enum CodingKeys: String, CodingKey {
            case path
            case fromSize = "from_size"
            case toSize = "to_size"
            case fromSHA256 = "from_sha256"
            case toSHA256 = "to_sha256"
        }
    }

    /// How the versions' files differ, matched by path.
    public struct Files: Codable, Sendable, Equatable {
        /// Files of the second version only.
        public var added: [FileSummary]
        /// Files of the first version only.
        public var removed: [FileSummary]
        /// Files of both whose content differs.
        public var changed: [FileChange]
        /// Paths of files with the same content in both.
        public var unchanged: [String]
    }

    /// A tensor only one version has.
    public struct TensorSummary: Codable, Sendable, Equatable {
        /// The path of the file holding it.
        public var file: String
        /// Its name.
        public var name: String
        /// Its safetensors dtype (`BF16`, …).
        public var dtype: String
        /// Its dimensions.
        public var shape: [Int]
        /// Its byte count.
        public var bytes: Int64
    }

    /// A tensor in both versions whose bytes differ.
    public struct TensorChange: Codable, Sendable, Equatable {
        /// The tensor's name.
        public var name: String
        /// Its file in the first version.
        public var fromFile: String
        /// Its file in the second version.
        public var toFile: String
        /// Its dtype in the first version.
        public var fromDtype: String
        /// Its dtype in the second version.
        public var toDtype: String
        /// Its shape in the first version.
        public var fromShape: [Int]
        /// Its shape in the second version.
        public var toShape: [Int]
        /// Its byte count in the first version.
        public var fromBytes: Int64
        /// Its byte count in the second version.
        public var toBytes: Int64
        /// Whether the dtype differs.
        public var dtypeChanged: Bool
        /// Whether the shape differs.
        public var shapeChanged: Bool

        enum CodingKeys: String, CodingKey {
            case name
            case fromFile = "from_file"
            case toFile = "to_file"
            case fromDtype = "from_dtype"
            case toDtype = "to_dtype"
            case fromShape = "from_shape"
            case toShape = "to_shape"
            case fromBytes = "from_bytes"
            case toBytes = "to_bytes"
            case dtypeChanged = "dtype_changed"
            case shapeChanged = "shape_changed"
        }
    }

    /// A tensor with the same bytes in both versions, in a different file.
    public struct TensorMove: Codable, Sendable, Equatable {
        /// The tensor's name.
        public var name: String
        /// Its file in the first version.
        public var fromFile: String
        /// Its file in the second version.
        public var toFile: String

        enum CodingKeys: String, CodingKey {
            case name
            case fromFile = "from_file"
            case toFile = "to_file"
        }
    }

    /// Tensors of the safetensors files of both versions, matched by name: first within the same
    /// path, then (for shards re-cut differently) within the same directory.
    public struct Tensors: Codable, Sendable, Equatable {
        /// Tensors of the second version only.
        public var added: [TensorSummary]
        /// Tensors of the first version only.
        public var removed: [TensorSummary]
        /// Tensors of both whose bytes differ.
        public var changed: [TensorChange]
        /// Tensors with the same bytes that moved to another file.
        public var moved: [TensorMove]
        /// Tensors with the same bytes in the same file of both versions.
        public var unchanged: Int
        /// Bytes of the tensors that are unchanged or moved.
        public var unchangedBytes: Int64
        /// Tensors whose change was decided by comparing their chunk ids (no data read).
        public var comparedByChunks: Int
        /// Tensors whose change was decided by reading and hashing their bytes.
        public var comparedByHash: Int

        enum CodingKeys: String, CodingKey {
            case added, removed, changed, moved, unchanged
            case unchangedBytes = "unchanged_bytes"
            case comparedByChunks = "compared_by_chunks"
            case comparedByHash = "compared_by_hash"
        }
    }

    /// Raw bytes of distinct chunks: in both versions, or in only one.
    public struct Storage: Codable, Sendable, Equatable {
        /// Raw bytes of the chunks both versions use.
        public var sharedBytes: Int64
        /// Raw bytes of the chunks only the first version uses.
        public var uniqueFromBytes: Int64
        /// Raw bytes of the chunks only the second version uses.
        public var uniqueToBytes: Int64
        /// How many chunks both use.
        public var sharedChunks: Int
        /// How many chunks only the first uses.
        public var uniqueFromChunks: Int
        /// How many chunks only the second uses.
        public var uniqueToChunks: Int

        enum CodingKeys: String, CodingKey {
            case sharedBytes = "shared_bytes"
            case uniqueFromBytes = "unique_from_bytes"
            case uniqueToBytes = "unique_to_bytes"
            case sharedChunks = "shared_chunks"
            case uniqueFromChunks = "unique_from_chunks"
            case uniqueToChunks = "unique_to_chunks"
        }
    }

    /// The first version.
    public var from: Side
    /// The second version.
    public var to: Side
    /// How their metadata differ.
    public var metadata: Metadata
    /// How their files differ.
    public var files: Files
    /// How the tensors of their safetensors files differ.
    public var tensors: Tensors
    /// The store bytes they share.
    public var storage: Storage
}
