import Foundation
import Glibc
import Testing

/// `cairn serve` in a child process on a free port of its own choosing (`--port 0`; a port picked
/// here could be taken), with the port and the admin token it printed in its banner. Stopped
/// (SIGTERM) when the value is released, unless the test stopped it first.
final class ServerProcess {
    let process = Process()
    let port: Int
    let token: String
    var url: String { "http://127.0.0.1:\(port)" }

    /// Starts the server on `store` (which must exist), writing its output to `log`.
    ///
    /// - Throws: when the server does not start within a minute (the test fails with its output).
    init(store: String, log: URL, arguments: [String] = []) throws {
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = CrossProcessTests.executable
        process.arguments = ["serve", "--store", store, "--port", "0", "--log-level", "warning"] + arguments
        let output = try FileHandle(forWritingTo: log)
        process.standardOutput = output
        process.standardError = output
        try process.run()
        // A debug build starting while other suites run can take seconds on a 2-core machine: wait up
        // to a minute, and stop waiting if the server exits.
        var token = ""
        var port = 0
        var text = ""
        for _ in 0..<3000 where port == 0 && process.isRunning {
            usleep(20_000)
            text = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            guard let listening = text.split(separator: "\n").first(where: { $0.contains("listening on http://") }),
                let tokenLine = text.split(separator: "\n").first(where: { $0.contains("export CAIRN_TOKEN=") })
            else { continue }
            token = String(tokenLine.split(separator: "=").last!)
            let address = listening.split(separator: " ").first(where: { $0.hasPrefix("http://") }) ?? ""
            port = Int(address.split(separator: ":").last ?? "") ?? 0
        }
        self.port = port
        self.token = token
        if port == 0 || token.isEmpty {
            if process.isRunning { process.terminate() }
            try #require(Bool(false), "cairn serve did not start; its output:\n\(text)")
        }
    }

    deinit {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }
}
