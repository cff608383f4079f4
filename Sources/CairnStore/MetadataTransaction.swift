import Digest
import LMDB

/// A table of an upper layer's records in the store's index (an LMDB named database).
public struct MetadataTable: Sendable, Hashable {
    let database: Database
    /// The table's name, as given to ``Store/table(_:)``.
    public var name: String { database.name }
}

/// Key/value access to upper-layer tables inside one index transaction, plus read access to the
/// store's manifests in the same snapshot. Valid only inside the closure that received it.
///
/// Keys sort bytewise; use big-endian integers in keys to keep numeric order.
public final class MetadataTransaction {
    let store: Store
    let txn: Transaction

    init(store: Store, txn: Transaction) {
        self.store = store
        self.txn = txn
    }

    /// Whether this is a write transaction (``Store/writeMetadata(_:)``).
    public var isWritable: Bool { txn.isWritable }

    /// The value stored under `key` in `table`, if any.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be read.
    public func get(_ table: MetadataTable, _ key: [UInt8]) throws -> [UInt8]? {
        try store.lmdb { try txn.get(table.database, key: key) }
    }

    /// Stores `value` under `key` in `table`, replacing what was there.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be written (or this is a
    ///   read-only transaction).
    public func put(_ table: MetadataTable, _ key: [UInt8], _ value: [UInt8]) throws {
        try store.lmdb { try txn.put(table.database, key: key, value: value) }
    }

    /// Deletes `key` from `table`; returns whether it was there.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be written (or this is a
    ///   read-only transaction).
    @discardableResult
    public func delete(_ table: MetadataTable, _ key: [UInt8]) throws -> Bool {
        try store.lmdb { try txn.delete(table.database, key: key) }
    }

    /// Entries whose key starts with `prefix`, in key order (reversed: from the last), up to `limit`.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be read.
    public func scan(
        _ table: MetadataTable,
        prefix: [UInt8] = [],
        reverse: Bool = false,
        limit: Int = .max
    ) throws -> [(key: [UInt8], value: [UInt8])] {
        var out: [(key: [UInt8], value: [UInt8])] = []
        guard limit > 0 else { return out }
        var start: [UInt8]? = prefix.isEmpty ? nil : prefix
        if reverse, !prefix.isEmpty {
            // Start after the last key with this prefix: the prefix followed by 0xFF bytes.
            start = prefix + [UInt8](repeating: 0xFF, count: 64)
        }
        try store.lmdb {
            try txn.forEach(table.database, from: start, reverse: reverse) { key, value in
                guard key.starts(with: prefix) else {
                    // Going backwards from prefix+FF…, keys above the range may come first only if
                    // they share the prefix; anything else ends the scan.
                    return false
                }
                out.append((Array(key), Array(value)))
                return out.count < limit
            }
        }
        return out
    }

    /// Number of entries in a table.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be read.
    public func count(_ table: MetadataTable) throws -> Int {
        try store.lmdb { try txn.count(table.database) }
    }

    /// The manifest stored under `id`, in this transaction's snapshot, checked against its id:
    /// its stored bytes are hashed before they are decoded, so a damaged index never yields a
    /// manifest other than the one `id` names (a path changed by one byte, a file's hash or chunk).
    ///
    /// - Throws: ``CairnStoreError`` with `.notFound` if there is none, `.corruption` naming the id
    ///   if its bytes do not hash to it or do not decode, `.io`.
    public func manifest(_ id: SHA256Digest) throws -> Manifest {
        try store.lmdb {
            try id.withUnsafeBytes { key in
                try txn.withValue(store.manifestsDB, key: key) { value in
                    guard let value else { throw CairnStoreError(.notFound, "no manifest \(id.hex)") }
                    return try Manifest.decode(value, checkedAgainst: id)
                }
            }
        }
    }

    /// Whether a manifest with this id is stored.
    ///
    /// - Throws: ``CairnStoreError`` with `.io` when the index cannot be read.
    public func hasManifest(_ id: SHA256Digest) throws -> Bool {
        try store.lmdb { try id.withUnsafeBytes { try txn.contains(store.manifestsDB, key: $0) } }
    }
}

@available(*, unavailable)
extension MetadataTransaction: Sendable {}
