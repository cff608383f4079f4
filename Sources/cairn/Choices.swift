import ArgumentParser
import CairnRegistry
import Logging

/// A value of a fixed set that an option takes: a stage, a role, a log level.
protocol ChoiceValue: CaseIterable, RawRepresentable, Sendable where RawValue == String {
    /// What the values are, for messages: "stage", "role".
    static var kind: String { get }
}

extension Stage: ChoiceValue {
    static var kind: String { "stage" }
}

extension Role: ChoiceValue {
    static var kind: String { "role" }
}

extension Logger.Level: ChoiceValue {
    static var kind: String { "log level" }
}

/// An option whose value is one of a ``ChoiceValue``'s cases. `--help` lists the choices; the text
/// is checked by the command's `validate()` (and read with ``value(for:)`` when it runs), so that a
/// value that is none of them is a bad option value — one `error:` line naming the choices, exit
/// code 2 — as every other bad value is, rather than a usage error.
struct Choice<Value: ChoiceValue>: ExpressibleByArgument, Sendable {
    /// The text given on the command line.
    let text: String

    init?(argument: String) { text = argument }

    init(text: String) { self.text = text }

    init(_ value: Value) { text = value.rawValue }

    static var allValueStrings: [String] { Value.allCases.map(\.rawValue) }

    var defaultValueDescription: String { text }

    /// The value the text names.
    ///
    /// - Throws: ``BadArgument`` naming `option` and the choices when the text is none of them.
    func value(for option: String) throws -> Value {
        guard let value = Value(rawValue: text) else {
            throw BadArgument(
                "\(option): unknown \(Value.kind) \"\(text)\" (use \(Self.allValueStrings.joined(separator: ", ")))"
            )
        }
        return value
    }
}
