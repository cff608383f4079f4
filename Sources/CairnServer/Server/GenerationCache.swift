import Synchronization

/// A value cache that is valid while the store's index generation is unchanged (any commit, by
/// any process, moves the generation on and so empties the cache). At most `capacity` entries: a
/// full cache starts again empty.
final class GenerationCache<Value: Sendable>: Sendable {
    private struct State {
        var generation = -1
        var entries: [String: Value] = [:]
    }

    private let state = Mutex(State())
    private let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    /// The value cached for `key` at `generation`, nil if none.
    func get(_ key: String, generation: Int) -> Value? {
        state.withLock { $0.generation == generation ? $0.entries[key] : nil }
    }

    /// Stores a value computed from a snapshot taken after `generation` was read.
    func put(_ key: String, _ value: Value, generation: Int) {
        state.withLock { s in
            if generation > s.generation {
                s.generation = generation
                s.entries.removeAll(keepingCapacity: true)
            }
            guard generation == s.generation else { return }
            if s.entries.count >= capacity { s.entries.removeAll(keepingCapacity: true) }
            s.entries[key] = value
        }
    }
}
