import Foundation

/// What a `Range` header asks for.
enum ByteRanges: Equatable {
    /// No (usable) Range header: the whole file.
    case whole
    /// These ranges, in the order asked (at most 16).
    case ranges([Range<Int64>])
    /// Malformed or outside the file: 416.
    case unsatisfiable

    /// Parses `bytes=0-99`, `bytes=100-`, `bytes=-500` and lists of them (RFC 9110 §14.1.2).
    /// Units other than bytes are ignored; more than 16 ranges are ignored (the whole file).
    static func parse(_ header: String?, size: Int64) -> ByteRanges {
        guard let header else { return .whole }
        let trimmed = header.trimmingCharacters(in: .whitespaces)
        guard let eq = trimmed.firstIndex(of: "="),
            trimmed[..<eq].trimmingCharacters(in: .whitespaces).lowercased() == "bytes"
        else {
            return .whole
        }
        let specs = trimmed[trimmed.index(after: eq)...].split(separator: ",", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }
        if specs.count > 16 { return .whole }
        var out: [Range<Int64>] = []
        for spec in specs {
            guard let dash = spec.firstIndex(of: "-") else { return .unsatisfiable }
            let first = spec[..<dash]
            let last = spec[spec.index(after: dash)...]
            func number(_ s: Substring) -> Int64? {
                s.allSatisfy(\.isASCII) && s.allSatisfy(\.isNumber) && !s.isEmpty ? Int64(s) : nil
            }
            if first.isEmpty {
                guard let n = number(last) else { return .unsatisfiable }
                if n == 0 || size == 0 { continue }
                out.append(max(0, size - n)..<size)
            } else {
                guard let a = number(first) else { return .unsatisfiable }
                if last.isEmpty {
                    if a < size { out.append(a..<size) }
                } else {
                    guard let b = number(last), b >= a else { return .unsatisfiable }
                    if a < size { out.append(a..<min(b, size - 1) + 1) }
                }
            }
        }
        return out.isEmpty ? .unsatisfiable : .ranges(out)
    }
}
