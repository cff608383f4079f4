import Glibc

/// Advisory locks between processes sharing a store (`flock` on files under `locks/`).
///
/// - Every push holds a shared lease on `locks/push.lock` from staging to commit, because its packs
///   sit in `packs/` unreferenced until it commits.
/// - Garbage collection holds `locks/gc.lock` exclusively (one GC at a time) and deletes unreferenced
///   pack files only when it can take `push.lock` exclusively, i.e. no push is in flight.
enum StoreLock {
    /// A held lock; released when the value is deallocated.
    final class Lease: Sendable {
        let fd: Int32
        init(fd: Int32) { self.fd = fd }
        deinit { close(fd) }  // closing the descriptor releases the flock
    }

    static func sharedPushLease(root: String) throws -> Lease {
        try lock(root: root, name: "push.lock", operation: LOCK_SH)!
    }

    /// Exclusive push lock without waiting; nil when a push holds it.
    static func tryExclusivePush(root: String) throws -> Lease? {
        try lock(root: root, name: "push.lock", operation: LOCK_EX | LOCK_NB)
    }

    static func exclusiveGC(root: String) throws -> Lease {
        try lock(root: root, name: "gc.lock", operation: LOCK_EX)!
    }

    private static func lock(root: String, name: String, operation: Int32) throws -> Lease? {
        try FileIO.makeDirectories(root + "/locks")
        let path = root + "/locks/" + name
        let fd = try FileIO.open(path, O_RDWR | O_CREAT)
        while flock(fd, operation) != 0 {
            if errno == EINTR { continue }
            let code = errno
            close(fd)
            if code == EWOULDBLOCK { return nil }
            throw CairnStoreError.io("lock", path: path, errno: code)
        }
        return Lease(fd: fd)
    }
}
