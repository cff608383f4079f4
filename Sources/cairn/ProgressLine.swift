import CairnStore
import Foundation
import Glibc

/// A one-line progress display on stderr (bytes, MB/s, new share, ETA), drawn only when stderr is a
/// terminal and at most ten times a second.
final class ProgressLine {
    private let label: String
    private let enabled: Bool
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var drew = false

    init(_ label: String, quiet: Bool = false) {
        self.label = label
        self.enabled = !quiet && isatty(STDERR_FILENO) == 1
    }

    func update(_ p: TransferProgress) {
        guard enabled else { return }
        draw(done: p.doneBytes, total: p.totalBytes, new: p.newBytes)
    }

    private func draw(done: Int64, total: Int64, new: Int64) {
        let p = (doneBytes: done, totalBytes: total, newBytes: new)
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= 0.1 || p.doneBytes == p.totalBytes else { return }
        lastDraw = now
        let elapsed = max(now.timeIntervalSince(start), 0.001)
        let rate = Double(p.doneBytes) / elapsed
        var text =
            "\(label) \(Output.bytes(p.doneBytes)) / \(Output.bytes(p.totalBytes))  \(Output.bytes(Int64(rate)))/s"
        if label == "push", p.doneBytes > 0 {
            text += String(format: "  dedup %.0f%%", 100 * (1 - Double(p.newBytes) / Double(p.doneBytes)))
        }
        if rate > 0, p.totalBytes > p.doneBytes {
            text += String(format: "  ETA %.0fs", Double(p.totalBytes - p.doneBytes) / rate)
        }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8))
        drew = true
    }

    /// Progress of a read that is not a whole-file transfer (tensor pulls).
    func update(done: Int64, total: Int64) {
        guard enabled else { return }
        draw(done: done, total: total, new: 0)
    }

    /// Clears the line.
    func finish() {
        if drew { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
