// swift-tools-version:6.1
// CapstanStorageTestKit: the storage conformance kit as a library, for a vendor's own
// `swift test` (and for `capstan plugins test storage`). It depends only on the SDK.
//
// Its own package, like CapstanCore: it must reach the SDK through the shared library product
// (libCapstanSDK.so), never through a static copy, or `catch let error as PluginError` would
// stop matching the errors a plugin throws.
import PackageDescription

let package = Package(
    name: "CapstanStorageTestKit",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CapstanStorageTestKit", targets: ["CapstanStorageTestKit"]),
    ],
    dependencies: [
        .package(path: ".."),
    ],
    targets: [
        .target(name: "CapstanStorageTestKit", dependencies: [.product(name: "CapstanSDK", package: "CapstanSDK")]),
    ]
)
