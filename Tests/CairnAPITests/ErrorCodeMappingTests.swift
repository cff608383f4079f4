import CairnAPI
import CairnStore
import Foundation
import Testing

/// The error vocabulary's mapping, pinned twice: against the values written here case by case, and
/// against the tables of docs/http-api.md ("Errors") and docs/cli.md ("Exit codes") read at test
/// time, so a drift in the code or in either document fails.
@Suite struct ErrorCodeMappingTests {
    /// One code as the documents give it: its wire string, the status of a server reply carrying
    /// it, the exit code of a command failing with it, and a phrase of that exit code's row in
    /// docs/cli.md.
    struct Expected: Sendable, CustomStringConvertible {
        var code: ErrorCode
        var wire: String
        var status: Int
        var exit: Int32
        var exitMeaning: String

        var description: String { wire }
    }

    static let expected: [Expected] = [
        Expected(code: .invalidArgument, wire: "invalid_argument", status: 400, exit: 2, exitMeaning: "bad argument"),
        Expected(code: .unauthenticated, wire: "unauthenticated", status: 401, exit: 6, exitMeaning: "not authorized"),
        Expected(code: .forbidden, wire: "forbidden", status: 403, exit: 6, exitMeaning: "role that does not allow"),
        Expected(code: .notFound, wire: "not_found", status: 404, exit: 3, exitMeaning: "not found"),
        Expected(code: .conflict, wire: "conflict", status: 409, exit: 1, exitMeaning: "concurrent change"),
        Expected(code: .missingChunks, wire: "missing_chunks", status: 409, exit: 1, exitMeaning: "other error"),
        Expected(code: .tooLarge, wire: "too_large", status: 413, exit: 2, exitMeaning: "bad argument"),
        Expected(code: .rangeNotSatisfiable, wire: "range_not_satisfiable", status: 416, exit: 2, exitMeaning: "range"),
        Expected(code: .refused, wire: "refused", status: 422, exit: 5, exitMeaning: "refused"),
        Expected(
            code: .chunkMismatch,
            wire: "chunk_mismatch",
            status: 422,
            exit: 5,
            exitMeaning: "nothing was changed"
        ),
        Expected(
            code: .manifestMismatch,
            wire: "manifest_mismatch",
            status: 422,
            exit: 5,
            exitMeaning: "nothing was changed"
        ),
        Expected(code: .corruption, wire: "corruption", status: 500, exit: 4, exitMeaning: "corruption found"),
        Expected(code: .io, wire: "io", status: 500, exit: 1, exitMeaning: "I/O"),
        Expected(code: .internal, wire: "internal", status: 500, exit: 1, exitMeaning: "other error"),
        // The client's own code for a reply it cannot read: docs/http-api.md names it below its table.
        Expected(code: .badResponse, wire: "bad_response", status: 502, exit: 1, exitMeaning: "other error"),
        Expected(code: .unreachable, wire: "unreachable", status: 503, exit: 1, exitMeaning: "cannot be reached"),
    ]

    /// Codes only a client produces (a reply it cannot read): not in docs/http-api.md's table, but
    /// named with their status in the sentence after it.
    static let clientOnly: Set<ErrorCode> = [.badResponse]

    @Test func theTableCoversEveryCodeOnce() {
        #expect(
            Self.expected.map(\.code).sorted { $0.rawValue < $1.rawValue }
                == ErrorCode.allCases.sorted { $0.rawValue < $1.rawValue }
        )
        #expect(Set(Self.expected.map(\.code)).count == ErrorCode.allCases.count)
    }

    @Test(arguments: expected) func rawValueIsTheWireString(_ e: Expected) {
        #expect(e.code.rawValue == e.wire)
        #expect(ErrorCode(rawValue: e.wire) == e.code)
    }

    @Test(arguments: expected) func httpStatus(_ e: Expected) {
        #expect(e.code.httpStatus == e.status)
    }

    @Test(arguments: expected) func exitCode(_ e: Expected) {
        #expect(e.code.exitCode == e.exit)
    }

    // MARK: The documents

    @Test func httpStatusesAreThoseOfTheHTTPDocument() throws {
        let documented = try Self.documentedStatuses()
        let known = Set(ErrorCode.allCases.map(\.rawValue))
        for wire in documented.keys {
            #expect(known.contains(wire), "docs/http-api.md lists \(wire), which is no ErrorCode")
        }
        for e in Self.expected {
            if Self.clientOnly.contains(e.code) {
                #expect(documented[e.wire] == nil, "docs/http-api.md lists the client-only code \(e.wire)")
                #expect(
                    try Self.document("http-api.md").contains("`\(e.wire)` (\(e.status))"),
                    "docs/http-api.md does not say `\(e.wire)` (\(e.status))"
                )
            } else {
                #expect(
                    documented[e.wire] == e.status,
                    "docs/http-api.md gives \(e.wire) status \(documented[e.wire] ?? 0)"
                )
                #expect(documented[e.wire] == e.code.httpStatus)
            }
        }
    }

    @Test func exitCodesAreThoseOfTheCLIDocument() throws {
        let documented = try Self.documentedExitCodes()
        for e in Self.expected {
            let meaning = try #require(documented[e.exit], "docs/cli.md has no exit code \(e.exit) (for \(e.wire))")
            #expect(
                meaning.localizedCaseInsensitiveContains(e.exitMeaning),
                "docs/cli.md: exit \(e.exit) is \"\(meaning)\", expected it to say \"\(e.exitMeaning)\" (for \(e.wire))"
            )
            #expect(documented[e.code.exitCode] == meaning)
        }
        // 0 is success and 64 a usage error found while parsing: no ErrorCode ends with either.
        #expect(documented[0]?.contains("success") == true)
        #expect(!ErrorCode.allCases.contains { $0.exitCode == 0 || $0.exitCode == 64 })
    }

    // MARK: Reading a reply back

    @Test(arguments: ErrorCode.allCases) func aKnownCodeIsReadBackWhateverTheStatus(_ code: ErrorCode) {
        #expect(ErrorCode(code: code.rawValue, status: code.httpStatus) == code)
        for status in [0, 200, 400, 404, 500, 503] {
            #expect(ErrorCode(code: code.rawValue, status: status) == code)
        }
    }

    @Test func anUnknownOrMissingCodeFallsBackByStatus() {
        let byStatus: [(Int, ErrorCode)] = [
            (400, .invalidArgument), (405, .invalidArgument), (411, .invalidArgument), (414, .invalidArgument),
            (431, .invalidArgument), (401, .unauthenticated), (403, .forbidden), (404, .notFound), (409, .conflict),
            (413, .tooLarge), (416, .rangeNotSatisfiable), (422, .refused), (502, .badResponse), (503, .unreachable),
            (500, .internal), (0, .internal), (418, .internal), (504, .internal),
        ]
        for (status, code) in byStatus {
            #expect(ErrorCode(code: nil, status: status) == code, "status \(status)")
            #expect(ErrorCode(code: "no_such_code", status: status) == code, "status \(status)")
            #expect(ErrorCode(code: "", status: status) == code, "status \(status)")
        }
    }

    @Test(arguments: ErrorCode.allCases) func everyStatusFallsBackToACodeOfThatStatus(_ code: ErrorCode) {
        #expect(ErrorCode(code: nil, status: code.httpStatus).httpStatus == code.httpStatus)
    }

    // MARK: Reading the documents

    /// The repository's `docs/NAME`.
    static func document(_ name: String) throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        return try String(contentsOf: root.appendingPathComponent("docs").appendingPathComponent(name), encoding: .utf8)
    }

    /// The rows of the first Markdown table after the heading `heading`, as trimmed cells.
    static func table(after heading: String, in text: String) throws -> [[String]] {
        let lines = text.components(separatedBy: "\n")
        let start = try #require(lines.firstIndex(of: heading), "no heading \(heading)")
        var rows: [[String]] = []
        for line in lines[(start + 1)...] {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.hasPrefix("#") { break }
            guard trimmed.hasPrefix("|") else {
                if rows.isEmpty { continue } else { break }
            }
            let cells = trimmed.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
            rows.append(cells.map { $0.trimmingCharacters(in: .whitespaces) })
        }
        // Drop the header and the `|---|` line.
        return Array(rows.dropFirst(2))
    }

    /// docs/http-api.md's error table: wire code → status.
    static func documentedStatuses() throws -> [String: Int] {
        var out: [String: Int] = [:]
        for row in try table(after: "## Errors", in: try document("http-api.md")) {
            let status = try #require(Int(row[0]), "status \(row[0])")
            // `conflict` or `corruption`, `io`, `internal`: every backquoted code of the cell.
            let codes = row[1].split(separator: "`", omittingEmptySubsequences: false).enumerated().filter {
                $0.offset % 2 == 1
            }.map { String($0.element) }
            #expect(!codes.isEmpty, "no code in \(row)")
            for code in codes {
                #expect(out[code] == nil, "docs/http-api.md lists \(code) twice")
                out[code] = status
            }
        }
        return out
    }

    /// docs/cli.md's exit code table: exit code → meaning.
    static func documentedExitCodes() throws -> [Int32: String] {
        var out: [Int32: String] = [:]
        for row in try table(after: "## Exit codes", in: try document("cli.md")) {
            out[try #require(Int32(row[0]), "exit code \(row[0])")] = row[1]
        }
        return out
    }
}
