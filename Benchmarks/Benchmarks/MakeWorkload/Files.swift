import Dispatch
import Foundation

/// An error that ends the program with a message.
struct WorkloadError: Error, CustomStringConvertible {
    /// What went wrong, for the user.
    var description: String

    /// An error saying `description`.
    init(_ description: String) {
        self.description = description
    }
}

/// A file being written from raw buffers, with C stdio (large writes go straight to the kernel).
final class OutputFile {
    private let path: String
    private var file: UnsafeMutablePointer<FILE>?

    /// Creates or truncates the file at `path`.
    init(_ path: String) throws {
        self.path = path
        guard let file = fopen(path, "wb") else {
            throw WorkloadError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        self.file = file
    }

    deinit {
        if let file { fclose(file) }
    }

    /// Appends `bytes`.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard !bytes.isEmpty, let base = bytes.baseAddress else { return }
        guard fwrite(base, 1, bytes.count, file) == bytes.count else {
            throw WorkloadError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Appends `bytes`.
    func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try write($0) }
    }

    /// Flushes and closes the file; nothing may be written after.
    func close() throws {
        guard let file else { return }
        self.file = nil
        guard fclose(file) == 0 else {
            throw WorkloadError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Writes a whole file at `path` holding `bytes`.
    static func write(_ bytes: [UInt8], to path: String) throws {
        let file = try OutputFile(path)
        try file.write(bytes)
        try file.close()
    }
}

/// A file of the workload: a row of the manifest.
struct WorkloadFile {
    /// The path relative to the output directory (`dir/file`).
    var path: String
    /// The size in bytes.
    var size: Int
}

/// Whole-directory helpers: sizes, listings and hashing.
enum Files {
    /// The names of the regular files in `directory`, sorted by their UTF-8 bytes.
    static func names(in directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory)
            .sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// The size of the file at `path`.
    static func size(of path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        guard let size = attributes[.size] as? NSNumber else { throw WorkloadError("no size for \(path)") }
        return size.intValue
    }

    /// The SHA-256 of every file of `paths` (relative to `root`), read in 4 MiB pieces, on all cores.
    /// The largest files are started first.
    static func sha256(of paths: [String], in root: String) throws -> [String] {
        let sizes = try paths.map { try size(of: root + "/" + $0) }
        let byLargest = paths.indices.sorted { sizes[$0] > sizes[$1] }
        let results = UnsafeMutableBufferPointer<Result<String, WorkloadError>>.allocate(capacity: paths.count)
        results.initialize(repeating: .failure(WorkloadError("not hashed")))
        defer { results.deallocate() }
        let shared = UncheckedSendable((results, byLargest, paths))
        DispatchQueue.concurrentPerform(iterations: paths.count) { k in
            let (results, byLargest, paths) = shared.value
            let index = byLargest[k]
            results[index] = hashFile(root + "/" + paths[index])
        }
        return try results.map { try $0.get() }
    }

    private static func hashFile(_ path: String) -> Result<String, WorkloadError> {
        guard let file = fopen(path, "rb") else {
            return .failure(WorkloadError("cannot read \(path): \(String(cString: strerror(errno)))"))
        }
        defer { fclose(file) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 64)
        defer { buffer.deallocate() }
        var hasher = SHA256()
        while true {
            let n = fread(buffer.baseAddress, 1, buffer.count, file)
            if n > 0 { hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) }
            if n < buffer.count {
                if ferror(file) != 0 { return .failure(WorkloadError("cannot read \(path)")) }
                break
            }
        }
        return .success(hasher.finalize())
    }
}

/// `n` with a comma between groups of three digits.
func grouped(_ n: Int) -> String {
    let digits = String(n)
    var out = ""
    for (i, digit) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(digit)
    }
    return out
}
