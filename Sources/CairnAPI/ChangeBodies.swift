import CairnRegistry

// The JSON bodies of the API's changes (docs/http-api.md, "Changes"); field names are stable.

/// `POST …/promote`, `…/approve`: the target stage, a reason and evidence.
public struct StageChangeBody: Codable, Sendable {
    /// The stage to promote to, or to approve for.
    public var to: Stage
    /// Why.
    public var reason: String?
    /// Evidence of a promotion (`K=V`).
    public var evidence: [String: String]?

    /// A body asking for `to`.
    public init(to: Stage, reason: String?, evidence: [String: String]? = nil) {
        self.to = to
        self.reason = reason
        self.evidence = evidence
    }
}

/// `POST /v1/models/{model}/rollback`.
public struct RollbackBody: Codable, Sendable {
    /// The version to return to (nil: the previous production version).
    public var to: Int?
    /// Why (required).
    public var reason: String

    /// A body asking to roll back to `to`.
    public init(to: Int?, reason: String) {
        self.to = to
        self.reason = reason
    }
}

/// `POST …/archive`, `DELETE …/versions/{ref}` (as a query), alias removal: a reason.
public struct ReasonBody: Codable, Sendable {
    /// Why.
    public var reason: String?
    /// Evidence of an archive (`K=V`).
    public var evidence: [String: String]?

    /// A body giving `reason`.
    public init(reason: String?, evidence: [String: String]? = nil) {
        self.reason = reason
        self.evidence = evidence
    }
}

/// `PUT /v1/models/{model}/aliases/{alias}`.
public struct AliasBody: Codable, Sendable {
    /// The version the alias is to point at.
    public var version: Int
    /// Why.
    public var reason: String?

    /// A body pointing the alias at `version`.
    public init(version: Int, reason: String?) {
        self.version = version
        self.reason = reason
    }
}

/// `POST …/tags` (`tags`) and `POST …/untag` (`keys`).
public struct TagsBody: Codable, Sendable {
    /// The tags to set (`POST …/tags`).
    public var tags: [String: String]?
    /// The names of the tags to remove (`POST …/untag`).
    public var keys: [String]?

    /// A body setting `tags` or removing `keys`.
    public init(tags: [String: String]? = nil, keys: [String]? = nil) {
        self.tags = tags
        self.keys = keys
    }
}

/// `PUT /v1/models/{model}/policy`: the whole policy and a reason.
public struct PolicyBody: Codable, Sendable {
    /// The new policy (an empty one clears it).
    public var policy: Policy
    /// Why.
    public var reason: String?

    /// A body setting `policy`.
    public init(policy: Policy, reason: String?) {
        self.policy = policy
        self.reason = reason
    }
}

/// `GET /v1/models/{model}/policy`.
public struct PolicyDocument: Codable, Sendable {
    /// The model's name.
    public var model: String
    /// Its policy (empty when none was set).
    public var policy: Policy

    /// The document of `model`'s `policy`.
    public init(model: String, policy: Policy) {
        self.model = model
        self.policy = policy
    }
}
