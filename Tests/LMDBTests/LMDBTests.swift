import Foundation
import LMDB
import Testing

@Suite struct LMDBTests {
    func withEnvironment(_ body: (Environment) throws -> Void) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("lmdb-\(UUID().uuidString).mdb").path
        defer {
            try? FileManager.default.removeItem(atPath: path)
            try? FileManager.default.removeItem(atPath: path + "-lock")
        }
        let env = try Environment(path: path, maxDatabases: 4, mapSize: 64 << 20)
        defer { env.close() }
        try body(env)
    }

    @Test func putGetDeleteRoundTrip() throws {
        try withEnvironment { env in
            let db = try env.openDatabase("t")
            try env.write { txn in
                try txn.put(db, key: Array("b".utf8), value: [2])
                try txn.put(db, key: Array("a".utf8), value: [1])
            }
            #expect(try env.read { try $0.get(db, key: Array("a".utf8)) } == [1])
            #expect(try env.read { try $0.get(db, key: Array("zz".utf8)) } == nil)
            #expect(try env.read { try $0.count(db) } == 2)
            #expect(try env.write { try $0.delete(db, key: Array("a".utf8)) })
            #expect(try env.write { try $0.delete(db, key: Array("a".utf8)) } == false)
            #expect(try env.read { try $0.count(db) } == 1)
        }
    }

    @Test func throwingWriteAbortsEverything() throws {
        struct Stop: Error {}
        try withEnvironment { env in
            let db = try env.openDatabase("t")
            #expect(throws: Stop.self) {
                try env.write { txn in
                    try txn.put(db, key: [1], value: [1])
                    throw Stop()
                }
            }
            #expect(try env.read { try $0.count(db) } == 0)
        }
    }

    @Test func cursorVisitsInKeyOrderFromAStartKey() throws {
        try withEnvironment { env in
            let db = try env.openDatabase("t")
            try env.write { txn in
                for k in [5, 1, 9, 3, 7] as [UInt8] { try txn.put(db, key: [k], value: [k * 2]) }
            }
            var keys: [UInt8] = []
            try env.read { txn in
                try txn.forEach(db, from: [4]) { k, _ in
                    keys.append(k[0])
                    return true
                }
            }
            #expect(keys == [5, 7, 9])
            keys = []
            try env.read { txn in
                try txn.forEach(db, from: [6], reverse: true) { k, _ in
                    keys.append(k[0])
                    return true
                }
            }
            #expect(keys == [5, 3, 1])
            keys = []
            try env.read { txn in
                try txn.forEach(db) { k, _ in
                    keys.append(k[0])
                    return keys.count < 2
                }
            }
            #expect(keys == [1, 3])
        }
    }

    @Test func appendRequiresSortedKeys() throws {
        try withEnvironment { env in
            let db = try env.openDatabase("t")
            try env.write { txn in
                try txn.put(db, key: [1], value: [], append: true)
                try txn.put(db, key: [2], value: [], append: true)
            }
            #expect(throws: LMDBError.self) { try env.write { try $0.put(db, key: [0], value: [], append: true) } }
        }
    }
}
