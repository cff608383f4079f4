import CairnStore

extension Registry {
    /// The ancestors (following `parents`) and descendants (versions naming it, transitively, as a
    /// parent) of a version, nearest first. Parents that were deleted are listed without a stage.
    ///
    /// - Throws: ``RegistryError`` as ``resolve(_:)``.
    public func lineage(_ reference: Reference) throws -> Lineage {
        try storeCall {
            try store.readMetadata { txn in
                let root = try resolve(reference, in: txn)
                func lookup(_ ref: String) throws -> VersionRecord? {
                    guard let parsed = try? Reference(parsing: ref), case .number(let n) = parsed.selector else {
                        return nil
                    }
                    return try version(parsed.model, n, in: txn)
                }
                var ancestors: [LineageNode] = []
                var seen: Set<String> = [root.reference]
                var frontier = root.parents
                var depth = 1
                while !frontier.isEmpty {
                    var next: [String] = []
                    for ref in frontier where seen.insert(ref).inserted {
                        let record = try lookup(ref)
                        ancestors.append(
                            LineageNode(
                                reference: ref,
                                depth: depth,
                                stage: record?.stage,
                                parents: record?.parents ?? [],
                                datasets: record?.datasets ?? []
                            )
                        )
                        next += record?.parents ?? []
                    }
                    frontier = next
                    depth += 1
                }
                var children: [String: [VersionRecord]] = [:]
                for item in try txn.scan(versions) {
                    let record = try RecordCoding.decode(VersionRecord.self, item.value, what: "a version")
                    for parent in record.parents { children[parent, default: []].append(record) }
                }
                var descendants: [LineageNode] = []
                seen = [root.reference]
                var level = [root.reference]
                depth = 1
                while !level.isEmpty {
                    var next: [String] = []
                    for ref in level {
                        for child in children[ref] ?? [] where seen.insert(child.reference).inserted {
                            descendants.append(
                                LineageNode(
                                    reference: child.reference,
                                    depth: depth,
                                    stage: child.stage,
                                    parents: child.parents,
                                    datasets: child.datasets
                                )
                            )
                            next.append(child.reference)
                        }
                    }
                    level = next
                    depth += 1
                }
                return Lineage(
                    reference: root.reference,
                    parents: root.parents,
                    datasets: root.datasets,
                    source: root.source,
                    ancestors: ancestors,
                    descendants: descendants
                )
            }
        }
    }
}

/// A version in a lineage walk.
public struct LineageNode: Codable, Sendable, Equatable {
    /// `model@N`.
    public var reference: String
    /// 1 for direct parents or children, 2 for theirs, …
    public var depth: Int
    /// The version's stage now; nil if it has been deleted.
    public var stage: Stage?
    /// Its own parents (for ancestors) or the version it derives from on the walk (for descendants).
    public var parents: [String]
    /// The datasets it was trained on.
    public var datasets: [String]

    /// Encodes every field, `stage` as null for a deleted version.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(reference, forKey: .reference)
        try c.encode(depth, forKey: .depth)
        try c.encode(stage, forKey: .stage)
        try c.encode(parents, forKey: .parents)
        try c.encode(datasets, forKey: .datasets)
    }
}

/// Ancestors and descendants of a version (`cairn lineage`).
public struct Lineage: Codable, Sendable, Equatable {
    /// The version walked from, `model@N`.
    public var reference: String
    /// Its parents, as recorded.
    public var parents: [String]
    /// Its datasets.
    public var datasets: [String]
    /// The run that produced it, if recorded.
    public var source: String?
    /// Nearest first.
    public var ancestors: [LineageNode]
    /// Nearest first.
    public var descendants: [LineageNode]

    /// Encodes every field, `source` as null when absent.
    ///
    /// - Throws: What `encoder` throws (`EncodingError`).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(reference, forKey: .reference)
        try c.encode(parents, forKey: .parents)
        try c.encode(datasets, forKey: .datasets)
        try c.encode(source, forKey: .source)
        try c.encode(ancestors, forKey: .ancestors)
        try c.encode(descendants, forKey: .descendants)
    }
}
