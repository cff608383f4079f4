import CairnStore
import Digest
import Foundation

/// What a bearer token may do on a server. Each role includes the ones before it.
///
/// - `reader`: read everything (versions, files, chunks, audit log).
/// - `writer`: also push, and tag or alias versions in experimental or staging.
/// - `approver`: also approve, promote, archive and roll back; tag and alias any version.
/// - `admin`: also policies, deletes, garbage collection, verification and tokens.
public enum Role: String, Codable, Sendable, CaseIterable, Comparable {
    /// Reads everything.
    case reader
    /// Also pushes, and tags or aliases versions in experimental or staging.
    case writer
    /// Also approves, promotes, archives and rolls back; tags and aliases any version.
    case approver
    /// Also policies, deletes, garbage collection, verification and tokens.
    case admin

    var rank: Int {
        switch self {
        case .reader: 0
        case .writer: 1
        case .approver: 2
        case .admin: 3
        }
    }

    /// Whether `a` allows less than `b` (reader < writer < approver < admin).
    public static func < (a: Role, b: Role) -> Bool { a.rank < b.rank }
}

/// A token as stored: who it identifies and with which role. The token itself is never stored,
/// only its SHA-256 (the table's key); `id` is the first 16 hex digits of that hash.
public struct TokenRecord: Codable, Sendable, Equatable {
    /// The first 16 hex digits of the token's SHA-256: how people name it (`token revoke ID`).
    public var id: String
    /// The user the token identifies.
    public var user: String
    /// What the token may do.
    public var role: Role
    /// When it was created (ISO 8601 UTC).
    public var createdAt: String
    /// Who created it.
    public var createdBy: String
    /// When it was revoked, if it was.
    public var revokedAt: String?
    /// Who revoked it, if anyone.
    public var revokedBy: String?

    /// Whether the token was revoked (it then authenticates no one).
    public var isRevoked: Bool { revokedAt != nil }

    enum CodingKeys: String, CodingKey {
        case id, user, role
        case createdAt = "created_at"
        case createdBy = "created_by"
        case revokedAt = "revoked_at"
        case revokedBy = "revoked_by"
    }

    /// Encodes every field, absent optionals as null.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(user, forKey: .user)
        try c.encode(role, forKey: .role)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(createdBy, forKey: .createdBy)
        try c.encode(revokedAt, forKey: .revokedAt)
        try c.encode(revokedBy, forKey: .revokedBy)
    }
}

/// A token just created: the secret (shown once) and its record.
public struct NewToken: Codable, Sendable, Equatable {
    /// The bearer token: 64 hex digits, shown once and never stored.
    public var token: String
    /// What is stored of it.
    public var record: TokenRecord
}

extension Registry {
    func tokensTable() throws -> MetadataTable { try storeCall { try store.table("tokens") } }

    static func tokenKey(_ token: String) -> SHA256Digest { SHA256Digest.hash(Array(token.utf8)) }

    /// Creates a bearer token for `user` with `role`. The token (64 hex digits from 32 random bytes)
    /// is returned once; only its SHA-256 is stored.
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` for an empty or multi-line user or actor
    ///   name, `.io`.
    public func createToken(user: String, role: Role, actor: String) throws -> NewToken {
        try Names.validateActor(user)
        try Names.validateActor(actor)
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) }
        let token = bytes.map { String(format: "%02x", $0) }.joined()
        let hash = Self.tokenKey(token)
        let table = try tokensTable()
        return try write { txn in
            let record = TokenRecord(
                id: String(hash.hex.prefix(16)),
                user: user,
                role: role,
                createdAt: try changeTime(in: txn),
                createdBy: actor
            )
            try txn.put(table, hash.bytes, try RecordCoding.encode(record))
            _ = try appendAudit(
                [
                    AuditDraft(
                        action: .tokenCreate,
                        model: "",
                        target: "token \(record.id)",
                        after: "\(user) (\(role.rawValue))"
                    )
                ],
                actor: actor,
                time: record.createdAt,
                in: txn
            )
            return NewToken(token: token, record: record)
        }
    }

    /// Every token ever created (revoked ones too), oldest first.
    ///
    /// - Throws: ``RegistryError`` with `.corruption` for a damaged record, `.io`.
    public func listTokens() throws -> [TokenRecord] {
        let table = try tokensTable()
        return try storeCall {
            try store.readMetadata { txn in
                try txn.scan(table).map { try RecordCoding.decode(TokenRecord.self, $0.value, what: "a token") }
                    .sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
            }
        }
    }

    /// Revokes the token with this id (or a unique prefix of at least 6 hex digits of it).
    ///
    /// - Throws: ``RegistryError``: `.notFound`, `.invalidArgument` for an ambiguous prefix,
    ///   `.refused` if it is already revoked.
    @discardableResult
    public func revokeToken(id: String, actor: String) throws -> TokenRecord {
        try Names.validateActor(actor)
        let id = id.lowercased()
        guard id.count >= 6, id.allSatisfy(\.isHexDigit) else {
            throw RegistryError(.invalidArgument, "a token id is at least 6 hex digits")
        }
        let table = try tokensTable()
        return try write { txn in
            let matches = try txn.scan(table).filter { item in
                (try? RecordCoding.decode(TokenRecord.self, item.value, what: "a token"))?.id.hasPrefix(id) == true
            }
            guard let match = matches.first else { throw RegistryError(.notFound, "no token with id \(id)") }
            guard matches.count == 1 else {
                throw RegistryError(.invalidArgument, "token id \(id) is ambiguous; give more digits")
            }
            var record = try RecordCoding.decode(TokenRecord.self, match.value, what: "token \(id)")
            if record.isRevoked {
                throw RegistryError(.refused, "token \(record.id) was already revoked at \(record.revokedAt ?? "")")
            }
            record.revokedAt = try changeTime(in: txn)
            record.revokedBy = actor
            try txn.put(table, match.key, try RecordCoding.encode(record))
            _ = try appendAudit(
                [
                    AuditDraft(
                        action: .tokenRevoke,
                        model: "",
                        target: "token \(record.id)",
                        before: "\(record.user) (\(record.role.rawValue))"
                    )
                ],
                actor: actor,
                time: record.revokedAt!,
                in: txn
            )
            return record
        }
    }

    /// The record of a presented bearer token, or nil when it is unknown or revoked.
    ///
    /// - Throws: ``RegistryError`` with `.corruption` for a damaged record, `.io`.
    public func authenticate(token: String) throws -> TokenRecord? {
        guard token.utf8.count == 64 else { return nil }
        let table = try tokensTable()
        let key = Self.tokenKey(token).bytes
        return try storeCall {
            try store.readMetadata { txn in
                guard let bytes = try txn.get(table, key) else { return nil }
                let record = try RecordCoding.decode(TokenRecord.self, bytes, what: "a token")
                return record.isRevoked ? nil : record
            }
        }
    }
}
