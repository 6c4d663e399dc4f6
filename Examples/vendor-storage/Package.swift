// swift-tools-version:6.1
// An out-of-tree Capstan storage driver, as a vendor ships it: its own package, depending only on
// the SDK, proven by the storage conformance kit both from `swift test` (the
// CapstanStorageTestKit library) and from the command line (`capstan plugins test storage`).
import PackageDescription

let package = Package(
    name: "AcmeStorage",
    platforms: [.macOS(.v15)],
    products: [
        // One .so: .build/debug/libAcmeStorage.so
        .library(name: "AcmeStorage", type: .dynamic, targets: ["AcmeStorage"]),
    ],
    dependencies: [
        // In your own repository, point these at your Capstan checkout (or copies of Sources/CapstanSDK).
        .package(path: "../../Sources/CapstanSDK"),
        .package(path: "../../Sources/CapstanSDK/CapstanStorageTestKit"),
    ],
    targets: [
        .target(name: "AcmeStorage", dependencies: [.product(name: "CapstanSDK", package: "CapstanSDK")]),
        .testTarget(
            name: "AcmeStorageTests",
            dependencies: ["AcmeStorage", .product(name: "CapstanStorageTestKit", package: "CapstanStorageTestKit")]
        ),
    ]
)
