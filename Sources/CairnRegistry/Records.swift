import Foundation

/// Lifecycle stage of a version.
public enum Stage: String, Codable, Sendable, CaseIterable {
    case experimental, staging, production, archived
}

/// A model: a name and the counter of its versions.
public struct ModelRecord: Codable, Sendable, Equatable {
    public var name: String
    public var createdAt: String
    public var createdBy: String
    /// The highest version number ever given (numbers are never reused).
    public var latestVersion: Int

    enum CodingKeys: String, CodingKey {
        case name
        case createdAt = "created_at"
        case createdBy = "created_by"
        case latestVersion = "latest_version"
    }
}

/// One version of a model: what was pushed, by whom, when, with which metadata.
public struct VersionRecord: Codable, Sendable, Equatable {
    public var model: String
    public var version: Int
    /// Hex SHA-256 id of the version's manifest (its files).
    public var manifest: String
    public var stage: Stage
    public var createdBy: String
    public var createdAt: String
    public var message: String
    public var metrics: [String: Double]
    public var params: [String: String]
    public var tags: [String: String]
    /// Lineage: the versions this one derives from, as `model@N`.
    public var parents: [String]
    public var datasets: [String]
    public var source: String?
    public var fileCount: Int
    /// Sum of the version's file sizes.
    public var logicalBytes: Int64
    /// Raw bytes of the chunks this version's push added to the store.
    public var newBytes: Int64
    /// Bytes on disk of the packs this version's push added.
    public var storedBytes: Int64

    enum CodingKeys: String, CodingKey {
        case model, version, manifest, stage, message, metrics, params, tags, parents, datasets, source
        case createdBy = "created_by"
        case createdAt = "created_at"
        case fileCount = "file_count"
        case logicalBytes = "logical_bytes"
        case newBytes = "new_bytes"
        case storedBytes = "stored_bytes"
    }

    /// `model@N`.
    public var reference: String { "\(model)@\(version)" }
}

enum RecordCoding {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Array(try encoder.encode(value))
    }

    static func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8], what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw RegistryError(.corruption, "the stored record of \(what) is damaged: \(error)")
        }
    }

    /// The current time as ISO 8601 UTC with milliseconds, e.g. `2026-11-29T13:34:13.123Z`.
    static func now() -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date())
    }
}
