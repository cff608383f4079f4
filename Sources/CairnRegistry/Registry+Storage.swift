import CairnStore
import Digest

extension Registry {
    /// For each file of `manifest`, the bytes its distinct chunks take on disk after compression
    /// (chunks shared with other files or versions are counted in full for each file).
    public func storedBytesByFile(_ manifest: Manifest) throws -> [String: Int64] {
        let lengths = try storeCall { try store.storedLengths(manifest.files.flatMap { $0.chunks.map(\.id) }) }
        var out: [String: Int64] = [:]
        for file in manifest.files {
            out[file.path] = Set(file.chunks.map(\.id)).reduce(0) { $0 + (lengths[$1] ?? 0) }
        }
        return out
    }
}
