import Foundation

/// The shard index of a sharded safetensors model (`model.safetensors.index.json`):
/// `{"metadata": {"total_size": N, ...}, "weight_map": {"tensor name": "shard file name", ...}}`.
/// Shard file names are relative to the index's directory.
public struct SafetensorsIndex: Sendable, Equatable {
    /// Tensor name → shard file name.
    public var weightMap: [String: String]

    /// Whether `path` names a shard index (`*.safetensors.index.json`).
    public static func isIndex(_ path: String) -> Bool {
        path.hasSuffix(".safetensors.index.json")
    }

    /// Parses an index.
    ///
    /// - Throws: ``SafetensorsError`` when it is not a JSON object with a `weight_map` of strings.
    public static func parse(_ bytes: some Collection<UInt8>) throws -> SafetensorsIndex {
        let object = try topLevel(bytes)
        return SafetensorsIndex(weightMap: try weightMap(of: object))
    }

    /// The index rewritten for a subset of tensors: `weight_map` replaced by `weightMap`, and
    /// `metadata.total_size` (if the index has a `metadata` object) set to `totalSize`; everything
    /// else kept. Pretty-printed with sorted keys, as the Hugging Face libraries write it.
    ///
    /// - Throws: ``SafetensorsError`` when the original is not a valid index.
    public static func rewrite(
        _ bytes: some Collection<UInt8>,
        weightMap: [String: String],
        totalSize: Int64
    ) throws -> [UInt8] {
        var object = try topLevel(bytes)
        _ = try Self.weightMap(of: object)
        object["weight_map"] = weightMap
        if var metadata = object["metadata"] as? [String: Any] {
            metadata["total_size"] = NSNumber(value: totalSize)
            object["metadata"] = metadata
        }
        var data = try JSONSerialization.data(
            withJSONObject: object,
            options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        )
        data.append(UInt8(ascii: "\n"))
        return Array(data)
    }

    private static func topLevel(_ bytes: some Collection<UInt8>) throws -> [String: Any] {
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(bytes), options: [])
        } catch {
            throw SafetensorsError("index is not valid JSON")
        }
        guard let dictionary = object as? [String: Any] else { throw SafetensorsError("index is not a JSON object") }
        return dictionary
    }

    private static func weightMap(of object: [String: Any]) throws -> [String: String] {
        guard let map = object["weight_map"] as? [String: Any] else {
            throw SafetensorsError("index has no weight_map object")
        }
        var out: [String: String] = [:]
        for (name, file) in map {
            guard let file = file as? String else {
                throw SafetensorsError("weight_map entry \"\(name)\" is not a file name")
            }
            out[name] = file
        }
        return out
    }
}
