import CairnAPI
import CairnRegistry
import CairnStore

/// Tensor pulls, tensor listings and diffs against a server: a byte range of a file is read from
/// the local chunk cache, after fetching (and verifying) the chunks it overlaps that the cache lacks,
/// so only those chunks cross the network and later reads of them cost nothing.
extension RemoteRegistry: VersionContentReader {
    /// Streams `range` of `file` (a file of `version`) to `sink` in order, each piece with its
    /// offset in the file, read from the chunk cache once the chunks it overlaps are there (fetched
    /// and verified if not). A damaged cache pack is dropped and its chunks fetched again (up to
    /// four packs).
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` for a range outside the file, else with
    ///   the code of a failed read from the cache; ``CairnStoreError`` with `.corruption` when a
    ///   chunk the server sent does not verify; ``RemoteError`` when the server fails a fetch (see
    ///   Errors on ``RemoteRegistry``); whatever `sink` throws.
    public func readRange(
        _ version: VersionRecord,
        file: FileEntry,
        range: Range<Int64>,
        sink: (UnsafeRawBufferPointer, Int64) throws -> Void
    ) throws {
        if range.isEmpty { return }
        guard range.lowerBound >= 0, range.upperBound <= file.size else {
            throw RegistryError(
                .invalidArgument,
                "range \(range.lowerBound)-\(range.upperBound - 1) is outside \(file.path) (\(file.size) bytes)"
            )
        }
        // The chunks the range overlaps.
        let offsets = file.chunkOffsets()
        var first = 0
        while first + 1 < file.chunks.count && offsets[first + 1] <= range.lowerBound { first += 1 }
        var last = first
        while last + 1 < file.chunks.count && offsets[last + 1] < range.upperBound { last += 1 }
        let overlapping = FileEntry(
            path: file.path,
            size: offsets[last + 1] - offsets[first],
            sha256: file.sha256,
            chunks: Array(file.chunks[first...last])
        )
        try fetchIntoCache([overlapping])
        // A damaged pack in the cache is dropped and its chunks fetched again (up to four packs);
        // the read goes on from where it stopped, as `sink` already has the bytes before it.
        let context = "model \(version.model) version \(version.version)"
        var done = range.lowerBound
        var dropped = 0
        while true {
            do {
                try cacheStore().read(file, range: done..<range.upperBound, context: context) { bytes, offset in
                    try sink(bytes, offset)
                    done = offset + Int64(bytes.count)
                }
                return
            } catch let error as CairnStoreError {
                if dropped < 4, let damaged = error.damagedChunk, try cacheStore().dropPack(holding: damaged) > 0 {
                    dropped += 1
                    try fetchIntoCache([overlapping])
                    continue
                }
                throw RegistryError(error.code, error.message)
            }
        }
    }
}
