import Testing

@testable import cairn

@Suite struct ParsingTests {
    @Test func pushParsesMetadataOptions() throws {
        let command = try Cairn.parseAsRoot([
            "push", "out", "--model", "llama", "--message", "m", "--metric", "eval_loss=1.5", "--tag", "dataset=x",
            "--parent", "base@1", "--store", "/tmp/s", "--json",
        ])
        let push = try #require(command as? Cairn.Push)
        #expect(push.path == "out" && push.model == "llama" && push.metric == ["eval_loss=1.5"])
        #expect(push.global.store == "/tmp/s" && push.global.json)
    }

    @Test func catRangeIsInclusive() throws {
        #expect(try Cairn.Cat.parseRange("0-9") == 0...9)
        #expect(try Cairn.Cat.parseRange("5-") == 5...(Int64.max - 1))
        #expect(throws: (any Error).self) { try Cairn.Cat.parseRange("9-1") }
        #expect(throws: (any Error).self) { try Cairn.Cat.parseRange("x") }
    }

    @Test func missingRequiredOptionIsAUsageError() {
        #expect(throws: (any Error).self) { try Cairn.parseAsRoot(["push", "dir"]) }
    }
}
