internal import CZstd

/// An error reported by libzstd, with its name as `ZSTD_getErrorName` gives it.
public struct ZstdError: Error, CustomStringConvertible, Sendable {
    /// What failed: `compress` or `decompress`.
    public let operation: String
    /// libzstd's name of the error (`ZSTD_getErrorName`), e.g. `Destination buffer is too small`.
    public let message: String
    /// `zstd <operation> failed: <message>`.
    public var description: String { "zstd \(operation) failed: \(message)" }
}

/// The largest compressed size of `count` input bytes (`ZSTD_compressBound`).
public func zstdCompressBound(_ count: Int) -> Int {
    ZSTD_compressBound(count)
}

/// A reusable zstd compression context (`ZSTD_CCtx`) at a fixed level.
///
/// Creating a context costs far more than compressing a 64 KiB chunk, so keep one per worker thread.
/// Not thread-safe: use one per thread at a time.
///
/// ```swift
/// let compressor = ZstdCompressor(level: 3)
/// let written = try compressor.compress(input, into: output)  // output.count >= zstdCompressBound(input.count)
/// ```
/// The corresponding C function is `ZSTD_compressCCtx`.
public final class ZstdCompressor: @unchecked Sendable {
    // @unchecked Sendable: moved between threads by worker pools, used by one thread at a time.
    private let context: OpaquePointer
    /// The compression level (1 fastest … 19 smallest; 3 is zstd's default).
    public let level: Int32
    private let advanced: Bool

    /// A context compressing at `level` (`ZSTD_createCCtx`); traps when out of memory.
    public init(level: Int32 = 3) {
        guard let context = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx failed: out of memory") }
        self.context = context
        self.level = level
        self.advanced = false
    }

    private init(entropyTuned: ()) {
        guard let context = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx failed: out of memory") }
        self.context = context
        self.level = 1
        self.advanced = true
        // Fast strategy, matches of 7+ bytes only, a tiny hash table: on low-entropy bytes without
        // long repeats (the exponent plane of float weights) zstd then mostly Huffman-codes literals,
        // which is about twice as fast as level 1 and compresses a little better.
        let settings: [(ZSTD_cParameter, Int32)] = [
            (ZSTD_c_compressionLevel, 1), (ZSTD_c_strategy, 1), (ZSTD_c_minMatch, 7), (ZSTD_c_searchLog, 1),
            (ZSTD_c_hashLog, 10), (ZSTD_c_windowLog, 17), (ZSTD_c_checksumFlag, 0),
        ]
        for (parameter, value) in settings {
            let rc = ZSTD_CCtx_setParameter(context, parameter, value)
            precondition(
                ZSTD_isError(rc) == 0,
                "ZSTD_CCtx_setParameter failed: \(String(cString: ZSTD_getErrorName(rc)))"
            )
        }
    }

    /// A compressor tuned for low-entropy bytes without long repeats, such as the exponent plane of
    /// floating-point weights (see the parameters in the source). Frames decode with any decompressor.
    public static func entropyTuned() -> ZstdCompressor { ZstdCompressor(entropyTuned: ()) }

    deinit { ZSTD_freeCCtx(context) }

    /// Compresses `source` into `destination` and returns the number of bytes written.
    ///
    /// - Throws: ``ZstdError`` when zstd fails (for example when `destination` is too small).
    public func compress(
        _ source: UnsafeRawBufferPointer,
        into destination: UnsafeMutableRawBufferPointer
    ) throws -> Int {
        let n =
            advanced
            ? ZSTD_compress2(context, destination.baseAddress, destination.count, source.baseAddress, source.count)
            : ZSTD_compressCCtx(
                context,
                destination.baseAddress,
                destination.count,
                source.baseAddress,
                source.count,
                level
            )
        if ZSTD_isError(n) != 0 {
            throw ZstdError(operation: "compress", message: String(cString: ZSTD_getErrorName(n)))
        }
        return n
    }
}

/// A reusable zstd decompression context (`ZSTD_DCtx`). Not thread-safe: use one per thread.
///
/// The corresponding C function is `ZSTD_decompressDCtx`.
public final class ZstdDecompressor: @unchecked Sendable {
    // @unchecked Sendable: moved between threads by worker pools, used by one thread at a time.
    private let context: OpaquePointer

    /// A new context (`ZSTD_createDCtx`); traps when out of memory.
    public init() {
        guard let context = ZSTD_createDCtx() else { fatalError("ZSTD_createDCtx failed: out of memory") }
        self.context = context
    }

    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses one zstd frame from `source` into `destination` and returns the bytes written.
    ///
    /// - Throws: ``ZstdError`` for corrupt input or a destination that is too small.
    public func decompress(
        _ source: UnsafeRawBufferPointer,
        into destination: UnsafeMutableRawBufferPointer
    ) throws -> Int {
        let n = ZSTD_decompressDCtx(
            context,
            destination.baseAddress,
            destination.count,
            source.baseAddress,
            source.count
        )
        if ZSTD_isError(n) != 0 {
            throw ZstdError(operation: "decompress", message: String(cString: ZSTD_getErrorName(n)))
        }
        return n
    }
}
