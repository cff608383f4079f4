import Foundation

/// Builds safetensors files: the 8-byte length, the JSON header, then the tensors' bytes.
///
/// The header is compact JSON: `__metadata__` first (keys sorted), then the tensors in the order
/// given, `{"dtype":"BF16","shape":[a,b],"data_offsets":[begin,end]}`, laid out back to back in that
/// order from offset 0 of the data section. It is padded with spaces so that the data section starts
/// at a multiple of 8 bytes (as the reference implementation writes it).
///
/// To write a file without holding its tensors in memory, write ``header(for:metadata:)``'s bytes
/// at offset 0 and each tensor's bytes at its `fileRange` in the returned header:
///
/// ```swift
/// let entries = selected.map(SafetensorsEncoder.Entry.init)      // from a parsed header
/// let (prefix, layout) = try SafetensorsEncoder.header(for: entries, metadata: original.metadata)
/// // write `prefix` at 0, then each tensor's bytes at layout.tensor(named: name)!.fileRange
/// ```
public enum SafetensorsEncoder {
    /// A tensor to write: its name, dtype and shape (its byte count follows from them).
    public struct Entry: Sendable, Equatable {
        /// The tensor's name (not `__metadata__`, and unique in a file).
        public var name: String
        /// The type of its elements.
        public var dtype: SafetensorsDType
        /// Its dimensions (empty for a scalar).
        public var shape: [Int]

        /// A tensor of `dtype` and `shape` named `name`.
        public init(name: String, dtype: SafetensorsDType, shape: [Int]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
        }

        /// The same name, dtype and shape as a tensor of a parsed header.
        public init(_ tensor: SafetensorsHeader.Tensor) {
            self.init(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape)
        }

        /// Element count × dtype size, or nil when it overflows or a dimension is negative.
        public var byteCount: Int? {
            var count = dtype.size
            for d in shape {
                guard d >= 0 else { return nil }
                let (product, overflow) = count.multipliedReportingOverflow(by: d)
                if overflow { return nil }
                count = product
            }
            return count
        }
    }

    /// The first bytes of a file holding `entries` in that order (length, JSON header, padding),
    /// and that header as the parser sees it (each tensor's `fileRange` is where its bytes go).
    ///
    /// - Throws: ``SafetensorsError`` for a duplicate name, a tensor named `__metadata__`, a negative
    ///   dimension or a tensor too large to address.
    public static func header(
        for entries: [Entry],
        metadata: [String: String]?
    ) throws -> (bytes: [UInt8], header: SafetensorsHeader) {
        var json = "{"
        var first = true
        if let metadata {
            json += "\"__metadata__\":{"
            for (i, key) in metadata.keys.sorted(by: { $0.utf8.lexicographicallyPrecedes($1.utf8) }).enumerated() {
                if i > 0 { json += "," }
                json += quoted(key) + ":" + quoted(metadata[key]!)
            }
            json += "}"
            first = false
        }
        var names = Set<String>()
        var offset = 0
        for entry in entries {
            guard entry.name != "__metadata__" else { throw SafetensorsError("a tensor cannot be named __metadata__") }
            guard names.insert(entry.name).inserted else {
                throw SafetensorsError("tensor \"\(entry.name)\" appears twice")
            }
            guard let count = entry.byteCount else {
                throw SafetensorsError("tensor \"\(entry.name)\": shape \(entry.shape) is negative or too large")
            }
            let (end, overflow) = offset.addingReportingOverflow(count)
            guard !overflow else { throw SafetensorsError("tensor \"\(entry.name)\": the data section is too large") }
            if !first { json += "," }
            first = false
            json += quoted(entry.name) + ":{\"dtype\":\"" + entry.dtype.rawValue + "\",\"shape\":["
            json += entry.shape.map(String.init).joined(separator: ",")
            json += "],\"data_offsets\":[\(offset),\(end)]}"
            offset = end
        }
        json += "}"
        var headerBytes = Array(json.utf8)
        headerBytes.append(contentsOf: repeatElement(0x20, count: (8 - headerBytes.count % 8) % 8))
        guard headerBytes.count <= SafetensorsHeader.maximumHeaderLength else {
            throw SafetensorsError(
                "header of \(headerBytes.count) bytes exceeds the limit of \(SafetensorsHeader.maximumHeaderLength) bytes"
            )
        }
        var bytes = [UInt8]()
        bytes.reserveCapacity(8 + headerBytes.count)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { bytes.append(contentsOf: $0) }
        bytes += headerBytes
        let fileSize = Int64(bytes.count) + Int64(offset)
        // Parse it back: the layout callers use is exactly what any reader of the file will see.
        let header = try SafetensorsHeader.parse(headerBytes: headerBytes, fileSize: fileSize)
        return (bytes, header)
    }

    /// A whole file in memory: `tensors` (entry and bytes) in that order, with `metadata`.
    ///
    /// - Throws: ``SafetensorsError`` as ``header(for:metadata:)``, or when a tensor's bytes do not
    ///   match its shape and dtype.
    public static func file(
        _ tensors: [(entry: Entry, data: [UInt8])],
        metadata: [String: String]? = nil
    ) throws -> [UInt8] {
        for (entry, data) in tensors where entry.byteCount != data.count {
            throw SafetensorsError(
                "tensor \"\(entry.name)\": shape \(entry.shape) × \(entry.dtype.rawValue) needs \(entry.byteCount.map(String.init) ?? "too many") bytes, got \(data.count)"
            )
        }
        var out = try header(for: tensors.map(\.entry), metadata: metadata).bytes
        for (_, data) in tensors { out += data }
        return out
    }

    /// `string` as a JSON string literal (quotes, backslashes and control characters escaped; other
    /// characters as UTF-8).
    static func quoted(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}
