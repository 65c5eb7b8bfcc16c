// swift-tools-version: 6.1
// Granary's benchmarks: a package of their own, so their dependencies stay out of the
// product build. `swift package benchmark` runs the microbenchmarks (package-benchmark
// layout, one executable target per area); `granary-iobench` is the sustained-load tool
// that tools/bench-reactor runs beside fio.
import PackageDescription

let package = Package(
    name: "GranaryBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Granary", path: ".."),
        .package(
            url: "https://github.com/ordo-one/package-benchmark.git", from: "1.38.0", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
    ],
    targets: [
        .target(
            name: "BenchmarkSupport",
            dependencies: [.product(name: "GranaryIO", package: "Granary")],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "Reactor",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "GranaryIO", package: "Granary"),
            ],
            path: "Benchmarks/Reactor",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "Model",
            dependencies: [
                .product(name: "Benchmark", package: "package-benchmark"),
                .product(name: "GranaryModel", package: "Granary"),
            ],
            path: "Benchmarks/Model",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        .executableTarget(
            name: "granary-iobench",
            dependencies: [
                "BenchmarkSupport", .product(name: "GranaryStorage", package: "Granary"),
                .product(name: "GranaryIO", package: "Granary"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
        .executableTarget(
            name: "granary-walbench",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "GranaryIO", package: "Granary"),
                .product(name: "GranaryStorage", package: "Granary"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6), .enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .executableTarget(
            name: "granary-treebench",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "GranaryIO", package: "Granary"),
                .product(name: "GranaryStorage", package: "Granary"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6), .enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .executableTarget(
            name: "granary-syncbench",
            dependencies: [
                "BenchmarkSupport", .product(name: "GranaryIO", package: "Granary"),
            ],
            swiftSettings: [.swiftLanguageMode(.v6)]
        ),
    ]
)
