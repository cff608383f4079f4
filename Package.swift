// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "Cairn",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "cairn", targets: ["cairn"]),
        .library(name: "CairnStore", targets: ["CairnStore"]),
        .library(name: "CairnRegistry", targets: ["CairnRegistry"]),
        .library(name: "CairnFormats", targets: ["CairnFormats"]),
        .library(name: "CairnFixtures", targets: ["CairnFixtures"]),
        .library(name: "CairnServer", targets: ["CairnServer"]),
        .library(name: "CairnRemote", targets: ["CairnRemote"]),
        .library(name: "CairnAPI", targets: ["CairnAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        // C libraries from Debian's -dev packages. Each is imported by exactly one Swift wrapper below.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // Thin Swift wrappers: no C type appears in their public API.
        .target(name: "LMDB", dependencies: ["CLMDB"]),
        .target(name: "Zstd", dependencies: ["CZstd"]),
        .target(name: "Digest", dependencies: ["CLibCrypto"]),

        // The engine: chunking, packs, index, manifests, reads, verify.
        .target(name: "CairnStore", dependencies: ["LMDB", "Zstd", "Digest"]),
        // File formats of model artifacts (safetensors): headers to tensor byte ranges.
        .target(name: "CairnFormats"),
        // Models, versions and their records, on top of the engine.
        .target(name: "CairnRegistry", dependencies: ["CairnStore", "CairnFormats", "Digest"]),
        // What client and server share: the JSON bodies of the API, the error vocabulary's statuses
        // and exit codes, chunk id lists, path encoding. No HTTP library.
        .target(name: "CairnAPI", dependencies: ["CairnRegistry", "CairnStore", "Digest"]),
        // The HTTP server (Hummingbird 2): REST API under /v1, chunk protocol, files with Range, tokens.
        .target(
            name: "CairnServer",
            dependencies: [
                "CairnAPI", "CairnRegistry", "CairnStore", "Digest",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ]
        ),
        // The server's protocol from the client side: the registry's operations over HTTP.
        .target(
            name: "CairnRemote",
            dependencies: [
                "CairnAPI", "CairnRegistry", "CairnStore", "Digest",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        // Deterministic generator of small safetensors models and variants (tests and the demo).
        .target(name: "CairnFixtures", path: "fixtures/CairnFixtures"),

        .executableTarget(
            name: "cairn",
            dependencies: [
                "CairnAPI", "CairnRegistry", "CairnStore", "CairnFixtures", "CairnServer", "CairnRemote", "Digest",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "LMDBTests", dependencies: ["LMDB"]),
        .testTarget(name: "ZstdTests", dependencies: ["Zstd"]),
        .testTarget(name: "DigestTests", dependencies: ["Digest"]),
        .testTarget(name: "CairnStoreTests", dependencies: ["CairnStore", "CairnFixtures", "LMDB"]),
        .testTarget(name: "CairnFormatsTests", dependencies: ["CairnFormats"]),
        .testTarget(name: "CairnRegistryTests", dependencies: ["CairnRegistry", "CairnFixtures", "LMDB"]),
        .testTarget(name: "CairnAPITests", dependencies: ["CairnAPI", "CairnRegistry", "CairnStore", "Digest"]),
        .testTarget(name: "cairnTests", dependencies: ["cairn", "CairnFixtures"]),
        .testTarget(
            name: "CairnServerTests",
            dependencies: [
                "CairnServer", "CairnRemote", "CairnAPI", "CairnRegistry", "CairnStore", "CairnFixtures", "Digest",
                "cairn",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        // The client against a scripted socket server and a live CairnServer started in-process.
        .testTarget(
            name: "CairnRemoteTests",
            dependencies: [
                "CairnRemote", "CairnServer", "CairnAPI", "CairnRegistry", "CairnStore", "CairnFixtures", "Digest",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
