import Foundation

/// Output helpers: JSON on stdout, human-readable sizes and aligned tables.
enum Output {
    static func json<T: Encodable>(_ value: T) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        var data = try encoder.encode(value)
        data.append(UInt8(ascii: "\n"))
        write(data)
    }

    /// Writes one line, its control characters escaped (``escaped(_:)``).
    static func line(_ text: String) {
        write(Data((escaped(text) + "\n").utf8))
    }

    /// `text` with every character that could steer a terminal shown as an escape instead: C0 and
    /// C1 control characters (ESC starts colour and cursor sequences; a newline in a file name
    /// would forge a line of output) as `\x1b`, `\n`, …, and the bidirectional overrides that
    /// reorder what is displayed as `\u{202e}`. File names, tags and messages come from other
    /// people; none of them may rewrite what a reader sees.
    static func escaped(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: needsEscape) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            guard needsEscape(scalar) else {
                out.unicodeScalars.append(scalar)
                continue
            }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                out +=
                    scalar.value < 0x100
                    ? "\\x" + String(scalar.value, radix: 16).leftPadded(to: 2)
                    : "\\u{" + String(scalar.value, radix: 16) + "}"
            }
        }
        return out
    }

    private static func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x20, 0x7F..<0xA0, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    /// Writes to stdout; when the reader has gone (`cairn ls | head`, with SIGPIPE ignored, as the
    /// HTTP client does), exits quietly instead of crashing.
    static func write(_ data: Data) {
        do {
            try FileHandle.standardOutput.write(contentsOf: data)
        } catch {
            exit(0)
        }
    }

    /// 1.2 MB, 338.0 MB, 3.05 GB (decimal units, like the benchmarks).
    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while abs(value) >= 1000 && unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f %@", value, units[unit])
    }

    /// `[192, 512]` (a scalar is `[]`).
    static func shape(_ dims: [Int]) -> String {
        "[" + dims.map(String.init).joined(separator: ", ") + "]"
    }

    /// Left-aligned columns separated by two spaces.
    static func table(_ header: [String], _ rows: [[String]]) {
        let all = [header] + rows
        var widths = [Int](repeating: 0, count: header.count)
        for row in all {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        for row in all {
            let cells = row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }
            line(cells.joined(separator: "  "))
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
