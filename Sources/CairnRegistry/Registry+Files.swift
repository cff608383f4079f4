import CairnStore
import Digest

extension Registry {
    /// The files of a version: its manifest.
    ///
    /// - Throws: ``RegistryError``: `.notFound` when the manifest is not in the store, `.corruption`
    ///   when the record's manifest id is malformed or the stored manifest is damaged.
    public func manifest(of version: VersionRecord) throws -> Manifest {
        guard let id = SHA256Digest(hex: version.manifest) else {
            throw RegistryError(.corruption, "\(version.reference) has a malformed manifest id")
        }
        return try storeCall(context: version.reference) { try store.manifest(id) }
    }

    /// Writes the files of `version` under `directory`; with `selection` (globs) or `paths`, only those files.
    ///
    /// - Throws: ``RegistryError``: `.notFound` for a path not in the version, `.corruption` naming
    ///   model, version, file and chunk when stored bytes are damaged (no wrong bytes are written), `.io`.
    @discardableResult
    public func pull(
        _ version: VersionRecord,
        to directory: String,
        paths: [String]? = nil,
        selection: FileSelection? = nil,
        progress: ((TransferProgress) -> Void)? = nil
    ) throws -> [FileEntry] {
        let files = try Self.files(of: try manifest(of: version), version: version, paths: paths, selection: selection)
        try storeCall {
            try store.restore(files, to: directory, context: Self.readContext(version), progress: progress)
        }
        return files
    }

    /// The files of a version a pull writes: all, those `selection` matches, or those at `paths`.
    /// The one rule local and remote pulls share.
    ///
    /// - Throws: ``RegistryError`` with `.notFound` when the selection matches no file or a path is
    ///   not in the version.
    package static func files(
        of manifest: Manifest,
        version: VersionRecord,
        paths: [String]?,
        selection: FileSelection?
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
    package static func fileRange(
        in manifest: Manifest,
        of version: VersionRecord,
        path: String,
        range: ClosedRange<Int64>?
    ) throws -> (file: FileEntry, bytes: Range<Int64>) {
        guard let file = manifest.file(path) else {
            throw RegistryError(.notFound, "\(version.reference) has no file \(path)")
        }
        guard let range else { return (file, 0..<file.size) }
        guard range.lowerBound < file.size else {
            throw RegistryError(
                .invalidArgument,
                "range \(range.lowerBound)-\(range.upperBound) starts past the end of \(path) (\(file.size) bytes)"
            )
        }
        return (file, range.lowerBound..<min(range.upperBound + 1, file.size))
    }

    /// Streams `path` of `version` (or the byte range `range`, inclusive bounds as in HTTP) to `sink`,
    /// verified, reading only the chunks the range overlaps.
    ///
    /// - Throws: ``RegistryError``: as ``fileRange(in:of:path:range:)``, `.corruption` naming the
    ///   chunk when stored bytes are damaged (nothing wrong reaches `sink`), or what `sink` throws.
    public func read(
        _ version: VersionRecord,
        path: String,
        range: ClosedRange<Int64>? = nil,
        sink: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        let (file, bytes) = try Self.fileRange(in: try manifest(of: version), of: version, path: path, range: range)
        try storeCall {
            try store.read(file, range: bytes, context: Self.readContext(version)) { chunk, _ in
                try sink(chunk)
            }
        }
    }

    /// How reads name a version in their errors: `model M version N`.
    static func readContext(_ version: VersionRecord) -> String {
        "model \(version.model) version \(version.version)"
    }
}

extension Registry: VersionContentReader {
    /// Reads from the store, touching only the chunks that overlap `range`.
    ///
    /// - Throws: ``RegistryError`` with `.corruption` naming the chunk when stored bytes are damaged,
    ///   `.invalidArgument` for a range outside the file, or what `sink` throws.
    public func readRange(
        _ version: VersionRecord,
        file: FileEntry,
        range: Range<Int64>,
        sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws {
        try storeCall { try store.read(file, range: range, context: Self.readContext(version), sink: sink) }
    }
}
