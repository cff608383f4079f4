import CairnRegistry
import Foundation
import Synchronization

/// Counters exported at `/metrics` in the Prometheus text format. `package`: the tests read the
/// transfer counters to check what crossed the wire.
package final class ServerMetrics: Sendable {
    struct RequestKey: Hashable {
        var route: String
        var method: String
        var status: Int
    }

    private let requests = Mutex<[RequestKey: Int]>([:])
    private let bytesIn = Atomic<Int>(0)
    private let bytesOut = Atomic<Int>(0)
    private let uploadBundleBytes = Atomic<Int>(0)
    private let fetchBundleBytes = Atomic<Int>(0)
    private let fetchFileBytes = Atomic<Int>(0)
    private let chunksReceived = Atomic<Int>(0)
    private let chunksStored = Atomic<Int>(0)
    private let chunkBytesStored = Atomic<Int>(0)
    private let inFlight = Atomic<Int>(0)

    package init() {}

    func begin() { inFlight.add(1, ordering: .relaxed) }

    func record(route: String, method: String, status: Int, bytesIn: Int, bytesOut: Int) {
        inFlight.subtract(1, ordering: .relaxed)
        requests.withLock { $0[RequestKey(route: route, method: method, status: status), default: 0] += 1 }
        self.bytesIn.add(bytesIn, ordering: .relaxed)
        self.bytesOut.add(bytesOut, ordering: .relaxed)
    }

    func recordUpload(wireBytes: Int, received: Int, newChunks: Int, newBytes: Int64) {
        uploadBundleBytes.add(wireBytes, ordering: .relaxed)
        chunksReceived.add(received, ordering: .relaxed)
        chunksStored.add(newChunks, ordering: .relaxed)
        chunkBytesStored.add(Int(newBytes), ordering: .relaxed)
    }

    /// A fetch reply of `wireBytes`, sent `fromFiles` (``FileBodies``) or from a buffer.
    func recordFetch(wireBytes: Int, fromFiles: Bool) {
        fetchBundleBytes.add(wireBytes, ordering: .relaxed)
        if fromFiles { fetchFileBytes.add(wireBytes, ordering: .relaxed) }
    }

    /// Bytes of chunk bundles received by `POST /v1/chunks` since the server started.
    package var chunkUploadBytes: Int { uploadBundleBytes.load(ordering: .relaxed) }

    /// Bytes of chunk bundles sent by `POST /v1/chunks/fetch` since the server started.
    package var chunkFetchBytes: Int { fetchBundleBytes.load(ordering: .relaxed) }

    /// Of ``chunkFetchBytes``, those of replies sent from the pack files (`sendfile`).
    package var chunkFetchBytesFromFiles: Int { fetchFileBytes.load(ordering: .relaxed) }

    /// Requests answered so far with this route and status.
    package func requestCount(route: String, status: Int) -> Int {
        requests.withLock { table in
            table.filter { $0.key.route == route && $0.key.status == status }.values.reduce(0, +)
        }
    }

    /// The Prometheus text exposition (version 0.0.4).
    func render(store: RegistryStatistics?) -> String {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func escape(_ s: String) -> String {
            s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
                .replacingOccurrences(of: "\n", with: "\\n")
        }
        family("cairn_http_requests_total", "counter", "HTTP requests answered, by route, method and status.")
        let table = requests.withLock { $0 }
        for (key, count) in table.sorted(by: {
            ($0.key.route, $0.key.method, $0.key.status) < ($1.key.route, $1.key.method, $1.key.status)
        }) {
            out +=
                "cairn_http_requests_total{route=\"\(escape(key.route))\",method=\"\(key.method)\",status=\"\(key.status)\"} \(count)\n"
        }
        family("cairn_http_requests_in_flight", "gauge", "Requests being handled.")
        out += "cairn_http_requests_in_flight \(inFlight.load(ordering: .relaxed))\n"
        family("cairn_http_request_bytes_total", "counter", "Bytes of request bodies received.")
        out += "cairn_http_request_bytes_total \(bytesIn.load(ordering: .relaxed))\n"
        family("cairn_http_response_bytes_total", "counter", "Bytes of response bodies sent.")
        out += "cairn_http_response_bytes_total \(bytesOut.load(ordering: .relaxed))\n"
        family("cairn_chunk_upload_bytes_total", "counter", "Bytes of chunk bundles received (chunk data on the wire).")
        out += "cairn_chunk_upload_bytes_total \(uploadBundleBytes.load(ordering: .relaxed))\n"
        family("cairn_chunk_fetch_bytes_total", "counter", "Bytes of chunk bundles sent.")
        out += "cairn_chunk_fetch_bytes_total \(fetchBundleBytes.load(ordering: .relaxed))\n"
        family(
            "cairn_chunk_fetch_file_bytes_total",
            "counter",
            "Bytes of chunk bundles sent from the pack files (sendfile)."
        )
        out += "cairn_chunk_fetch_file_bytes_total \(fetchFileBytes.load(ordering: .relaxed))\n"
        family("cairn_chunks_received_total", "counter", "Chunks received in uploads (verified).")
        out += "cairn_chunks_received_total \(chunksReceived.load(ordering: .relaxed))\n"
        family("cairn_chunks_stored_total", "counter", "Chunks uploads added to the store.")
        out += "cairn_chunks_stored_total \(chunksStored.load(ordering: .relaxed))\n"
        family("cairn_chunk_stored_raw_bytes_total", "counter", "Raw bytes of the chunks uploads added.")
        out += "cairn_chunk_stored_raw_bytes_total \(chunkBytesStored.load(ordering: .relaxed))\n"
        if let s = store {
            family("cairn_store_models", "gauge", "Models in the store.")
            out += "cairn_store_models \(s.models)\n"
            family("cairn_store_versions", "gauge", "Live versions in the store.")
            out += "cairn_store_versions \(s.versions)\n"
            family("cairn_store_chunks", "gauge", "Distinct chunks stored.")
            out += "cairn_store_chunks \(s.chunks)\n"
            family("cairn_store_logical_bytes", "gauge", "Sum of the file sizes of all live versions.")
            out += "cairn_store_logical_bytes \(s.logicalBytes)\n"
            family("cairn_store_unique_bytes", "gauge", "Raw bytes of distinct chunks (after dedup).")
            out += "cairn_store_unique_bytes \(s.uniqueBytes)\n"
            family("cairn_store_stored_bytes", "gauge", "Bytes of pack files on disk.")
            out += "cairn_store_stored_bytes \(s.storedBytes)\n"
            family("cairn_store_packs", "gauge", "Pack files referenced by the index.")
            out += "cairn_store_packs \(s.packs)\n"
        }
        return out
    }
}
