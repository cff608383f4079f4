import Dispatch
import Synchronization

// Fork-join helpers of the pipelines: a loop run on every core, a blocking task run beside the
// current thread, and the first error either of them met.

/// The first error recorded by any of several threads (the iterations of a parallel loop, a
/// writer queue); later ones are dropped.
///
/// ```swift
/// let errors = FirstError()
/// parallelFor(items.count) { i in
///     if errors.isSet { return }                 // stop early once one failed
///     do { try work(items[i]) } catch { errors.record(error) }
/// }
/// try errors.rethrow()
/// ```
package final class FirstError: Sendable {
    private let error = Mutex<(any Error)?>(nil)

    /// No error recorded yet.
    package init() {}

    /// Whether an error was recorded.
    package var isSet: Bool { error.withLock { $0 != nil } }

    /// Records `e` unless an error was recorded before.
    package func record(_ e: any Error) {
        error.withLock { if $0 == nil { $0 = e } }
    }

    /// Throws the recorded error, if any.
    package func rethrow() throws {
        if let e = error.withLock({ $0 }) { throw e }
    }
}

/// Runs `body(i)` for i in 0..<iterations on all cores (`DispatchQueue.concurrentPerform`, which
/// hands out indices in order and dynamically) and returns when every iteration has finished.
///
/// The closure is not `@Sendable`, so that iterations can write into the caller's buffers without
/// copies: callers guarantee that iterations touch disjoint state or synchronized state only (each
/// pipeline stage documents which). Indices are started in order, so long tasks placed first start
/// first.
func parallelFor(_ iterations: Int, _ body: (Int) -> Void) {
    guard iterations > 0 else { return }
    if iterations == 1 {
        body(0)
        return
    }
    withoutActuallyEscaping(body) { escapable in
        let forked = ForkedClosure(escapable)
        DispatchQueue.concurrentPerform(iterations: iterations) { forked.call($0) }
    }
}

/// Runs `background` on a thread of its own while `foreground` runs on this one, and returns when
/// both are done: for blocking I/O next to ``parallelFor(_:_:)``, which it would otherwise slow by
/// holding one of its CPU-bound workers while it waits for the disk. The two closures must touch
/// disjoint or synchronized state only.
func alongside(_ background: () -> Void, _ foreground: () -> Void) {
    withoutActuallyEscaping(background) { escapable in
        // The block holds the box, not the closure, which is dropped before `done` is signalled:
        // nothing may keep it once withoutActuallyEscaping returns.
        let forked = ForkedClosure(escapable)
        let done = DispatchSemaphore(value: 0)
        // A serial queue of its own: dispatch gives it a thread even when every worker is busy.
        DispatchQueue(label: "cairn.io").async {
            forked.call(())
            forked.release()
            done.signal()
        }
        foreground()
        done.wait()
    }
}

/// A closure of a fork-join (``parallelFor(_:_:)``, ``alongside(_:_:)``) handed to the threads it
/// forks, which Dispatch requires to be Sendable.
private final class ForkedClosure<Argument>: @unchecked Sendable {
    // @unchecked Sendable: the closure is not Sendable (it writes the caller's buffers in place).
    // What makes handing it to other threads safe: it is called only between the fork and the
    // join, while the forking thread waits; its callers guarantee that concurrent calls touch
    // disjoint or synchronized state; and `body` is written only by `release()`, which the one
    // thread that calls it runs after its last call, before the join.
    private var body: ((Argument) -> Void)?

    init(_ body: @escaping (Argument) -> Void) { self.body = body }

    func call(_ argument: Argument) { body?(argument) }

    /// Drops the closure, so that nothing holds it once the join has returned.
    func release() { body = nil }
}
