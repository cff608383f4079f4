import Digest

extension Store {
    /// The stored length (after compression, without the record header) of each indexed chunk
    /// among `ids`; ids that are not indexed are left out.
    package func storedLengths(_ ids: some Sequence<SHA256Digest>) throws -> [SHA256Digest: Int64] {
        try lmdb {
            try environment.read { txn in
                var out: [SHA256Digest: Int64] = [:]
                for id in ids where out[id] == nil {
                    if let location = try location(of: id, in: txn) { out[id] = Int64(location.storedLength) }
                }
                return out
            }
        }
    }
}
