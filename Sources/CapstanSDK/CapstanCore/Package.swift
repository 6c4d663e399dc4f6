// swift-tools-version:6.1
// CapstanCore: resource types, quantities, validation and the event bus. No I/O, no loader.
//
// Its own package so that it is its own shared library, libCapstanCore.so, loaded once per
// process: a package's target dependencies are linked statically into its products, so if Core
// were a target of the CapstanSDK package, libCapstanSDK.so would carry a second copy of it.
import PackageDescription

let package = Package(
    name: "CapstanCore",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CapstanCore", type: .dynamic, targets: ["CapstanCore"]),
    ],
    targets: [
        .target(
            name: "CapstanCore",
            swiftSettings: [
                // Stable layout across minor releases (DESIGN.md rule 6).
                .unsafeFlags(["-enable-library-evolution"]),
            ],
            linkerSettings: [.unsafeFlags(["-Xlinker", "-soname=libCapstanCore.so"])]
        ),
    ]
)
