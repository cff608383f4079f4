import CairnFormats
import Testing

/// Builds a safetensors file from a JSON header text and `dataCount` bytes of data.
func safetensors(_ json: String, dataCount: Int) -> [UInt8] {
    var header = Array(json.utf8)
    while (8 + header.count) % 8 != 0 { header.append(0x20) }
    var out: [UInt8] = []
    for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64(i)))) }
    out += header
    out += (0..<dataCount).map { UInt8(truncatingIfNeeded: $0) }
    return out
}

func parse(_ file: [UInt8]) throws -> SafetensorsHeader {
    let n = try SafetensorsHeader.headerLength(file.prefix(8), fileSize: Int64(file.count))
    return try SafetensorsHeader.parse(headerBytes: file[8..<8 + n], fileSize: Int64(file.count))
}

func problem(_ file: [UInt8]) -> String? {
    do {
        _ = try parse(file)
        return nil
    } catch let error as SafetensorsError {
        return error.message
    } catch {
        return "unexpected \(error)"
    }
}

@Suite struct SafetensorsHeaderTests {
    @Test func validFileMapsTensorsToByteRanges() throws {
        let file = safetensors(
            #"{"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]},"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#,
            dataCount: 12
        )
        let header = try parse(file)
        #expect(header.metadata == ["format": "pt"])
        #expect(header.tensors.map(\.name) == ["a", "b"])
        let start = header.dataStart
        #expect(start % 8 == 0)
        #expect(header.tensors[0].fileRange == start..<start + 4)
        #expect(header.tensors[1].fileRange == start + 4..<start + 12)
        #expect(header.tensors[1].dtype == .f32 && header.tensors[1].shape == [2])
    }

    @Test func scalarsAndEmptyTensorsAreValid() throws {
        let file = safetensors(
            #"{"s":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"e":{"dtype":"F16","shape":[0,3],"data_offsets":[8,8]}}"#,
            dataCount: 8
        )
        #expect(try parse(file).tensors.count == 2)
    }

    @Test func truncatedHeaderLength() {
        #expect(problem([1, 2, 3])?.contains("truncated") == true)
    }

    @Test func headerLengthLargerThanFile() {
        var file = safetensors(#"{}"#, dataCount: 0)
        file[0] = 200
        #expect(problem(file)?.contains("larger than the file") == true)
        var huge = file
        huge[0..<8] = [0, 0, 0, 0, 0, 0, 0, 1]  // 2^56
        #expect(problem(huge)?.contains("exceeds the limit") == true)
    }

    @Test func badJSON() {
        #expect(problem(safetensors(#"{"a": {"dtype": "F32", "#, dataCount: 0)) == "header is not valid JSON")
        #expect(problem(safetensors(#"[1, 2]"#, dataCount: 0)) == "header is not a JSON object")
    }

    @Test func offsetsOutOfRange() {
        let file = safetensors(#"{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}"#, dataCount: 8)
        #expect(problem(file)?.contains("reach past the end") == true)
        let reversed = safetensors(#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[8,4]}}"#, dataCount: 8)
        #expect(problem(reversed)?.contains("not ordered") == true)
        let negative = safetensors(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[-4,0]}}"#, dataCount: 8)
        #expect(problem(negative) != nil)
    }

    @Test func overlappingTensors() {
        let file = safetensors(
            #"{"a":{"dtype":"U8","shape":[6],"data_offsets":[0,6]},"b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}}"#,
            dataCount: 8
        )
        #expect(problem(file)?.contains("overlap") == true)
    }

    @Test func unknownDType() {
        let file = safetensors(#"{"a":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#, dataCount: 16)
        #expect(problem(file) == #"tensor "a": unknown dtype "F128""#)
    }

    @Test func shapeDoesNotMatchOffsets() {
        let file = safetensors(#"{"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}}"#, dataCount: 8)
        #expect(problem(file)?.contains("needs 6 bytes, data_offsets span 8") == true)
        let boolean = safetensors(#"{"a":{"dtype":"U8","shape":[true],"data_offsets":[0,1]}}"#, dataCount: 8)
        #expect(problem(boolean)?.contains("non-negative integers") == true)
        let overflow = safetensors(
            #"{"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#,
            dataCount: 8
        )
        #expect(problem(overflow) != nil)
    }
}

@Suite struct SafetensorsOverlapTests {
    @Test func overlapAcrossAnEmptyTensorIsFound() {
        let file = safetensors(
            #"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"e":{"dtype":"U8","shape":[0],"data_offsets":[2,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}}"#,
            dataCount: 8
        )
        #expect(problem(file)?.contains("overlap") == true)
    }
}
