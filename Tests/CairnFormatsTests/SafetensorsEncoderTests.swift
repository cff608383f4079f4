import CairnFormats
import Foundation
import Testing

@Suite struct SafetensorsEncoderTests {
    @Test func roundTripKeepsNamesShapesMetadataAndBytes() throws {
        let tensors: [(entry: SafetensorsEncoder.Entry, data: [UInt8])] = [
            (.init(name: "z.weight", dtype: .bf16, shape: [2, 3]), (0..<12).map { UInt8($0) }),
            (.init(name: "a \"quoted\" \\ name\n", dtype: .f32, shape: [1]), [1, 2, 3, 4]),
            (.init(name: "scalar", dtype: .i64, shape: []), [9, 9, 9, 9, 9, 9, 9, 9]),
            (.init(name: "empty", dtype: .f16, shape: [0, 4]), []),
            (.init(name: "ünïcode.bias", dtype: .u8, shape: [3]), [7, 8, 9]),
        ]
        let file = try SafetensorsEncoder.file(tensors, metadata: ["format": "pt", "note": "a\"b"])
        let n = try SafetensorsHeader.headerLength(file.prefix(8), fileSize: Int64(file.count))
        #expect((8 + n) % 8 == 0, "the data section starts 8-byte aligned")
        let header = try SafetensorsHeader.parse(headerBytes: file[8..<8 + n], fileSize: Int64(file.count))
        #expect(header.metadata == ["format": "pt", "note": "a\"b"])
        #expect(Set(header.tensors.map(\.name)) == Set(tensors.map(\.entry.name)))
        // Offsets are contiguous in the order written.
        var at: Int64 = 0
        for (entry, data) in tensors {
            let t = try #require(header.tensor(named: entry.name))
            #expect(t.dtype == entry.dtype && t.shape == entry.shape)
            #expect(t.dataOffsets == at..<at + Int64(data.count))
            #expect(Array(file[Int(t.fileRange.lowerBound)..<Int(t.fileRange.upperBound)]) == data)
            at += Int64(data.count)
        }
        #expect(Int64(file.count) == header.dataStart + at)
        // The header bytes alone give the same layout.
        let (prefix, layout) = try SafetensorsEncoder.header(
            for: tensors.map(\.entry),
            metadata: ["format": "pt", "note": "a\"b"]
        )
        #expect(Array(file.prefix(prefix.count)) == prefix)
        #expect(layout == header)
    }

    @Test func headerMatchesTheReferenceLayout() throws {
        let (bytes, _) = try SafetensorsEncoder.header(
            for: [.init(name: "a", dtype: .bf16, shape: [2])],
            metadata: nil
        )
        let json = String(decoding: bytes[8...], as: UTF8.self)
        #expect(json.hasPrefix(#"{"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#))
        #expect(json.count % 8 == 0 && json.trimmingCharacters(in: .whitespaces).count < json.count)
    }

    @Test func parsedTensorsCanBeRewrittenAsASubset() throws {
        let original = try SafetensorsEncoder.file(
            [
                (.init(name: "a", dtype: .u8, shape: [3]), [1, 2, 3]),
                (.init(name: "b", dtype: .u16, shape: [2]), [4, 5, 6, 7]),
                (.init(name: "c", dtype: .u8, shape: [1]), [8]),
            ],
            metadata: [:]
        )
        let n = try SafetensorsHeader.headerLength(original.prefix(8), fileSize: Int64(original.count))
        let header = try SafetensorsHeader.parse(headerBytes: original[8..<8 + n], fileSize: Int64(original.count))
        let keep = header.tensors.filter { $0.name != "b" }
        let subset = try SafetensorsEncoder.file(
            keep.map {
                (
                    SafetensorsEncoder.Entry($0),
                    Array(original[Int($0.fileRange.lowerBound)..<Int($0.fileRange.upperBound)])
                )
            },
            metadata: header.metadata
        )
        let m = try SafetensorsHeader.headerLength(subset.prefix(8), fileSize: Int64(subset.count))
        let parsed = try SafetensorsHeader.parse(headerBytes: subset[8..<8 + m], fileSize: Int64(subset.count))
        #expect(parsed.metadata == [:])
        #expect(parsed.tensors.map(\.name) == ["a", "c"])
        #expect(Array(subset[Int(parsed.dataStart)...]) == [1, 2, 3, 8])
    }

    @Test func refusesInvalidEntries() {
        #expect(throws: SafetensorsError.self) {
            try SafetensorsEncoder.header(
                for: [.init(name: "x", dtype: .u8, shape: [1]), .init(name: "x", dtype: .u8, shape: [1])],
                metadata: nil
            )
        }
        #expect(throws: SafetensorsError.self) {
            try SafetensorsEncoder.header(for: [.init(name: "__metadata__", dtype: .u8, shape: [1])], metadata: nil)
        }
        #expect(throws: SafetensorsError.self) {
            try SafetensorsEncoder.header(for: [.init(name: "n", dtype: .u8, shape: [-1])], metadata: nil)
        }
        #expect(throws: SafetensorsError.self) {
            try SafetensorsEncoder.file([(.init(name: "s", dtype: .f32, shape: [2]), [0, 0, 0])])
        }
    }
}

@Suite struct SafetensorsIndexTests {
    @Test func rewriteKeepsMetadataAndUpdatesTotalSize() throws {
        let original = Array(
            #"{"metadata":{"total_size":100,"format":"pt"},"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"},"extra":[1]}"#
                .utf8
        )
        #expect(try SafetensorsIndex.parse(original).weightMap == ["a": "s1.safetensors", "b": "s2.safetensors"])
        let rewritten = try SafetensorsIndex.rewrite(original, weightMap: ["b": "s2.safetensors"], totalSize: 8)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(rewritten)) as? [String: Any])
        #expect(object["weight_map"] as? [String: String] == ["b": "s2.safetensors"])
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect((metadata["total_size"] as? NSNumber)?.int64Value == 8 && metadata["format"] as? String == "pt")
        #expect(object["extra"] != nil)
        #expect(try SafetensorsIndex.parse(rewritten).weightMap == ["b": "s2.safetensors"])
    }

    @Test func malformedIndexesAreErrors() {
        #expect(throws: SafetensorsError.self) { try SafetensorsIndex.parse(Array("{".utf8)) }
        #expect(throws: SafetensorsError.self) { try SafetensorsIndex.parse(Array(#"{"metadata":{}}"#.utf8)) }
        #expect(throws: SafetensorsError.self) { try SafetensorsIndex.parse(Array(#"{"weight_map":{"a":1}}"#.utf8)) }
        #expect(
            SafetensorsIndex.isIndex("sub/model.safetensors.index.json")
                && !SafetensorsIndex.isIndex("model.safetensors")
        )
    }
}
