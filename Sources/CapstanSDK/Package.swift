// swift-tools-version:6.1
// CapstanSDK: what every plugin links. Two shared libraries, one copy of each per process:
//
// - libCapstanCore.so (package `CapstanCore/`): resource types, quantities, validation, event bus.
// - libCapstanSDK.so  (this package):    the versioned plugin protocols, the C handshake and the
//                                        registrar. Links libCapstanCore.so dynamically.
//
// Both are built with library evolution, so a plugin built against SDK 1.0 keeps working with a
// host on SDK 1.x. See docs/architecture.md, "The plugin ABI".
import PackageDescription

let package = Package(
    name: "CapstanSDK",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CapstanSDK", type: .dynamic, targets: ["CapstanSDK"]),
    ],
    dependencies: [
        // A product of another package, so it is linked as libCapstanCore.so, not copied in.
        .package(path: "CapstanCore"),
    ],
    targets: [
        // The C handshake struct every plugin exports (Swift, C or Rust).
        .target(name: "CCapstanPluginABI"),
        // Plugin protocols, registrar, export helper.
        .target(
            name: "CapstanSDK",
            dependencies: [.product(name: "CapstanCore", package: "CapstanCore"), "CCapstanPluginABI"],
            swiftSettings: [
                // Stable layout across minor SDK releases (DESIGN.md rule 6).
                .unsafeFlags(["-enable-library-evolution"]),
                // The module imports a C target; verifying its emitted interface fails (known SwiftPM issue).
                .unsafeFlags(["-no-verify-emitted-module-interface"]),
            ],
            linkerSettings: [.unsafeFlags(["-Xlinker", "-soname=libCapstanSDK.so"])]
        ),
    ]
)
