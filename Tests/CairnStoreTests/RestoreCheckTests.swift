import CairnFixtures
import Digest
import Foundation
import Testing

@testable import CairnStore

/// A pull proves what it writes: a stored manifest is checked against its id when it is read, and
/// every restored file against its whole-file SHA-256 before it is put in place.
@Suite struct RestoreCheckTests {
    /// A store holding a small config, a file of two read windows and a small file after it.
    static func storeWithAModel() throws -> (
        dir: TemporaryDirectory, store: Store, id: SHA256Digest, originals: [String: [UInt8]]
    ) {
        let dir = TemporaryDirectory()
        let store = try makeStore(dir)
        let originals: [String: [UInt8]] = [
            "config.json": Array(#"{"hidden_size": 4096, "layers": 32}"#.utf8),
            "model.bin": FixtureData.bytes(count: (Int(Store.readWindow) * 3) / 2, seed: 91),
            "tokenizer.txt": FixtureData.text(count: 200_000, seed: 92),
            "zz-empty": [],
        ]
        for (path, bytes) in originals { try writeFile(dir.sub("in/" + path), bytes) }
        let (_, info) = try push(store, dir.sub("in"))
        return (dir, store, info.manifestID, originals)
    }

    /// Changes the stored bytes of manifest `id` with `edit`, under the same id (a damaged index).
    static func tamper(_ store: Store, _ id: SHA256Digest, _ edit: (inout [UInt8]) throws -> Void) throws {
        let manifests = MetadataTable(database: store.manifestsDB)
        try store.writeMetadata { txn in
            var bytes = try #require(try txn.get(manifests, id.bytes))
            try edit(&bytes)
            try txn.put(manifests, id.bytes, bytes)
        }
    }

    /// Where `needle` starts in `bytes`.
    static func offset(of needle: [UInt8], in bytes: [UInt8]) throws -> Int {
        try #require((0...(bytes.count - needle.count)).first { Array(bytes[$0..<$0 + needle.count]) == needle })
    }

    /// The temporary files a restore left under `directory`.
    static func leftovers(_ directory: String) -> [String] {
        (FileManager.default.subpaths(atPath: directory) ?? []).filter { $0.contains("cairn-partial") }
    }

    @Test func aGoodPullIsByteExact() throws {
        let (dir, store, id, originals) = try Self.storeWithAModel()
        try store.restore(try store.manifest(id).files, to: dir.sub("out"))
        for (path, bytes) in originals { #expect(try readFile(dir.sub("out/" + path)) == bytes, "\(path)") }
        #expect(Self.leftovers(dir.sub("out")).isEmpty)
    }

    /// A byte of a path (config.json → config.jsoo) or of a file's SHA-256 changed in the stored
    /// manifest: the manifest still decodes, but it is not the one its id names.
    @Test(arguments: ["path", "file hash"])
    func aManifestChangedInTheIndexIsRefusedAndNothingIsWritten(_ what: String) throws {
        let (dir, store, id, originals) = try Self.storeWithAModel()
        let config = try #require(try store.manifest(id).file("config.json"))
        try Self.tamper(store, id) { bytes in
            if what == "path" {
                let at = try Self.offset(of: Array("config.json".utf8), in: bytes)
                bytes[at + 10] = UInt8(ascii: "o")  // config.jsoo
            } else {
                let at = try Self.offset(of: config.sha256.bytes, in: bytes)
                bytes[at] ^= 0x01
            }
        }
        // It still decodes: only the id shows that it changed.
        let stored = try #require(
            try store.readMetadata { try $0.get(MetadataTable(database: store.manifestsDB), id.bytes) }
        )
        #expect(try stored.withUnsafeBytes { try Manifest.decode($0) }.files.count == originals.count)

        func isTheDamage(_ error: any Error) -> Bool {
            guard let error = error as? CairnStoreError else { return false }
            return error.code == .corruption
                && error.message == "manifest \(id.hex) does not match its id: the index is damaged"
        }
        #expect { _ = try store.manifest(id) } throws: { isTheDamage($0) }
        #expect { _ = try store.readMetadata { try $0.manifest(id) } } throws: { isTheDamage($0) }
        // A pull reads the manifest first: it fails, and writes nothing.
        #expect {
            try store.restore(try store.manifest(id).files, to: dir.sub("out"))
        } throws: {
            isTheDamage($0)
        }
        #expect(!FileManager.default.fileExists(atPath: dir.sub("out")))
    }

    /// A manifest that lies about a file's SHA-256 while its chunks are intact, stored under the id
    /// its bytes hash to: the restore fails on that file, puts nothing wrong in place, leaves no
    /// temporary file; the files before it stay (whole), none after it is written.
    @Test(arguments: ["config.json", "model.bin", "zz-empty"])
    func aFileWhoseBytesDoNotHashToItsEntryIsNotPutInPlace(_ liar: String) throws {
        let (dir, store, id, originals) = try Self.storeWithAModel()
        let (lying, claimed) = try Self.lie(about: liar, in: store, id)
        #expect {
            try store.restore(try store.manifest(lying).files, to: dir.sub("out"))
        } throws: {
            Self.isTheMismatch($0, liar, originals[liar]!, claimed)
        }
        Self.expectStoppedAt(liar, under: dir.sub("out"), originals)
    }

    /// The same through a fetcher (a remote pull restores into its cache this way).
    @Test func aFetchedFileWhoseBytesDoNotHashToItsEntryIsNotPutInPlace() throws {
        let (dir, source, id, originals) = try Self.storeWithAModel()
        let (lying, claimed) = try Self.lie(about: "model.bin", in: source, id)
        let cache = try Store.create(at: dir.sub("cache"), config: source.config)
        let fetcher = FetchingRestoreTests.SourceFetcher(source)
        let files = try source.manifest(lying).files
        #expect {
            try cache.restore(files, to: dir.sub("out"), context: "model m version 2", fetcher: fetcher)
        } throws: {
            Self.isTheMismatch($0, "model.bin", originals["model.bin"]!, claimed)
                && ($0 as? CairnStoreError)?.message.hasPrefix("model m version 2: file model.bin: ") == true
        }
        Self.expectStoppedAt("model.bin", under: dir.sub("out"), originals)
    }

    /// A read of a whole file is checked against its SHA-256 (a file of one window never reaches
    /// the sink); a read of part of it gets its chunks' checks only, and its bytes are right.
    @Test func aWholeFileReadIsCheckedAndARangeIsNot() throws {
        let (dir, store, id, originals) = try Self.storeWithAModel()
        defer { withExtendedLifetime(dir) {} }  // the store lives in it
        for path in ["config.json", "model.bin", "zz-empty"] {
            let (lying, claimed) = try Self.lie(about: path, in: store, id)
            let file = try #require(try store.manifest(lying).file(path))
            var got = 0
            #expect {
                try store.read(file, range: 0..<file.size) { bytes, _ in got += bytes.count }
            } throws: {
                Self.isTheMismatch($0, path, originals[path]!, claimed)
            }
            #expect(got < max(1, originals[path]!.count), "\(path): not all of it reached the sink")
            if path == "config.json" { #expect(got == 0) }
            if file.size > 1 { #expect(try readBack(store, file, 1..<file.size) == Array(originals[path]![1...])) }
        }
    }

    /// Commits a copy of manifest `id` whose entry for `path` names another SHA-256 (its chunks
    /// unchanged); returns the new manifest's id and the SHA-256 it claims.
    static func lie(about path: String, in store: Store, _ id: SHA256Digest) throws -> (SHA256Digest, SHA256Digest) {
        var manifest = try store.manifest(id)
        let index = try #require(manifest.files.firstIndex { $0.path == path })
        let claimed = SHA256Digest.hash(Array("not the bytes of \(path)".utf8))
        manifest.files[index].sha256 = claimed
        let lying = try store.commit(manifest: manifest) { _, info in info.manifestID }
        #expect(lying != id)
        return (lying, claimed)
    }

    static func isTheMismatch(_ error: any Error, _ path: String, _ bytes: [UInt8], _ claimed: SHA256Digest) -> Bool {
        guard let error = error as? CairnStoreError else { return false }
        return error.code == .corruption
            && error.message.contains(
                "file \(path): its bytes hash to \(sha256(bytes).hex), the manifest says \(claimed.hex)"
            )
    }

    /// After a restore that failed on `failed`: the files before it whole, it and those after it
    /// absent, no temporary file.
    static func expectStoppedAt(_ failed: String, under out: String, _ originals: [String: [UInt8]]) {
        for path in originals.keys.sorted() {
            if path.utf8.lexicographicallyPrecedes(failed.utf8) {
                #expect((try? readFile(out + "/" + path)) == originals[path]!, "\(path) is whole")
            } else {
                #expect(!FileManager.default.fileExists(atPath: out + "/" + path), "\(path) is not there")
            }
        }
        #expect(leftovers(out).isEmpty)
    }
}
