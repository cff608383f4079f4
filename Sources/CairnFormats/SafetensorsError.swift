/// A problem with a safetensors file or shard index, naming the problem (the caller adds the
/// file name): what ``SafetensorsHeader``, ``SafetensorsEncoder`` and ``SafetensorsIndex`` throw.
public struct SafetensorsError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The problem, e.g. `tensor "w": unknown dtype "X"`.
    public let message: String

    /// An error saying `message`.
    public init(_ message: String) { self.message = message }

    /// The ``message``.
    public var description: String { message }
}
