import CairnFixtures
import Foundation
import Testing

/// What killed pushes leave in the store's `tmp/` is reported by verify (with counts, not as
/// damage) and removed by gc, which says how many it removed.
@Suite(.serialized) struct LeftoverFileTests {
    @Test func verifyReportsLeftoversAndGCRemovesThem() throws {
        let w = try CrossProcessTests.Workspace()
        let store = ["--store", w.store, "--user", "alice"]
        try FixtureModels.writeBase(to: w.dir("base"), shape: .tiny, seed: 1)
        try ExitCodeTests.expectExit(0, ["init"] + store)
        try ExitCodeTests.expectExit(0, ["push", w.dir("base").path, "--model", "m"] + store)
        // Two packs a killed push was writing.
        for (name, size) in [("0123456789abcdef.pack.tmp", 70_000), ("fedcba9876543210.pack.tmp", 30_000)] {
            try Data(FixtureData.bytes(count: size, seed: 3)).write(to: URL(fileURLWithPath: w.store + "/tmp/" + name))
        }
        let text = String(decoding: try ExitCodeTests.expectExit(0, ["verify"] + store).stdout, as: UTF8.self)
        #expect(text.contains("2 leftover temporary files of killed pushes, 100.0 KB"), "\(text)")
        let json = try ExitCodeTests.expectExit(0, ["verify", "--json"] + store).stdout
        let verified = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(
            verified["leftover_temporary_files"] as? Int == 2 && verified["leftover_temporary_bytes"] as? Int == 100_000
        )
        #expect(verified["ok"] as? Bool == true, "leftovers are not damage")

        // Within the grace period they stay; past it (here: none) gc removes them and counts them.
        let kept = try ExitCodeTests.expectExit(0, ["gc", "--json"] + store).stdout
        #expect(
            (try JSONSerialization.jsonObject(with: kept) as? [String: Any])?["removed_temporary_files"] as? Int == 0
        )
        let removed = try ExitCodeTests.expectExit(0, ["gc", "--grace-period", "0", "--json"] + store).stdout
        let report = try #require(try JSONSerialization.jsonObject(with: removed) as? [String: Any])
        #expect(report["removed_temporary_files"] as? Int == 2 && report["removed_temporary_bytes"] as? Int == 100_000)
        #expect(try FileManager.default.contentsOfDirectory(atPath: w.store + "/tmp").isEmpty)
        try ExitCodeTests.expectExit(0, ["pull", "m", "--out", w.dir("out").path] + store)
    }
}
