import Foundation

/// The parsed, validated header of a safetensors file: where each tensor's bytes are.
///
/// Layout of the format: an 8-byte little-endian header length N, N bytes of JSON
/// (`{"__metadata__": {...}, "name": {"dtype": "BF16", "shape": [a, b], "data_offsets": [begin, end]}, ...}`),
/// then the data section; offsets are relative to its start (byte 8 + N).
///
/// ```swift
/// let n = try SafetensorsHeader.headerLength(firstEightBytes, fileSize: size)
/// let header = try SafetensorsHeader.parse(headerBytes: bytes[8..<8 + n], fileSize: size)
/// for tensor in header.tensors { print(tensor.name, tensor.fileRange) }
/// ```
///
/// ``read(fileSize:_:)`` does both through a closure that reads byte ranges of the file.
public struct SafetensorsHeader: Sendable, Equatable {
    /// One tensor of the header: its name, element type, shape and where its bytes are.
    public struct Tensor: Sendable, Equatable {
        /// The tensor's name (a key of the JSON header).
        public var name: String
        /// The type of its elements.
        public var dtype: SafetensorsDType
        /// Its dimensions (empty for a scalar).
        public var shape: [Int]
        /// Offsets relative to the data section, as stored in the header.
        public var dataOffsets: Range<Int64>
        /// The tensor's bytes in the file.
        public var fileRange: Range<Int64>
        /// The number of bytes of its data (element count × dtype size).
        public var byteCount: Int64 { fileRange.upperBound - fileRange.lowerBound }
    }

    /// The largest header accepted (the reference implementation's limit is 100 MB).
    public static let maximumHeaderLength = 100_000_000

    /// N: the JSON header's length.
    public var headerLength: Int
    /// Where the data section starts: 8 + N.
    public var dataStart: Int64 { 8 + Int64(headerLength) }
    /// Tensors in the order of their offsets.
    public var tensors: [Tensor]
    /// The `__metadata__` map, if present.
    public var metadata: [String: String]?

    /// Reads N from the first 8 bytes and checks it against the limits and the file size.
    ///
    /// - Throws: ``SafetensorsError`` when fewer than 8 bytes are given or the file is shorter, or N
    ///   is over ``maximumHeaderLength``, past the end of the file, or below 2 (no JSON object fits).
    public static func headerLength(_ firstBytes: some Collection<UInt8>, fileSize: Int64) throws -> Int {
        guard firstBytes.count >= 8, fileSize >= 8 else {
            throw SafetensorsError("truncated: shorter than the 8-byte header length")
        }
        var n: UInt64 = 0
        for (i, byte) in firstBytes.prefix(8).enumerated() { n |= UInt64(byte) << (8 * UInt64(i)) }
        guard n <= UInt64(maximumHeaderLength) else {
            throw SafetensorsError("header length \(n) exceeds the limit of \(maximumHeaderLength) bytes")
        }
        guard Int64(n) + 8 <= fileSize else {
            throw SafetensorsError("header length \(n) is larger than the file (\(fileSize) bytes)")
        }
        guard n >= 2 else { throw SafetensorsError("header length \(n) is too small for a JSON object") }
        return Int(n)
    }

    /// Parses and validates the JSON header.
    ///
    /// Checks: valid JSON object; known dtypes; non-negative shapes; `data_offsets` of two ordered
    /// integers inside the data section; each tensor's byte count equals its element count × dtype
    /// size; no two tensors overlap; `__metadata__` (if any) maps strings to strings.
    ///
    /// - Throws: ``SafetensorsError`` naming the first problem found.
    public static func parse(headerBytes: some Collection<UInt8>, fileSize: Int64) throws -> SafetensorsHeader {
        let n = headerBytes.count
        let dataStart = 8 + Int64(n)
        let dataLength = fileSize - dataStart
        guard dataLength >= 0 else { throw SafetensorsError("header length \(n) is larger than the file") }
        let object: Any
        do {
            object = try JSONSerialization.jsonObject(with: Data(headerBytes), options: [])
        } catch {
            throw SafetensorsError("header is not valid JSON")
        }
        guard let entries = object as? [String: Any] else { throw SafetensorsError("header is not a JSON object") }
        var metadata: [String: String]? = nil
        var tensors: [Tensor] = []
        for (name, value) in entries {
            if name == "__metadata__" {
                guard let map = value as? [String: Any] else {
                    throw SafetensorsError("__metadata__ is not an object")
                }
                var strings: [String: String] = [:]
                for (k, v) in map {
                    guard let s = v as? String else {
                        throw SafetensorsError("__metadata__ value of \"\(k)\" is not a string")
                    }
                    strings[k] = s
                }
                metadata = strings
                continue
            }
            guard let info = value as? [String: Any] else {
                throw SafetensorsError("tensor \"\(name)\": entry is not an object")
            }
            guard let dtypeName = info["dtype"] as? String else {
                throw SafetensorsError("tensor \"\(name)\": missing dtype")
            }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw SafetensorsError("tensor \"\(name)\": unknown dtype \"\(dtypeName)\"")
            }
            guard let shapeValues = info["shape"] as? [Any] else {
                throw SafetensorsError("tensor \"\(name)\": missing shape")
            }
            var shape: [Int] = []
            for dimension in shapeValues {
                guard let d = integer(dimension), d >= 0 else {
                    throw SafetensorsError("tensor \"\(name)\": shape must hold non-negative integers")
                }
                shape.append(d)
            }
            guard let offsets = info["data_offsets"] as? [Any], offsets.count == 2,
                let begin = integer(offsets[0]), let end = integer(offsets[1])
            else {
                throw SafetensorsError("tensor \"\(name)\": data_offsets must be two integers")
            }
            guard begin >= 0, begin <= end else {
                throw SafetensorsError("tensor \"\(name)\": data_offsets [\(begin), \(end)] are not ordered")
            }
            guard Int64(end) <= dataLength else {
                throw SafetensorsError(
                    "tensor \"\(name)\": data_offsets [\(begin), \(end)] reach past the end of the data (\(dataLength) bytes)"
                )
            }
            var elements = 1
            for d in shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw SafetensorsError("tensor \"\(name)\": shape \(shape) is too large") }
                elements = product
            }
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.size)
            guard !overflow, bytes == end - begin else {
                throw SafetensorsError(
                    "tensor \"\(name)\": shape \(shape) × \(dtype.rawValue) needs \(overflow ? "too many" : "\(bytes)") bytes, data_offsets span \(end - begin)"
                )
            }
            tensors.append(
                Tensor(
                    name: name,
                    dtype: dtype,
                    shape: shape,
                    dataOffsets: Int64(begin)..<Int64(end),
                    fileRange: dataStart + Int64(begin)..<dataStart + Int64(end)
                )
            )
        }
        tensors.sort {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound, $0.name) < (
                $1.dataOffsets.lowerBound, $1.dataOffsets.upperBound, $1.name
            )
        }
        // Sorted by start: a tensor overlaps an earlier one iff it starts before the furthest end so far.
        var furthest: Tensor? = nil
        for t in tensors where !t.dataOffsets.isEmpty {
            if let f = furthest, t.dataOffsets.lowerBound < f.dataOffsets.upperBound {
                throw SafetensorsError("tensors \"\(f.name)\" and \"\(t.name)\" overlap")
            }
            if furthest == nil || t.dataOffsets.upperBound > furthest!.dataOffsets.upperBound { furthest = t }
        }
        return SafetensorsHeader(headerLength: n, tensors: tensors, metadata: metadata)
    }

    /// Reads the header of a file of `fileSize` bytes through `read`, which returns the bytes of a
    /// range of the file: the 8-byte length first, then the JSON (two calls; nothing else is read).
    ///
    /// - Throws: ``SafetensorsError`` as ``headerLength(_:fileSize:)`` and ``parse(headerBytes:fileSize:)``,
    ///   or what `read` throws.
    public static func read(fileSize: Int64, _ read: (Range<Int64>) throws -> [UInt8]) throws -> SafetensorsHeader {
        let n = try headerLength(try read(0..<8), fileSize: fileSize)
        return try parse(headerBytes: try read(8..<8 + Int64(n)), fileSize: fileSize)
    }

    /// The tensor named `name`, if any.
    public func tensor(named name: String) -> Tensor? {
        tensors.first { $0.name == name }
    }

    /// Tensor name → tensor.
    public var tensorsByName: [String: Tensor] {
        Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// An integer from a JSON number (rejecting fractions and values outside Int).
    private static func integer(_ value: Any) -> Int? {
        if let n = value as? NSNumber {
            // Booleans are NSNumbers too (type code "c"): refuse them.
            if String(cString: n.objCType) == "c" { return nil }
            let d = n.doubleValue
            guard d.rounded() == d, abs(d) < 9.0e15 else { return nil }
            return n.intValue
        }
        return nil
    }
}
