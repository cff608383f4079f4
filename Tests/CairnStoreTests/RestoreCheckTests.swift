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
}
