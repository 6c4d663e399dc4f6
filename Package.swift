// swift-tools-version:6.1
// Capstan: a container orchestrator whose every moving part is a plugin.
//
// Table of contents
//   Sources/CapstanSDK      nested packages: libCapstanSDK.so and (CapstanCore/) libCapstanCore.so, what plugins link
//   Sources/PluginHost      dlopen loader, handshake checks, registry, operator config, C-ABI door
//   Sources/CapstanJSON     Foundation's sorted-keys JSON, written without its intermediate tree
//   Sources/CapstanStore    the object store (SQLite through GRDB), revisions, bus events
//   Sources/CapstanScheduling  scheduling framework (profiles, per-GPU accounting) and trace simulator
//   Sources/CFFI            libffi, for plugins written in C
//   Sources/capstan         the one binary (CLI verbs)
//   Sources/CapstanBench    benchmarks (run in release, numbers in docs/performance.md)
//   Plugins/*               the in-tree plugins, one `.dynamic` product (one .so) each
//   Tests/*                 Swift Testing suites; they reach plugins only through the built .so files
//
// SwiftPM reserves a folder named `Plugins/` for *package* plugins; ours are Capstan plugins, so every
// plugin target names its `path:` explicitly (see docs/plugin-authoring.md).
import PackageDescription

/// The in-tree Capstan plugins: (product and target name, folder under Plugins/).
let capstanPlugins: [(name: String, folder: String)] = [
    ("CapstanBinpack", "Binpack"),
    ("CapstanSpread", "Spread"),
    ("CapstanHostPath", "HostPath"),
    ("CapstanHostNetwork", "HostNetwork"),
    ("CapstanRoundRobin", "RoundRobin"),
    ("CapstanLeastConn", "LeastConn"),
    ("CapstanProcessRuntime", "ProcessRuntime"),
    ("CapstanBestFit", "BestFit"),
    ("CapstanFGD", "FGD"),
    ("CapstanRuncRuntime", "RuncRuntime"),
    ("CapstanCNI", "CNI"),
    ("CapstanNFTables", "NFTables"),
    ("CapstanLoopback", "Loopback"),
]

/// Plugin targets that also link the shared instance supervisor and its helpers (running external
/// commands, entering namespaces): a static helper module, one copy per .so; it is not a plugin
/// and exports nothing the host reads.
let supervisedPlugins: Set<String> = ["CapstanProcessRuntime", "CapstanRuncRuntime", "CapstanCNI", "CapstanNFTables", "CapstanLoopback", "CapstanHostPath"]

let sdk = Target.Dependency.product(name: "CapstanSDK", package: "CapstanSDK")
let core = Target.Dependency.product(name: "CapstanCore", package: "CapstanCore")
let storageTestKit = Target.Dependency.product(name: "CapstanStorageTestKit", package: "CapstanStorageTestKit")

let package = Package(
    name: "Capstan",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "capstan", targets: ["capstan"]),
        .executable(name: "capstan-bench", targets: ["CapstanBench"]),
        .executable(name: "capstan-fuzz", targets: ["CapstanFuzz"]),
    ] + capstanPlugins.map { .library(name: $0.name, type: .dynamic, targets: [$0.name]) }
      // A deliberately broken storage driver: the conformance kit's tests prove the kit fails it.
      + [.library(name: "CapstanBrokenStorageFixture", type: .dynamic, targets: ["CapstanBrokenStorageFixture"])],
    dependencies: [
        .package(path: "Sources/CapstanSDK"),
        .package(path: "Sources/CapstanSDK/CapstanCore"),
        .package(path: "Sources/CapstanSDK/CapstanStorageTestKit"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
    ],
    targets: [
        // libffi through pkg-config, with static inline accessors for its globals (Swift 6 mode).
        .systemLibrary(
            name: "CFFI",
            path: "Sources/CFFI",
            pkgConfig: "libffi",
            providers: [.apt(["libffi-dev"])]
        ),
        // The scheduling framework: profiles, cluster state with per-GPU accounting, filter/score/
        // reserve, and the trace simulator. Reaches plugins only as `any SchedulerPlugin`.
        .target(name: "CapstanScheduling", dependencies: [core, sdk], path: "Sources/CapstanScheduling"),

        // The cluster's objects in SQLite (GRDB): one global revision, every write on the event bus.
        // Foundation's sorted-keys JSON, byte for byte, without its intermediate tree: the
        // store's and the API's encoder on every write.
        .target(name: "CapstanJSON", path: "Sources/CapstanJSON"),
        .testTarget(name: "CapstanJSONTests", dependencies: ["CapstanJSON", "CapstanAPI", "PluginHost", core, .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOCore", package: "swift-nio")], path: "Tests/CapstanJSONTests"),
        .target(name: "CapstanStore", dependencies: [core, "CapstanEtcd", "CapstanJSON", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "Crypto", package: "swift-crypto")], path: "Sources/CapstanStore"),
        .testTarget(name: "CapstanStoreTests", dependencies: ["CapstanStore", "CapstanEtcd", core], path: "Tests/CapstanStoreTests"),
        .testTarget(name: "CapstanSchedulingTests", dependencies: ["CapstanScheduling", "PluginHost", core, sdk], path: "Tests/CapstanSchedulingTests"),

        // Loads, verifies and registers plugins; reads capstan.yaml; builds scheduling profiles.
        .target(
            name: "PluginHost",
            dependencies: [
                core, sdk, "CFFI", "CapstanScheduling",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/PluginHost"
        ),
        // etcd's v3 API through its JSON gateway, and leader election on it (issue 13).
        .target(
            name: "CapstanEtcd",
            dependencies: [
                "CapstanAPI",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            path: "Sources/CapstanEtcd"
        ),
        // Test harnesses more than one test target uses (a real etcd, a real capstan server).
        .target(name: "CapstanTestSupport", dependencies: ["CapstanEtcd", "CapstanAPI"], path: "Tests/CapstanTestSupport"),
        .testTarget(name: "CapstanEtcdTests", dependencies: ["CapstanEtcd", "CapstanStore", "CapstanAPI", "CapstanServer", "CapstanTestSupport", core, .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")], path: "Tests/CapstanEtcdTests"),
        .testTarget(name: "PluginHostTests", dependencies: ["PluginHost", core, sdk, storageTestKit], path: "Tests/PluginHostTests"),
        .testTarget(name: "CapstanCoreTests", dependencies: [core], path: "Tests/CapstanCoreTests"),

        // The wire format (paths, watch events, error bodies) and the HTTP client the CLI and the
        // agent use.
        .target(
            name: "CapstanAPI",
            dependencies: [
                core, "CapstanJSON",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/CapstanAPI"
        ),
        // The control plane: the HTTP API (Hummingbird) over the store, the scheduler loop, the
        // workload controller, /metrics.
        .target(
            name: "CapstanServer",
            dependencies: [
                "CapstanAPI", "CapstanStore", "CapstanEtcd", "CapstanJSON", "CapstanScheduling", "PluginHost", core, sdk,
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/CapstanServer"
        ),
        .testTarget(name: "CapstanServerTests", dependencies: ["CapstanServer", "CapstanAPI", "CapstanStore", "PluginHost", core, .product(name: "HummingbirdTesting", package: "hummingbird")], path: "Tests/CapstanServerTests"),
        // The node agent: registers its Node, runs bound instances through the runtime plugin,
        // restarts with backoff, probes, re-adopts after a restart, serves logs.
        .target(
            name: "CapstanAgent",
            dependencies: [
                "CapstanAPI", "PluginHost", "CapstanSupervision", core, sdk,
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Sources/CapstanAgent"
        ),

        // The capstan binary. Links the Swift runtime dynamically (DESIGN.md rule 8) and finds
        // libCapstan*.so beside itself or in ../lib (rule 9).
        .executableTarget(
            name: "capstan",
            dependencies: [
                "PluginHost", "CapstanScheduling", "CapstanAPI", "CapstanServer", "CapstanAgent", "CapstanStore", "CapstanEtcd", core, sdk, storageTestKit,
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/capstan",
            linkerSettings: [.unsafeFlags(["-Xlinker", "-rpath=$ORIGIN", "-Xlinker", "-rpath=$ORIGIN/../lib"])]
        ),
        .testTarget(name: "CapstanAgentTests", dependencies: ["CapstanAgent", "CapstanSupervision", core], path: "Tests/CapstanAgentTests"),
        .testTarget(name: "CapstanCLITests", dependencies: [core, "CapstanAPI", "CapstanEtcd", "CapstanTestSupport"], path: "Tests/CapstanCLITests"),

        // Benchmarks: `swift run -c release capstan-bench`. Links Binpack statically to compare a
        // direct call with the same code reached through the loaded .so.
        .executableTarget(
            name: "CapstanBench",
            dependencies: ["PluginHost", "CapstanScheduling", "CapstanAPI", "CapstanAgent", "CapstanEtcd", "CapstanJSON", core, sdk, "CapstanBinpack"],
            path: "Sources/CapstanBench",
            linkerSettings: [.unsafeFlags(["-Xlinker", "-rpath=$ORIGIN"])]
        ),
        // The parsers of untrusted input as fuzz targets, and `capstan-fuzz`, which runs them
        // under libFuzzer (Sources/CapstanFuzz/fuzz.sh builds it with -sanitize=fuzzer) or
        // replays inputs through them.
        .target(name: "CapstanFuzzTargets", dependencies: ["CapstanAPI", "CapstanJSON", "PluginHost", "CapstanSupervision", core], path: "Sources/CapstanFuzzTargets"),
        .target(name: "CFuzzerDriver", path: "Sources/CFuzzerDriver"),
        .executableTarget(name: "CapstanFuzz", dependencies: ["CapstanFuzzTargets", "CFuzzerDriver"], path: "Sources/CapstanFuzz", exclude: ["fuzz.sh"]),
        .testTarget(name: "CapstanFuzzTargetsTests", dependencies: ["CapstanFuzzTargets"], path: "Tests/CapstanFuzzTargetsTests"),
        // Starts instances under a small supervisor that outlives the agent (process and runc runtimes).
        .target(name: "CapstanSupervision", dependencies: [sdk, core], path: "Plugins/Supervision"),
        .target(name: "CapstanBrokenStorageFixture", dependencies: [sdk, core], path: "Tests/Fixtures/BrokenStorage"),
    ] + capstanPlugins.map {
        .target(
            name: $0.name,
            dependencies: [sdk, core] + (supervisedPlugins.contains($0.name) ? ["CapstanSupervision"] : []),
            path: "Plugins/\($0.folder)"
        )
    }
)
