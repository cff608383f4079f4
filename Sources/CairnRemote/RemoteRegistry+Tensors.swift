import CairnRegistry
import CairnStore

/// Tensor pulls, tensor listings and diffs against a server: headers and tensors are fetched with
/// HTTP range requests (the server reads only the chunks each range overlaps).
extension RemoteRegistry: VersionContentReader {
    public func readRange(
        _ version: VersionRecord, file: FileEntry, range: Range<Int64>, sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws {
        if range.isEmpty { return }
        var at = range.lowerBound
        try read(version, path: file.path, range: range.lowerBound...range.upperBound - 1) { bytes in
            try sink(bytes, at)
            at += Int64(bytes.count)
        }
        guard at == range.upperBound else {
            throw RegistryError(.io, "\(file.path) of \(version.reference): asked for \(range.count) bytes, got \(at - range.lowerBound)")
        }
    }
}
