internal import CLMDB
import Glibc

/// An error returned by an LMDB call, with the C function's name and `mdb_strerror`'s text.
public struct LMDBError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The LMDB or errno code.
    public let code: Int32
    /// The C function that failed, e.g. `mdb_put`.
    public let operation: String
    /// What was found wrong, for a failure found by this wrapper rather than by LMDB.
    public var detail: String?

    /// The failure `code` (an LMDB or errno code) of `operation`, with `detail` when this wrapper
    /// rather than LMDB found it.
    public init(code: Int32, operation: String, detail: String? = nil) {
        self.code = code
        self.operation = operation
        self.detail = detail
    }

    /// The ``detail``, else `LMDB <operation> failed: <mdb_strerror text> (<code>)`.
    public var description: String {
        if let detail { return detail }
        return "LMDB \(operation) failed: \(String(cString: mdb_strerror(code))) (\(code))"
    }

    /// True when the map is full (`MDB_MAP_FULL`).
    public var isMapFull: Bool { code == MDB_MAP_FULL }

    /// True when the data file is damaged: LMDB found a malformed page or meta page
    /// (`MDB_CORRUPTED`, `MDB_PAGE_NOTFOUND`, `MDB_INVALID`, `MDB_VERSION_MISMATCH`), or the file
    /// is shorter than the pages its meta page says are in use (``Environment/init(path:maxDatabases:mapSize:readOnly:)``).
    public var isDamage: Bool {
        code == MDB_CORRUPTED || code == MDB_PAGE_NOTFOUND || code == MDB_INVALID || code == MDB_VERSION_MISMATCH
    }

    /// The error for a data file shorter than its pages in use.
    static func truncated(fileSize: Int, pagesEnd: Int) -> LMDBError {
        LMDBError(
            code: MDB_CORRUPTED,
            operation: "mdb_env_open",
            detail: "the file is truncated: it has \(fileSize) bytes, its pages in use end at \(pagesEnd)"
        )
    }

    static func check(_ code: Int32, _ operation: String) throws {
        if code != 0 { throw LMDBError(code: code, operation: operation) }
    }
}

/// A named database (table) inside an ``Environment``. Handles are opened once and shared.
public struct Database: Sendable, Hashable {
    let handle: UInt32
    /// The name the database was opened with.
    public let name: String
}

/// An LMDB environment: one memory-mapped file holding named databases, with ACID transactions
/// that are safe across threads and processes.
///
/// Opened with `MDB_NOTLS` so that a read transaction is not tied to its thread, and `MDB_NOSUBDIR`
/// so that `path` is the data file itself (with `path-lock` beside it). Transactions are closures:
///
/// ```swift
/// let env = try Environment(path: "/tmp/index.mdb", maxDatabases: 16)
/// let people = try env.openDatabase("people")
/// try env.write { txn in try txn.put(people, key: Array("k".utf8), value: Array("v".utf8)) }
/// let value = try env.read { txn in try txn.get(people, key: Array("k".utf8)) }
/// ```
///
/// Rule: open one `Environment` per file per process. Close it with ``close()``.
public final class Environment: @unchecked Sendable {
    // @unchecked Sendable: the LMDB environment is thread-safe: with MDB_NOTLS a read transaction may
    // run on any thread (used by one at a time: it never leaves the closure that received it), and
    // LMDB's own mutex serializes write transactions. The Swift state is guarded: `databases` is read
    // and written under `openLock` only; `env` is set in init and cleared only by `close()`, which
    // the owner calls once no other thread uses the environment (see ``close()``).
    private var env: OpaquePointer?
    private let openLock = HandleCacheLock()
    private var databases: [String: Database] = [:]

    /// Opens (creating if needed) the environment at `path`.
    ///
    /// A data file shorter than the pages its meta page says are in use (a truncated copy, a file
    /// cut by a full disk) is refused: the pages past its end are mapped but not backed, and
    /// reading them would kill the process with SIGBUS instead of failing.
    ///
    /// - Parameters:
    ///   - path: the data file; its lock file is `path + "-lock"`.
    ///   - maxDatabases: how many named databases may be opened.
    ///   - mapSize: the largest size the data file may reach (address space, not disk).
    ///   - readOnly: open without write access.
    /// - Throws: ``LMDBError`` from `mdb_env_create`, `mdb_env_set_mapsize` or `mdb_env_open`, and
    ///   one with ``LMDBError/isDamage`` for a malformed or truncated data file.
    public init(path: String, maxDatabases: Int, mapSize: Int = 1 << 40, readOnly: Bool = false) throws {
        var env: OpaquePointer?
        try LMDBError.check(mdb_env_create(&env), "mdb_env_create")
        do {
            try LMDBError.check(mdb_env_set_maxdbs(env, MDB_dbi(maxDatabases)), "mdb_env_set_maxdbs")
            try LMDBError.check(mdb_env_set_mapsize(env, mapSize), "mdb_env_set_mapsize")
            try LMDBError.check(mdb_env_set_maxreaders(env, 512), "mdb_env_set_maxreaders")
            try LMDBError.check(mdb_env_set_assert(env, Self.damageFound), "mdb_env_set_assert")
            var flags = UInt32(MDB_NOSUBDIR | MDB_NOTLS | MDB_NORDAHEAD)
            if readOnly { flags |= UInt32(MDB_RDONLY) }
            try LMDBError.check(mdb_env_open(env, path, flags, 0o644), "mdb_env_open")
            try Self.checkPagesAreInFile(env, path: path)
        } catch {
            // "Whether or not an error occurs when it is opened", the handle must be released.
            mdb_env_close(env)
            throw error
        }
        self.env = env
    }

    deinit {
        if let env { mdb_env_close(env) }
    }

    /// LMDB's assertion callback. LMDB checks some of what it reads from its pages with assertions
    /// and calls `abort()` right after this callback when one fails: a damaged file would end the
    /// process with a crash report. It ends instead with exit code 4 (damage found) and one
    /// `error:` line naming what LMDB found; an open write transaction commits nothing.
    private static let damageFound: @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Void = { env, message in
        var path: UnsafePointer<CChar>?
        if let env { _ = mdb_env_get_path(env, &path) }
        let file = path.map { String(cString: $0) } ?? "the index"
        let found = message.map { String(cString: $0) } ?? "an internal check failed"
        let line = Array(
            "error: \(file) is damaged (LMDB: \(found)); nothing was changed: restore it from a backup\n".utf8
        )
        _ = line.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        _exit(4)
    }

    /// Throws when the data file ends before the last page in use. LMDB itself refuses any page
    /// number past that one (`MDB_PAGE_NOTFOUND`), so with this check no read leaves the file.
    private static func checkPagesAreInFile(_ env: OpaquePointer?, path: String) throws {
        var info = MDB_envinfo()
        var pageStat = MDB_stat()
        try LMDBError.check(mdb_env_info(env, &info), "mdb_env_info")
        try LMDBError.check(mdb_env_stat(env, &pageStat), "mdb_env_stat")
        var fd: Int32 = -1
        try LMDBError.check(mdb_env_get_fd(env, &fd), "mdb_env_get_fd")
        var file = stat()
        guard fstat(fd, &file) == 0 else { throw LMDBError(code: errno, operation: "fstat(\(path))") }
        let pagesEnd = (Int(info.me_last_pgno) + 1) * Int(pageStat.ms_psize)
        if Int(file.st_size) < pagesEnd { throw LMDBError.truncated(fileSize: Int(file.st_size), pagesEnd: pagesEnd) }
    }

    /// Closes the environment (`mdb_env_close`). No transaction may be open, and no other thread
    /// may use the environment during or after the call: a later use traps.
    public func close() {
        if let env { mdb_env_close(env) }
        env = nil
    }

    private var handle: OpaquePointer {
        guard let env else { preconditionFailure("LMDB environment used after close()") }
        return env
    }

    /// Opens the named database, creating it if it does not exist. Handles are cached.
    ///
    /// - Throws: ``LMDBError`` from `mdb_txn_begin`, `mdb_dbi_open` (`MDB_DBS_FULL` past
    ///   `maxDatabases`) or `mdb_txn_commit`.
    public func openDatabase(_ name: String) throws -> Database {
        try openLock.withLock {
            if let db = databases[name] { return db }
            var txn: OpaquePointer?
            try LMDBError.check(mdb_txn_begin(handle, nil, 0, &txn), "mdb_txn_begin")
            var dbi: MDB_dbi = 0
            let rc = mdb_dbi_open(txn, name, UInt32(MDB_CREATE), &dbi)
            if rc != 0 {
                mdb_txn_abort(txn)
                throw LMDBError(code: rc, operation: "mdb_dbi_open(\(name))")
            }
            try LMDBError.check(mdb_txn_commit(txn), "mdb_txn_commit")
            let db = Database(handle: dbi, name: name)
            databases[name] = db
            return db
        }
    }

    /// Runs `body` in a read-only transaction (a consistent snapshot).
    ///
    /// The transaction is valid only during `body`: do not store it or let it cross an `await`.
    ///
    /// - Throws: ``LMDBError`` from `mdb_txn_begin` (for example `MDB_READERS_FULL`), or whatever
    ///   `body` throws.
    public func read<T>(_ body: (Transaction) throws -> T) throws -> T {
        var txn: OpaquePointer?
        try LMDBError.check(mdb_txn_begin(handle, nil, UInt32(MDB_RDONLY), &txn), "mdb_txn_begin(read)")
        let transaction = Transaction(txn: txn!, writable: false, bounds: mappedBounds())
        defer {
            transaction.invalidate()
            mdb_txn_abort(txn)
        }
        return try body(transaction)
    }

    /// Runs `body` in a write transaction and commits it; if `body` throws, the transaction is
    /// aborted and the error rethrown, so nothing it wrote becomes visible.
    ///
    /// Only one write transaction runs at a time, across threads and processes; others wait.
    ///
    /// - Throws: ``LMDBError`` from `mdb_txn_begin` or `mdb_txn_commit` (``LMDBError/isMapFull``
    ///   when the map is full), or whatever `body` throws (then nothing is committed).
    public func write<T>(_ body: (Transaction) throws -> T) throws -> T {
        var txn: OpaquePointer?
        try LMDBError.check(mdb_txn_begin(handle, nil, 0, &txn), "mdb_txn_begin(write)")
        let transaction = Transaction(txn: txn!, writable: true, bounds: mappedBounds())
        let result: T
        do {
            result = try body(transaction)
        } catch {
            transaction.invalidate()
            mdb_txn_abort(txn)
            throw error
        }
        transaction.invalidate()
        try LMDBError.check(mdb_txn_commit(txn), "mdb_txn_commit")
        return result
    }

    /// Where the memory map lies and where the pages in use end, read after a transaction began:
    /// its pages are all below that end (a later commit only moves it further).
    private func mappedBounds() -> MappedBounds {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        guard mdb_env_info(handle, &info) == 0, mdb_env_stat(handle, &stat) == 0, let start = info.me_mapaddr else {
            return MappedBounds(start: nil, end: nil, dataEnd: nil)
        }
        let base = UnsafeRawPointer(start)
        return MappedBounds(
            start: base,
            end: base + info.me_mapsize,
            dataEnd: base + (Int(info.me_last_pgno) + 1) * Int(stat.ms_psize)
        )
    }

    /// The id of the last committed write transaction, by any process (`mdb_env_info`'s
    /// `me_last_txnid`). It grows with every commit, so a cache of values read from the environment
    /// stays valid while it is unchanged. Cheap: it reads the environment's meta pages.
    ///
    /// - Throws: ``LMDBError`` from `mdb_env_info`.
    public func lastTransactionID() throws -> Int {
        var info = MDB_envinfo()
        try LMDBError.check(mdb_env_info(handle, &info), "mdb_env_info")
        return Int(info.me_last_txnid)
    }

    /// Bytes of the data file in use (pages × page size).
    ///
    /// - Throws: ``LMDBError`` from `mdb_env_info` or `mdb_env_stat`.
    public func usedBytes() throws -> Int {
        var info = MDB_envinfo()
        var stat = MDB_stat()
        try LMDBError.check(mdb_env_info(handle, &info), "mdb_env_info")
        try LMDBError.check(mdb_env_stat(handle, &stat), "mdb_env_stat")
        return (Int(info.me_last_pgno) + 1) * Int(stat.ms_psize)
    }
}

/// A transaction, valid only inside the closure that received it.
///
/// Byte buffers handed to closures (`withValue`, `forEach`) point into the memory map and are valid
/// only during that closure: copy what you need to keep. Writes go through a write transaction only.
public final class Transaction {
    private var txn: OpaquePointer?
    /// Whether the transaction may write.
    public let isWritable: Bool
    private let bounds: MappedBounds

    init(txn: OpaquePointer, writable: Bool, bounds: MappedBounds) {
        self.txn = txn
        self.isWritable = writable
        self.bounds = bounds
    }

    /// `value` as a buffer, once it is known to lie within the pages in use (LMDB trusts the sizes
    /// its pages record; a damaged one would make a read run past the file's end, a SIGBUS).
    private func checked(_ value: MDB_val, _ db: Database) throws -> UnsafeRawBufferPointer {
        let buffer = UnsafeRawBufferPointer(start: value.mv_data, count: value.mv_size)
        guard bounds.contains(buffer) else {
            throw LMDBError(
                code: MDB_CORRUPTED,
                operation: "mdb_get(\(db.name))",
                detail: "a key or value of \(db.name) reaches past the end of the file (the file is damaged)"
            )
        }
        return buffer
    }

    func invalidate() { txn = nil }

    private var handle: OpaquePointer {
        guard let txn else { preconditionFailure("LMDB transaction used outside its closure") }
        return txn
    }

    /// Calls `body` with the value stored under `key`, or nil when there is none (`mdb_get`).
    ///
    /// - warning: Do not escape the pointer from the closure.
    /// - Throws: ``LMDBError`` from `mdb_get` for any failure but `MDB_NOTFOUND`, one with
    ///   ``LMDBError/isDamage`` for a value reaching past the file's pages in use, or whatever `body`
    ///   throws.
    public func withValue<R>(
        _ db: Database,
        key: UnsafeRawBufferPointer,
        _ body: (UnsafeRawBufferPointer?) throws -> R
    ) throws -> R {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val()
        let rc = mdb_get(handle, db.handle, &k, &v)
        if rc == MDB_NOTFOUND { return try body(nil) }
        try LMDBError.check(rc, "mdb_get(\(db.name))")
        return try body(try checked(v, db))
    }

    /// The value stored under `key`, copied out, or nil.
    ///
    /// - Throws: ``LMDBError`` as ``withValue(_:key:_:)``.
    public func get(_ db: Database, key: [UInt8]) throws -> [UInt8]? {
        try key.withUnsafeBytes { k in try withValue(db, key: k) { $0.map { Array($0) } } }
    }

    /// Whether `key` has a value.
    ///
    /// - Throws: ``LMDBError`` as ``withValue(_:key:_:)``.
    public func contains(_ db: Database, key: UnsafeRawBufferPointer) throws -> Bool {
        try withValue(db, key: key) { $0 != nil }
    }

    /// Stores `value` under `key`, replacing any value (`mdb_put`).
    ///
    /// - Parameter append: the key sorts after every key in the database (`MDB_APPEND`): faster, and
    ///   LMDB fails with `MDB_KEYEXIST` if it does not.
    /// - Throws: ``LMDBError`` from `mdb_put`: `EACCES` in a read-only transaction, `MDB_MAP_FULL`,
    ///   `MDB_KEYEXIST` for an out-of-order `append`.
    public func put(
        _ db: Database,
        key: UnsafeRawBufferPointer,
        value: UnsafeRawBufferPointer,
        append: Bool = false
    ) throws {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        var v = MDB_val(mv_size: value.count, mv_data: UnsafeMutableRawPointer(mutating: value.baseAddress))
        try LMDBError.check(mdb_put(handle, db.handle, &k, &v, append ? UInt32(MDB_APPEND) : 0), "mdb_put(\(db.name))")
    }

    /// Stores `value` under `key`, replacing any value.
    ///
    /// - Throws: ``LMDBError`` from `mdb_put`, as the form over buffers.
    public func put(_ db: Database, key: [UInt8], value: [UInt8], append: Bool = false) throws {
        try key.withUnsafeBytes { k in try value.withUnsafeBytes { v in try put(db, key: k, value: v, append: append) }
        }
    }

    /// Deletes `key`; returns false when it was not there (`mdb_del`).
    ///
    /// - Throws: ``LMDBError`` from `mdb_del` for any failure but `MDB_NOTFOUND` (`EACCES` in a
    ///   read-only transaction).
    @discardableResult
    public func delete(_ db: Database, key: UnsafeRawBufferPointer) throws -> Bool {
        var k = MDB_val(mv_size: key.count, mv_data: UnsafeMutableRawPointer(mutating: key.baseAddress))
        let rc = mdb_del(handle, db.handle, &k, nil)
        if rc == MDB_NOTFOUND { return false }
        try LMDBError.check(rc, "mdb_del(\(db.name))")
        return true
    }

    /// Deletes `key`; returns false when it was not there.
    ///
    /// - Throws: ``LMDBError`` from `mdb_del` for any failure but `MDB_NOTFOUND`.
    @discardableResult
    public func delete(_ db: Database, key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { try delete(db, key: $0) }
    }

    /// The number of entries in `db` (`mdb_stat`).
    ///
    /// - Throws: ``LMDBError`` from `mdb_stat`.
    public func count(_ db: Database) throws -> Int {
        var stat = MDB_stat()
        try LMDBError.check(mdb_stat(handle, db.handle, &stat), "mdb_stat(\(db.name))")
        return Int(stat.ms_entries)
    }

    /// Visits entries in key order, starting at the first key ≥ `start` (or the first key), while
    /// `body` returns true. Uses a cursor (`mdb_cursor_get` with `MDB_SET_RANGE` / `MDB_NEXT`).
    ///
    /// - warning: The buffers are valid only during one call of `body`.
    /// - Throws: ``LMDBError`` from `mdb_cursor_open` or `mdb_cursor_get`, one with
    ///   ``LMDBError/isDamage`` for a key or value reaching past the file's pages in use, or whatever
    ///   `body` throws.
    public func forEach(
        _ db: Database,
        from start: [UInt8]? = nil,
        reverse: Bool = false,
        _ body: (_ key: UnsafeRawBufferPointer, _ value: UnsafeRawBufferPointer) throws -> Bool
    ) throws {
        var cursor: OpaquePointer?
        try LMDBError.check(mdb_cursor_open(handle, db.handle, &cursor), "mdb_cursor_open(\(db.name))")
        defer { mdb_cursor_close(cursor) }
        var k = MDB_val()
        var v = MDB_val()
        var rc: Int32
        if let start {
            rc = start.withUnsafeBytes { s in
                k = MDB_val(mv_size: s.count, mv_data: UnsafeMutableRawPointer(mutating: s.baseAddress))
                return mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE)
            }
            if reverse {
                if rc == MDB_NOTFOUND {
                    rc = mdb_cursor_get(cursor, &k, &v, MDB_LAST)
                } else if rc == 0 {
                    let equal = start.withUnsafeBytes { s in
                        k.mv_size == s.count && (s.count == 0 || memcmp(k.mv_data, s.baseAddress!, s.count) == 0)
                    }
                    if !equal { rc = mdb_cursor_get(cursor, &k, &v, MDB_PREV) }
                }
            }
        } else {
            rc = mdb_cursor_get(cursor, &k, &v, reverse ? MDB_LAST : MDB_FIRST)
        }
        while rc == 0 {
            let keepGoing = try body(try checked(k, db), try checked(v, db))
            if !keepGoing { return }
            rc = mdb_cursor_get(cursor, &k, &v, reverse ? MDB_PREV : MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try LMDBError.check(rc, "mdb_cursor_get(\(db.name))") }
    }

    /// Deletes every entry of `db` (`mdb_drop` with del = 0).
    ///
    /// - Throws: ``LMDBError`` from `mdb_drop` (`EACCES` in a read-only transaction).
    public func clear(_ db: Database) throws {
        try LMDBError.check(mdb_drop(handle, db.handle, 0), "mdb_drop(\(db.name))")
    }
}

@available(*, unavailable)
extension Transaction: Sendable {}

/// The memory map of an environment and the end of its pages in use, for checking that what LMDB
/// hands out lies inside the file. Pages a write transaction changed live outside the map (LMDB
/// copies them to the heap) and are not checked.
struct MappedBounds {
    let start: UnsafeRawPointer?
    let end: UnsafeRawPointer?
    let dataEnd: UnsafeRawPointer?

    func contains(_ buffer: UnsafeRawBufferPointer) -> Bool {
        guard let start, let end, let dataEnd, let base = buffer.baseAddress, base >= start, base < end else {
            return true
        }
        return buffer.count <= dataEnd - base
    }
}
