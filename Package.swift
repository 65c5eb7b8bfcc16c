// swift-tools-version: 6.1
// Granary: a DynamoDB-compatible storage node. See ../shared/DESIGN.md for the layers; the
// modules below follow it bottom-up, and each imports only the layers under it.
import PackageDescription

// Swift 6 language mode: strict concurrency checking is an error, not a warning.
// NonisolatedNonsendingByDefault (SE-0461): a nonisolated async function runs on its
// caller's executor instead of hopping to the global pool, so code on a core stays on that
// core's reactor when it calls into storage or I/O: thread per core by construction.
// Preconditions stay on in release builds (-O keeps them; we never build -Ounchecked).
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
]

let package = Package(
    name: "Granary",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "GranaryIO", targets: ["GranaryIO"]),
        .library(name: "GranaryStorage", targets: ["GranaryStorage"]),
        .library(name: "GranaryModel", targets: ["GranaryModel"]),
        .library(name: "GranaryNode", targets: ["GranaryNode"]),
        .library(name: "GranaryTransport", targets: ["GranaryTransport"]),
        .executable(name: "granary", targets: ["granary"]),
        .executable(name: "granary-load", targets: ["granary-load"]),
        .executable(name: "granary-sim", targets: ["granary-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-atomics.git", from: "1.2.0"),
        .package(url: "https://github.com/apple/swift-collections.git", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
    ],
    targets: [
        .target(
            name: "CShims",
            path: "CShims",
            linkerSettings: [
                .linkedLibrary("uring"), .linkedLibrary("numa"), .linkedLibrary("isal"), .linkedLibrary("z"),
            ]
        ),
        .target(
            name: "GranaryIO",
            dependencies: [
                "CShims",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: strict
        ),
        .target(name: "GranaryModel", swiftSettings: strict),
        // Multi-Paxos for one replication group: pure, no I/O, no clock, no randomness.
        .target(name: "GranaryPaxos", swiftSettings: strict),
        // The deterministic simulator that runs Paxos groups under faults and checks them.
        // Linearizability checking of recorded histories (Porcupine's search), pure.
        .target(name: "GranaryLinearizability", swiftSettings: strict),
        .target(
            name: "GranarySimulation",
            dependencies: [
                "GranaryPaxos", "GranaryLinearizability", "GranaryReplication", "GranaryStorage",
                "GranaryStorageFaults",
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "granary-sim",
            dependencies: ["GranarySimulation", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .target(
            name: "GranaryStorage",
            dependencies: ["GranaryIO", "CShims"],
            swiftSettings: strict
        ),
        // A disk in memory with the faults of real disks and crashes (torn and lost writes,
        // bit flips, EIO): the storage tests' disk, and the simulator's.
        .target(name: "GranaryStorageFaults", dependencies: ["GranaryStorage", "GranaryIO"], swiftSettings: strict),
        // A replica of a replication group: the Paxos core driving a ReplicaStore, on one
        // executor (a core's reactor, or the simulator's scheduler).
        .target(name: "GranaryReplication", dependencies: ["GranaryPaxos", "GranaryStorage"], swiftSettings: strict),
        // The node-to-node network: framed, checksummed, authenticated TCP on the reactor.
        .target(
            name: "GranaryTransport",
            dependencies: [
                "GranaryIO", "CShims", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"), .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: strict),
        // The partition's interface: the requests and replies a router sends to a
        // partition and the transport that carries them, with no implementation behind it.
        .target(name: "GranaryCommands", dependencies: ["GranaryModel"], swiftSettings: strict),
        // A partition of this node: its replica (WAL and B-tree) behind the commands.
        .target(
            name: "GranaryPartition",
            dependencies: [
                "GranaryCommands", "GranaryModel", "GranaryStorage", "GranaryIO", "GranaryPaxos", "GranaryReplication",
                .product(name: "Atomics", package: "swift-atomics"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "GranarySigV4",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),
        .target(
            name: "GranaryRouter",
            dependencies: [
                "GranaryIO", "GranaryModel", "GranaryCommands", "GranarySigV4", "CShims",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "GranaryNode",
            dependencies: [
                "GranaryIO", "GranaryStorage", "GranaryModel", "GranaryCommands", "GranaryPartition", "GranaryRouter",
                "GranaryPaxos", "GranaryReplication", "GranaryTransport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "granary",
            dependencies: ["GranaryNode", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict,
            // jemalloc instead of glibc's malloc: a request's memory is often freed on
            // another core than the one that allocated it, and glibc then takes the
            // allocating arena's lock (futex waits between the cores; BENCHMARKS.md).
            linkerSettings: [.linkedLibrary("jemalloc")]
        ),
        // The request path in process, for libFuzzer (tools/fuzz) and for replaying its
        // corpus (tools/test): Fuzz/Requests/RequestFuzz.swift says how.
        .executableTarget(
            name: "granary-fuzz-requests",
            dependencies: [
                "GranaryNode", "GranaryRouter", "GranaryIO", .product(name: "Logging", package: "swift-log"),
            ],
            path: "Fuzz/Requests",
            swiftSettings: strict
        ),
        // The load generator: a client of any DynamoDB endpoint, on the same reactor.
        .target(
            name: "GranaryLoad",
            dependencies: [
                "GranaryIO", "GranaryModel", "GranarySigV4", "GranaryLinearizability",
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "granary-load",
            dependencies: ["GranaryLoad", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "GranaryLoadTests", dependencies: ["GranaryLoad", "GranaryRouter", "GranarySigV4"],
            swiftSettings: strict),
        .testTarget(
            name: "GranaryLinearizabilityTests", dependencies: ["GranaryLinearizability"], swiftSettings: strict),
        // The transcripts are read from the source tree (#filePath), not bundled.
        .testTarget(
            name: "GranaryPaxosTests",
            dependencies: [
                "GranaryPaxos", "GranarySimulation", "GranaryReplication", "GranaryStorage", "GranaryStorageFaults",
                "GranaryIO",
            ],
            exclude: ["transcripts"],
            swiftSettings: strict),
        .testTarget(name: "GranaryIOTests", dependencies: ["GranaryIO", "CShims"], swiftSettings: strict),
        .testTarget(
            name: "GranaryStorageTests",
            dependencies: ["GranaryStorage", "GranaryStorageFaults", "GranaryIO", "CShims"],
            swiftSettings: strict),
        .testTarget(name: "GranaryModelTests", dependencies: ["GranaryModel"], swiftSettings: strict),
        .testTarget(
            name: "GranaryCommandsTests", dependencies: ["GranaryCommands", "GranaryModel"], swiftSettings: strict),
        .testTarget(
            name: "GranaryPartitionTests",
            dependencies: ["GranaryPartition", "GranaryCommands", "GranaryModel", "GranaryIO", "GranaryStorage"],
            swiftSettings: strict),
        .testTarget(
            name: "GranaryTransportTests",
            dependencies: ["GranaryTransport", "GranaryIO", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .testTarget(name: "GranaryRouterTests", dependencies: ["GranaryRouter"], swiftSettings: strict),
    ]
)
