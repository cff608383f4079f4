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
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2")
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
        // Deterministic generator of small safetensors models and variants (tests and the demo).
        .target(name: "CairnFixtures", path: "fixtures/CairnFixtures"),

        .executableTarget(
            name: "cairn",
            dependencies: [
                "CairnRegistry", "CairnStore", "CairnFixtures",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        .testTarget(name: "LMDBTests", dependencies: ["LMDB"]),
        .testTarget(name: "ZstdTests", dependencies: ["Zstd"]),
        .testTarget(name: "DigestTests", dependencies: ["Digest"]),
        .testTarget(name: "CairnStoreTests", dependencies: ["CairnStore", "CairnFixtures"]),
        .testTarget(name: "CairnFormatsTests", dependencies: ["CairnFormats"]),
        .testTarget(name: "CairnRegistryTests", dependencies: ["CairnRegistry", "CairnFixtures"]),
        .testTarget(name: "cairnTests", dependencies: ["cairn", "CairnFixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
