/// Element types of safetensors tensors, by the names the format's `dtype` field uses.
public enum SafetensorsDType: String, Sendable, CaseIterable, Codable {
    /// Booleans, one byte each.
    case bool = "BOOL"
    /// Unsigned 8-bit integers.
    case u8 = "U8"
    /// Signed 8-bit integers.
    case i8 = "I8"
    /// 8-bit floats with 4 exponent and 3 mantissa bits.
    case f8e4m3 = "F8_E4M3"
    /// 8-bit floats with 5 exponent and 2 mantissa bits.
    case f8e5m2 = "F8_E5M2"
    /// Signed 16-bit integers.
    case i16 = "I16"
    /// Unsigned 16-bit integers.
    case u16 = "U16"
    /// IEEE 754 half-precision floats.
    case f16 = "F16"
    /// bfloat16: the top half of an IEEE 754 single-precision float.
    case bf16 = "BF16"
    /// Signed 32-bit integers.
    case i32 = "I32"
    /// Unsigned 32-bit integers.
    case u32 = "U32"
    /// IEEE 754 single-precision floats.
    case f32 = "F32"
    /// Signed 64-bit integers.
    case i64 = "I64"
    /// Unsigned 64-bit integers.
    case u64 = "U64"
    /// IEEE 754 double-precision floats.
    case f64 = "F64"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .bool, .u8, .i8, .f8e4m3, .f8e5m2: 1
        case .i16, .u16, .f16, .bf16: 2
        case .i32, .u32, .f32: 4
        case .i64, .u64, .f64: 8
        }
    }
}
