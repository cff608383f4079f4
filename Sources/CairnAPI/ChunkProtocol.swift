import Digest

// The pieces of the chunk protocol (docs/http-api.md, "The chunk protocol") that are not JSON
// records of the registry: id lists and uploads.

/// Binary lists of chunk ids (`POST /v1/chunks/missing`, `POST /v1/chunks/fetch`): 32 bytes each.
public enum ChunkIDList {
    /// The ids back to back, 32 bytes each.
    public static func encode(_ ids: [SHA256Digest]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: ids.count * 32)
        out.withUnsafeMutableBytes { raw in
            for (i, id) in ids.enumerated() { id.store(to: raw.baseAddress! + i * 32) }
        }
        return out
    }

    /// Decodes a list; nil when its length is not a multiple of 32.
    public static func decode(_ b: UnsafeRawBufferPointer) -> [SHA256Digest]? {
        guard b.count % 32 == 0 else { return nil }
        return (0..<b.count / 32).map {
            SHA256Digest(bytes: UnsafeRawBufferPointer(rebasing: b[$0 * 32..<$0 * 32 + 32]))
        }
    }
}

/// `POST /v1/uploads`: an upload that stages chunks until a version commits them.
public struct UploadCreated: Codable, Sendable {
    /// The upload's id.
    public var upload: String

    /// The answer naming upload `upload`.
    public init(upload: String) { self.upload = upload }
}
