import CairnRegistry

/// `POST /v1/tokens`.
public struct TokenBody: Codable, Sendable {
    /// The user the token is to identify.
    public var user: String
    /// What it may do.
    public var role: Role

    /// A body asking for a token of `role` for `user`.
    public init(user: String, role: Role) {
        self.user = user
        self.role = role
    }
}

/// `GET /v1/whoami`.
public struct Identity: Codable, Sendable, Equatable {
    /// The user the token identifies (nil without a token).
    public var user: String?
    /// The token's role (nil without a token).
    public var role: Role?
    /// The token's id (nil without a token).
    public var tokenID: String?

    /// An identity as the server reports it.
    public init(user: String?, role: Role?, tokenID: String?) {
        self.user = user
        self.role = role
        self.tokenID = tokenID
    }

    enum CodingKeys: String, CodingKey {
        case user, role
        case tokenID = "token_id"
    }
}
