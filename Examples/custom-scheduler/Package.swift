// swift-tools-version:6.1
// An out-of-tree Capstan scheduler plugin: its own package, depending only on the SDK.
import PackageDescription

let package = Package(
    name: "LeastGPUWaste",
    platforms: [.macOS(.v15)],
    products: [
        // One .so: .build/debug/libLeastGPUWaste.so
        .library(name: "LeastGPUWaste", type: .dynamic, targets: ["LeastGPUWaste"]),
    ],
    dependencies: [
        // In your own repository, point this at your Capstan checkout (or a copy of Sources/CapstanSDK).
        .package(path: "../../Sources/CapstanSDK"),
    ],
    targets: [
        .target(
            name: "LeastGPUWaste",
            dependencies: [.product(name: "CapstanSDK", package: "CapstanSDK")]
        ),
    ]
)
