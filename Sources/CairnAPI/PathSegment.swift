import Foundation

/// Percent-encoding of path segments (a model `org/name` travels as `org%2Fname`).
public enum PathSegment {
    static let unreserved = CharacterSet(
        charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"
    )

    /// `segment` with every byte but `A–Z a–z 0–9 - . _ ~` percent-encoded (`/` too).
    public static func encode(_ segment: String) -> String {
        segment.addingPercentEncoding(withAllowedCharacters: unreserved) ?? segment
    }

    /// A file path: each component encoded, `/` kept.
    public static func encodePath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(separator: "/")
    }
}
