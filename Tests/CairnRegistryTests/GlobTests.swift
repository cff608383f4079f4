import CairnRegistry
import Testing

@Suite struct GlobTests {
    func m(_ pattern: String, _ path: String) throws -> Bool { try Glob(pattern).matches(path) }

    @Test func starStaysWithinAComponent() throws {
        #expect(try m("*.safetensors", "model-00001-of-00002.safetensors"))
        #expect(try m("*.safetensors", "shards/a.safetensors"))  // no slash: matches the file name anywhere
        #expect(try !m("shards/*.json", "shards/sub/a.json"))
        #expect(try m("shards/*.json", "shards/a.json"))
        #expect(try !m("*.json", "a.safetensors"))
    }

    @Test func doubleStarCrossesDirectories() throws {
        #expect(try m("**/a.bin", "a.bin"))
        #expect(try m("**/a.bin", "x/y/a.bin"))
        #expect(try m("x/**", "x/y/z"))
        #expect(try m("x/**/z", "x/z"))
        #expect(try m("x/**/z", "x/a/b/z"))
        #expect(try !m("x/**/z", "y/a/z"))
    }

    @Test func questionMarkAndLiterals() throws {
        #expect(try m("model-0000?-of-00002.safetensors", "model-00002-of-00002.safetensors"))
        #expect(try !m("a?c", "a/c"))
        #expect(try m("/config.json", "config.json"))
        #expect(try !m("/config.json", "sub/config.json"))
        #expect(try m("model.layers.0.*", "model.layers.0.mlp.up_proj.weight"))
        #expect(try !m("model.layers.0.*", "model.layers.10.mlp.up_proj.weight"))
    }

    @Test func selectionCombinesIncludesAndExcludes() throws {
        let s = try FileSelection(include: ["*.safetensors", "config.json"], exclude: ["model-00002*"])
        #expect(s.contains("model-00001-of-00002.safetensors"))
        #expect(!s.contains("model-00002-of-00002.safetensors"))
        #expect(s.contains("config.json"))
        #expect(!s.contains("tokenizer.json"))
        #expect(try FileSelection().contains("anything"))
        #expect(throws: RegistryError.self) { try Glob("") }
    }
}
