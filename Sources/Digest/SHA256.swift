internal import CLibCrypto

/// A SHA-256 digest: 32 bytes, stored as four big-endian words so that comparing two digests
/// compares their bytes in order (the order LMDB sorts keys in).
///
/// ```swift
/// let digest = SHA256Digest.hash(bytes)
/// print(digest.hex)   // what `sha256sum` prints
/// ```
public struct SHA256Digest: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Bytes 0–7, read as a big-endian integer (the four words compare like the 32 bytes).
    public var w0: UInt64
    /// Bytes 8–15, read as a big-endian integer.
    public var w1: UInt64
    /// Bytes 16–23, read as a big-endian integer.
    public var w2: UInt64
    /// Bytes 24–31, read as a big-endian integer.
    public var w3: UInt64

    /// The number of bytes in a digest.
    public static let byteCount = 32

    /// The digest whose 32 bytes are all zero (used as the "no previous entry" marker).
    public static let zero = SHA256Digest(w0: 0, w1: 0, w2: 0, w3: 0)

    /// The digest of these four words (bytes 0–7, 8–15, 16–23, 24–31, big-endian).
    public init(w0: UInt64, w1: UInt64, w2: UInt64, w3: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
        self.w3 = w3
    }

    /// Reads a digest from the first 32 bytes of `bytes`.
    ///
    /// - Precondition: `bytes.count >= 32` (a shorter buffer is a programmer error).
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= 32, "a SHA-256 digest needs 32 bytes")
        w0 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 0, as: UInt64.self))
        w1 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        w2 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        w3 = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
    }

    /// Reads a digest from 32 bytes; returns nil for any other count.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        let array = Array(bytes)
        self = array.withUnsafeBytes { SHA256Digest(bytes: $0) }
    }

    /// Parses 64 hexadecimal digits (either case); returns nil for anything else.
    public init?(hex: some StringProtocol) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let hi = Self.nibble(utf8[2 * i]), let lo = Self.nibble(utf8[2 * i + 1]) else { return nil }
            bytes[i] = hi << 4 | lo
        }
        self.init(bytes: bytes)
    }

    private static func nibble(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Calls `body` with the digest's 32 bytes in order.
    ///
    /// - warning: Do not escape the pointer from the closure.
    /// - Throws: Rethrows what `body` throws.
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var words = (w0.bigEndian, w1.bigEndian, w2.bigEndian, w3.bigEndian)
        return try Swift.withUnsafeBytes(of: &words) { try body($0) }
    }

    /// Writes the 32 bytes at `destination` (which must have room for them).
    public func store(to destination: UnsafeMutableRawPointer) {
        destination.storeBytes(of: w0.bigEndian, toByteOffset: 0, as: UInt64.self)
        destination.storeBytes(of: w1.bigEndian, toByteOffset: 8, as: UInt64.self)
        destination.storeBytes(of: w2.bigEndian, toByteOffset: 16, as: UInt64.self)
        destination.storeBytes(of: w3.bigEndian, toByteOffset: 24, as: UInt64.self)
    }

    /// The 32 bytes as an array.
    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// Lower-case hexadecimal, 64 digits: what `sha256sum` prints.
    public var hex: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: 0, count: 64)
        withUnsafeBytes { raw in
            for (i, byte) in raw.enumerated() {
                out[2 * i] = digits[Int(byte >> 4)]
                out[2 * i + 1] = digits[Int(byte & 0xf)]
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The first 12 hexadecimal digits, for messages.
    public var shortHex: String { String(hex.prefix(12)) }

    /// The 64 lower-case hex digits (``hex``).
    public var description: String { hex }

    /// Whether `a`'s bytes sort before `b`'s (lexicographic byte order, as LMDB orders keys).
    public static func < (a: SHA256Digest, b: SHA256Digest) -> Bool {
        (a.w0, a.w1, a.w2, a.w3) < (b.w0, b.w1, b.w2, b.w3)
    }

    /// SHA-256 of `bytes` in one call. For many calls, reuse a ``SHA256Hasher``.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> SHA256Digest {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finalize()
    }

    /// SHA-256 of a byte collection in one call.
    public static func hash(_ bytes: [UInt8]) -> SHA256Digest {
        bytes.withUnsafeBytes { hash($0) }
    }
}

/// Streaming SHA-256 over OpenSSL's EVP interface (which uses the CPU's SHA extensions).
///
/// A hasher owns one `EVP_MD_CTX`; reuse it across inputs with ``reset()`` instead of creating a
/// new one per chunk. It is not thread-safe: use one per thread.
///
/// ```swift
/// let hasher = SHA256Hasher()
/// hasher.update(part1); hasher.update(part2)
/// let digest = hasher.finalize()   // also resets the hasher for the next input
/// ```
/// The corresponding C functions are `EVP_DigestInit_ex`, `EVP_DigestUpdate` and `EVP_DigestFinal_ex`.
public final class SHA256Hasher: @unchecked Sendable {
    // @unchecked Sendable: a hasher may move between threads (worker pools) but is used by one at a time.
    private let context: OpaquePointer

    /// A hasher ready for input (`EVP_MD_CTX_new`, `EVP_DigestInit_ex`); traps when out of memory.
    public init() {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        self.context = context
        reset()
    }

    deinit { EVP_MD_CTX_free(context) }

    /// Starts a new digest, discarding any input so far.
    public func reset() {
        let ok = EVP_DigestInit_ex(context, EVP_sha256(), nil)
        precondition(ok == 1, "EVP_DigestInit_ex(sha256) failed")
    }

    /// Adds `bytes` to the digest.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0, let base = bytes.baseAddress else { return }
        let ok = EVP_DigestUpdate(context, base, bytes.count)
        precondition(ok == 1, "EVP_DigestUpdate failed")
    }

    /// Adds the bytes of an array to the digest.
    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Returns the digest of everything added since the last reset, and resets the hasher.
    public func finalize() -> SHA256Digest {
        var out = (UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0), UInt64(0))
        var length: UInt32 = 0
        let digest = withUnsafeMutableBytes(of: &out) { raw -> SHA256Digest in
            let ok = EVP_DigestFinal_ex(context, raw.baseAddress!.assumingMemoryBound(to: UInt8.self), &length)
            precondition(ok == 1 && length == 32, "EVP_DigestFinal_ex failed")
            return SHA256Digest(bytes: UnsafeRawBufferPointer(raw))
        }
        reset()
        return digest
    }
}
