import CairnFixtures
import Foundation
import Glibc
import Testing

/// A push that runs out of disk (a small tmpfs, mounted as root) fails with one line that says the
/// disk is full and names the file, and leaves the store as it was: it verifies, and lists no
/// version. Pushes sized to run out while writing packs and while committing the index.
@Suite(.serialized, .enabled(if: getuid() == 0, "mounting a small tmpfs needs root")) struct DiskFullTests {
    static func run(_ tool: String, _ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test func aFullDiskIsSaidAndChangesNothing() throws {
        let w = try CrossProcessTests.Workspace()
        let mount = w.dir("small").path
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        guard try Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mount]) == 0 else {
            Issue.record("cannot mount a tmpfs at \(mount)")
            return
        }
        defer { _ = try? Self.run("/bin/umount", [mount]) }
        let tree = w.dir("tree").path
        try FileManager.default.createDirectory(atPath: tree, withIntermediateDirectories: true)
        var failures = 0
        // From far too big to a size whose packs fit but whose index commit may not.
        for (i, size) in [5_000_000, 3_140_000, 3_110_000, 3_100_000, 3_090_000, 3_080_000].enumerated() {
            let store = mount + "/store\(i)"
            try ExitCodeTests.expectExit(0, ["init", "--store", store])
            try Data(FixtureData.bytes(count: size, seed: UInt64(i + 1))).write(
                to: URL(fileURLWithPath: tree + "/w.bin")
            )
            let run = try CrossProcessTests.cairn(["push", tree, "--model", "m", "--store", store])
            if run.status != 0 {
                failures += 1
                #expect(run.status == 1, "\(run.stderr)")
                let lines = run.stderr.split(separator: "\n")
                #expect(
                    lines.count == 1 && lines[0].hasPrefix("error: the disk is full: ") && lines[0].contains(store),
                    "\(run.stderr)"
                )
                try ExitCodeTests.expectExit(0, ["verify", "--store", store])
                let listed = try ExitCodeTests.expectExit(0, ["ls", "--json", "--store", store]).stdout
                #expect((try JSONSerialization.jsonObject(with: listed) as? [Any])?.isEmpty == true)
            }
            try FileManager.default.removeItem(atPath: store)
        }
        #expect(failures >= 2, "the 5 MB and 3.14 MB pushes cannot fit in 3 MiB")
    }
}
