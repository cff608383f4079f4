import Foundation

/// A comparison of a metric with a number.
public enum Comparison: String, Codable, Sendable, CaseIterable {
    /// `<`
    case lessThan = "<"
    /// `<=`
    case lessOrEqual = "<="
    /// `>`
    case greaterThan = ">"
    /// `>=`
    case greaterOrEqual = ">="
    /// `=`
    case equal = "="

    /// Whether `lhs` compares so with `rhs` (`eval_loss <= 1.9`: `lessOrEqual.holds(loss, 1.9)`).
    public func holds(_ lhs: Double, _ rhs: Double) -> Bool {
        switch self {
        case .lessThan: lhs < rhs
        case .lessOrEqual: lhs <= rhs
        case .greaterThan: lhs > rhs
        case .greaterOrEqual: lhs >= rhs
        case .equal: lhs == rhs
        }
    }

    /// The symbol of the opposite comparison, used to say why a condition failed (`2.1 > 1.9`).
    var negatedSymbol: String {
        switch self {
        case .lessThan: ">="
        case .lessOrEqual: ">"
        case .greaterThan: "<="
        case .greaterOrEqual: "<"
        case .equal: "!="
        }
    }
}

/// `METRIC OP VALUE`, e.g. `eval_loss<=1.9`: a policy requirement or an `ls --metric` filter.
public struct MetricCondition: Codable, Sendable, Equatable, CustomStringConvertible {
    /// The metric's name.
    public var metric: String
    /// How its value must compare with ``value``.
    public var comparison: Comparison
    /// The number it is compared with.
    public var value: Double

    /// `metric comparison value` (not validated: ``Policy`` checks it when set).
    public init(metric: String, comparison: Comparison, value: Double) {
        self.metric = metric
        self.comparison = comparison
        self.value = value
    }

    /// Parses `METRIC<V`, `<=`, `>`, `>=` or `=` (spaces around the operator are allowed).
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` for a missing operator, a value that is not
    ///   a finite decimal number (``DecimalNumber``), or a bad metric name.
    public init(parsing text: String) throws {
        let scalars = Array(text.unicodeScalars)
        guard let opStart = scalars.firstIndex(where: { $0 == "<" || $0 == ">" || $0 == "=" }) else {
            throw RegistryError(
                .invalidArgument,
                "invalid metric condition \"\(text)\": expected METRIC<=VALUE, METRIC>=VALUE, <, > or ="
            )
        }
        var opEnd = opStart + 1
        if scalars[opStart] != "=", opEnd < scalars.count, scalars[opEnd] == "=" { opEnd += 1 }
        let name = String(String.UnicodeScalarView(scalars[..<opStart])).trimmingCharacters(in: .whitespaces)
        let op = String(String.UnicodeScalarView(scalars[opStart..<opEnd]))
        let number = String(String.UnicodeScalarView(scalars[opEnd...])).trimmingCharacters(in: .whitespaces)
        guard let comparison = Comparison(rawValue: op), let value = DecimalNumber.parse(number) else {
            throw RegistryError(
                .invalidArgument,
                "invalid metric condition \"\(text)\": expected METRIC<=VALUE, METRIC>=VALUE, <, > or = with a number"
            )
        }
        try Names.validateKey(name, kind: "metric")
        self.init(metric: name, comparison: comparison, value: value)
    }

    /// The condition as written: `eval_loss<=1.9`.
    public var description: String { "\(metric)\(comparison.rawValue)\(formatNumber(value))" }

    /// Whether `metrics` satisfy the condition (a missing metric does not).
    public func matches(_ metrics: [String: Double]) -> Bool {
        guard let actual = metrics[metric] else { return false }
        return comparison.holds(actual, value)
    }

    enum CodingKeys: String, CodingKey {
        case metric, value
        case comparison = "op"
    }
}

/// A model's promotion gates.
///
/// ```swift
/// var policy = Policy()
/// policy.approvals[.production] = 1
/// policy.requirements.append(.init(stage: .production, condition: try MetricCondition(parsing: "eval_loss<=1.9")))
/// try registry.setPolicy(model: "llama-support", policy, actor: "lead")
/// ```
public struct Policy: Codable, Sendable, Equatable, CustomStringConvertible {
    /// A metric threshold checked when a version is promoted into `stage`.
    public struct Requirement: Codable, Sendable, Equatable, CustomStringConvertible {
        /// The stage it gates (staging or production).
        public var stage: Stage
        /// What the version's metrics must satisfy.
        public var condition: MetricCondition

        /// A requirement of `condition` for entering `stage`.
        public init(stage: Stage = .production, condition: MetricCondition) {
            self.stage = stage
            self.condition = condition
        }

        /// Parses `METRIC<=V` / `METRIC>=V` (checked for production) or `STAGE:METRIC<=V`.
        ///
        /// - Throws: ``RegistryError`` with `.invalidArgument` for a stage other than staging or
        ///   production, or a malformed condition (``MetricCondition/init(parsing:)``).
        public init(parsing text: String) throws {
            var body = Substring(text)
            var stage = Stage.production
            if let colon = text.firstIndex(of: ":"), let s = Stage(rawValue: String(text[..<colon])) {
                stage = s
                body = text[text.index(after: colon)...]
            }
            guard stage.isGated else {
                throw RegistryError(
                    .invalidArgument,
                    "metric requirements apply to staging or production, not \(stage.rawValue)"
                )
            }
            self.init(stage: stage, condition: try MetricCondition(parsing: String(body)))
        }

        /// The requirement as written: `eval_loss<=1.9` for production, `staging:eval_loss<=2` else.
        public var description: String {
            stage == .production ? condition.description : "\(stage.rawValue):\(condition)"
        }

        enum CodingKeys: String, CodingKey {
            case stage, metric, op, value
        }

        /// Decodes `{"stage":…,"metric":…,"op":…,"value":…}`.
        ///
        /// - Throws: `DecodingError` when a required field is missing or a field has the wrong type.
        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            stage = try c.decode(Stage.self, forKey: .stage)
            condition = MetricCondition(
                metric: try c.decode(String.self, forKey: .metric),
                comparison: try c.decode(Comparison.self, forKey: .op),
                value: try c.decode(Double.self, forKey: .value)
            )
        }

        /// Encodes `{"stage":…,"metric":…,"op":…,"value":…}`.
        ///
        /// - Throws: What `encoder` throws (`EncodingError`).
        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(stage, forKey: .stage)
            try c.encode(condition.metric, forKey: .metric)
            try c.encode(condition.comparison, forKey: .op)
            try c.encode(condition.value, forKey: .value)
        }
    }

    /// Approvals required to enter a stage (staging or production), from users other than the creator.
    public var approvals: [Stage: Int]
    /// Metric thresholds, each for one stage.
    public var requirements: [Requirement]

    /// A policy of these gates (none by default).
    public init(approvals: [Stage: Int] = [:], requirements: [Requirement] = []) {
        self.approvals = approvals
        self.requirements = requirements
    }

    /// No gate at all.
    public var isEmpty: Bool { approvals.values.allSatisfy { $0 == 0 } && requirements.isEmpty }

    /// The policy in one line, as audit entries record it: `approvals production=1, require
    /// eval_loss<=1.9`, or `none`.
    public var description: String {
        if isEmpty { return "none" }
        var parts: [String] = []
        for stage in [Stage.staging, .production] {
            if let n = approvals[stage], n > 0 { parts.append("approvals \(stage.rawValue)=\(n)") }
        }
        parts += requirements.map { "require \($0)" }
        return parts.joined(separator: ", ")
    }

    func validate() throws {
        for (stage, n) in approvals {
            guard stage.isGated else {
                throw RegistryError(
                    .invalidArgument,
                    "approvals can be required for staging or production, not \(stage.rawValue)"
                )
            }
            guard (0...100).contains(n) else {
                throw RegistryError(
                    .invalidArgument,
                    "the number of approvals for \(stage.rawValue) must be between 0 and 100, not \(n)"
                )
            }
        }
        for r in requirements {
            guard r.stage.isGated else {
                throw RegistryError(
                    .invalidArgument,
                    "metric requirements apply to staging or production, not \(r.stage.rawValue)"
                )
            }
            try Names.validateKey(r.condition.metric, kind: "metric")
            guard r.condition.value.isFinite else {
                throw RegistryError(.invalidArgument, "requirement \(r) needs a finite number")
            }
        }
    }

    /// What `version` lacks to enter `stage`, one phrase per missing thing (empty: the gate passes).
    public func unmet(by version: VersionRecord, for stage: Stage) -> [String] {
        var missing: [String] = []
        let required = approvals[stage] ?? 0
        let approvers = version.approvers(for: stage)
        if approvers.count < required {
            let more = required - approvers.count
            var phrase =
                "needs \(more) more approval\(more == 1 ? "" : "s") for \(stage.rawValue) from someone other than \(version.createdBy)"
            if !approvers.isEmpty { phrase += " (approved by \(approvers.joined(separator: ", ")))" }
            missing.append(phrase)
        }
        for requirement in requirements where requirement.stage == stage {
            let c = requirement.condition
            guard let actual = version.metrics[c.metric] else {
                missing.append("metric \(c.metric) is not recorded (the policy requires \(c) for \(stage.rawValue))")
                continue
            }
            if !c.comparison.holds(actual, c.value) {
                missing.append(
                    "\(c.metric) \(formatNumber(actual)) \(c.comparison.negatedSymbol) \(formatNumber(c.value))"
                )
            }
        }
        return missing
    }

    enum CodingKeys: String, CodingKey {
        case approvals, requirements
    }

    /// Decodes a policy; missing fields are empty.
    ///
    /// - Throws: `DecodingError` when a required field is missing or a field has the wrong type.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        approvals = try c.decodeIfPresent([Stage: Int].self, forKey: .approvals) ?? [:]
        requirements = try c.decodeIfPresent([Requirement].self, forKey: .requirements) ?? []
    }

    /// Encodes the approvals required (zero counts left out) and the requirements.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(approvals.filter { $0.value > 0 }, forKey: .approvals)
        try c.encode(requirements, forKey: .requirements)
    }
}

/// `2`, `1.9`, `0.001`: a metric value as a person writes it.
func formatNumber(_ value: Double) -> String {
    if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
    return "\(value)"
}
