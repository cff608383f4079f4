import Foundation

/// Times as the registry writes and reads them: every recorded time is ISO 8601 UTC with
/// milliseconds (``format(_:)``); points in time given by users (`show --at`, `audit --since`) are
/// read by ``parse(_:dateOnly:)``.
public enum RegistryTime {
    /// How a plain date (`2026-03-10`) is read.
    public enum DateOnly: Sendable {
        /// The first instant of the day (UTC): `--since 2026-03-10` includes that whole day.
        case startOfDay
        /// The last millisecond of the day (UTC): `--at 2026-03-10` is the state at the end of that day.
        case endOfDay
    }

    /// Parses an ISO 8601 time (`2026-03-10T14:05:00Z`, with or without fractional seconds, `Z` or
    /// an offset such as `+02:00`; without a zone it is UTC) or a plain date `YYYY-MM-DD`.
    ///
    /// - Throws: ``RegistryError`` with `.invalidArgument` naming the accepted forms.
    public static func parse(_ text: String, dateOnly: DateOnly) throws -> Date {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let date = Self.date(trimmed) {
            switch dateOnly {
            case .startOfDay: return date
            case .endOfDay: return date.addingTimeInterval(86_400 - 0.001)
            }
        }
        var candidates = [trimmed]
        // No zone given: UTC.
        if trimmed.contains("T"), !trimmed.hasSuffix("Z"), !trimmed.hasSuffix("z"),
            trimmed.split(separator: "T").last.map({ !$0.contains("+") && !$0.contains("-") }) == true
        {
            candidates.append(trimmed + "Z")
        }
        for candidate in candidates {
            for options: ISO8601DateFormatter.Options in [
                [.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime],
            ] {
                let formatter = ISO8601DateFormatter()
                formatter.formatOptions = options
                if let date = formatter.date(from: candidate.uppercased()) { return date }
            }
        }
        throw RegistryError(
            .invalidArgument,
            "invalid time \"\(text)\": use ISO 8601 (2026-03-10T14:05:00Z, 2026-03-10T14:05:00.250+01:00) or a date (2026-03-10)"
        )
    }

    private static func date(_ text: String) -> Date? {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0].count == 4, parts[1].count == 2, parts[2].count == 2,
            let year = Int(parts[0]), let month = Int(parts[1]), let day = Int(parts[2]),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let components = DateComponents(year: year, month: month, day: day)
        guard let date = calendar.date(from: components), calendar.component(.day, from: date) == day else {
            return nil
        }
        return date
    }

    /// `date` in the form the registry records times in: ISO 8601 UTC with milliseconds, e.g.
    /// `2026-11-29T13:34:13.123Z`. Strings in this form sort like the times they name.
    public static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}
