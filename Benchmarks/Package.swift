// swift-tools-version: 6.1
// Benchmarks live in their own package so that `swift build` / `swift test` at the root never compile them.
// Run: cd Benchmarks && swift package benchmark            (release build, all targets)
//      swift package benchmark --target EngineBenchmarks --filter "SHA-256.*"
//      swift run -c release make-workload --out /tmp/wl      (the workload of compare.sh, engine.sh, server.sh)
import PackageDescription

let package = Package(
    name: "CairnBenchmarks",
    platforms: [.macOS(.v15)],
    products: [
        // The synthetic workload of the shell benchmarks: variants of one LLaMA-shaped bf16 model.
        .executable(name: "make-workload", targets: ["MakeWorkload"])
    ],
    dependencies: [
        .package(name: "Cairn", path: "../"),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "MakeWorkload",
            dependencies: [.product(name: "CairnFixtures", package: "Cairn")],
            path: "Benchmarks/MakeWorkload"
        ),
        .executableTarget(
            name: "EngineBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "CairnStore", package: "Cairn"),
                .product(name: "CairnFixtures", package: "Cairn"),
            ],
            path: "Benchmarks/EngineBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "RegistryBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "CairnRegistry", package: "Cairn"),
                .product(name: "CairnStore", package: "Cairn"),
                .product(name: "CairnFixtures", package: "Cairn"),
            ],
            path: "Benchmarks/RegistryBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        .executableTarget(
            name: "PartialReadBenchmarks",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "CairnRegistry", package: "Cairn"),
                .product(name: "CairnFormats", package: "Cairn"),
                .product(name: "CairnStore", package: "Cairn"),
                .product(name: "CairnFixtures", package: "Cairn"),
            ],
            path: "Benchmarks/PartialReadBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
