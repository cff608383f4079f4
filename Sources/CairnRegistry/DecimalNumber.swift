/// Metric values as people write them: decimal numbers only.
///
/// `Double(_:)` also reads hexadecimal (`0x10` is 16), `inf`, `nan` and `infinity`, none of which
/// a user typing a metric means; a registry that stored `0x10` as 16 would record a value nobody
/// wrote. One rule for every place a metric value or threshold is read from text.
public enum DecimalNumber {
    /// The value of `text` when it is a finite decimal number: an optional sign, digits with an
    /// optional fraction (at least one digit in all), and an optional exponent (`1.5`, `-2`,
    /// `.5`, `3e-4`); nil for anything else.
    public static func parse(_ text: some StringProtocol) -> Double? {
        var digits = 0
        var i = text.utf8.startIndex
        let end = text.utf8.endIndex
        func peek() -> UInt8? { i < end ? text.utf8[i] : nil }
        func isDigit(_ c: UInt8?) -> Bool { c.map { $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") } ?? false }
        if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { i = text.utf8.index(after: i) }
        while isDigit(peek()) {
            digits += 1
            i = text.utf8.index(after: i)
        }
        if peek() == UInt8(ascii: ".") {
            i = text.utf8.index(after: i)
            while isDigit(peek()) {
                digits += 1
                i = text.utf8.index(after: i)
            }
        }
        guard digits > 0 else { return nil }
        if peek() == UInt8(ascii: "e") || peek() == UInt8(ascii: "E") {
            i = text.utf8.index(after: i)
            if peek() == UInt8(ascii: "+") || peek() == UInt8(ascii: "-") { i = text.utf8.index(after: i) }
            guard isDigit(peek()) else { return nil }
            while isDigit(peek()) { i = text.utf8.index(after: i) }
        }
        guard i == end, let value = Double(String(text)), value.isFinite else { return nil }
        return value
    }
}
