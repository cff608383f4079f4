import CairnFixtures
import CairnStore
import Digest
import Foundation

/// A unique temporary directory, removed when the value is released.
final class TemporaryDirectory {
    let path: String
    var url: URL { URL(fileURLWithPath: path) }

    init(_ label: String = "cairn-test") {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    func sub(_ name: String) -> String { path + "/" + name }
}

/// Small chunks so that megabyte-sized test inputs have many chunks and several packs.
let testChunker = ChunkerParameters(min: 2 << 10, avg: 8 << 10, max: 32 << 10)

func makeStore(
    _ dir: TemporaryDirectory,
    chunker: ChunkerParameters = testChunker,
    packSize: Int = 1 << 20
) throws -> Store {
    try Store.create(at: dir.sub("store"), config: StoreConfig(chunker: chunker, packSize: packSize))
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let url = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
    try Data(bytes).write(to: url)
}

func readFile(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

func sha256(_ bytes: [UInt8]) -> SHA256Digest { SHA256Digest.hash(bytes) }

/// Stages and commits a directory; returns the staged manifest and what the commit added.
@discardableResult
func push(_ store: Store, _ directory: String) throws -> (manifest: Manifest, info: CommitInfo) {
    let staged = try store.stage(directory: directory)
    let info = try store.commit(staged) { _, info in info }
    return (staged.manifest, info)
}

/// Reads a whole file of a manifest into memory through the store's range reader.
func readBack(_ store: Store, _ file: FileEntry, _ range: Range<Int64>? = nil) throws -> [UInt8] {
    var out: [UInt8] = []
    let r = range ?? 0..<file.size
    var expectedOffset = r.lowerBound
    try store.read(file, range: r) { bytes, offset in
        precondition(offset == expectedOffset, "windows arrive in order")
        out.append(contentsOf: bytes)
        expectedOffset += Int64(bytes.count)
    }
    return out
}

/// Flips one byte of a file at `offset`.
func flipByte(_ path: String, at offset: Int) throws {
    let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    let byte = try handle.read(upToCount: 1)!
    try handle.seek(toOffset: UInt64(offset))
    try handle.write(contentsOf: Data([byte[0] ^ 0xFF]))
}

/// Every pack file under a store.
func packFiles(_ storeRoot: String) -> [String] {
    let packs = storeRoot + "/packs"
    let enumerator = FileManager.default.enumerator(atPath: packs)
    var out: [String] = []
    while let item = enumerator?.nextObject() as? String {
        if item.hasSuffix(".pack") { out.append(packs + "/" + item) }
    }
    return out.sorted()
}
