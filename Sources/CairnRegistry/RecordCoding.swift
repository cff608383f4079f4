import Foundation

/// The JSON of the records the registry stores in its tables (keys sorted, slashes unescaped).
enum RecordCoding {
    /// `value` as stored.
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }

    /// A stored record read back; `what` names it in the error.
    ///
    /// - Throws: ``RegistryError`` with `.corruption` when the bytes are not a valid record.
    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw RegistryError(.corruption, "the stored record of \(what) is damaged: \(error)")
        }
    }
}
