// swift-tools-version:6.0
import PackageDescription

// Raw-pointer numerics; the strict-concurrency checks of Swift 6 mode add noise, not safety, here.
// `make test` builds with -c release: the engine is far too slow unoptimised.
let engineSettings: [SwiftSetting] = [.swiftLanguageMode(.v5)]
// Only the innermost loops drop bounds checks; everything above them keeps Swift's checks.
let kernelSettings: [SwiftSetting] = engineSettings + [
    .unsafeFlags(["-Ounchecked"], .when(configuration: .release)),
]

let package = Package(
    name: "twinbrain",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "twinbrain-eval", targets: ["twinbrain-eval"]),
        .library(name: "MainBrain", targets: ["MainBrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .target(name: "Kernels", dependencies: ["CBLAS"], swiftSettings: kernelSettings),
        .target(name: "MainBrain", dependencies: ["Kernels"], swiftSettings: engineSettings),
        .executableTarget(
            name: "twinbrain-eval",
            dependencies: [
                "MainBrain",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], resources: [.copy("Fixtures")]),
        .testTarget(
            name: "MainBrainTests", dependencies: ["MainBrain", "Kernels"],
            resources: [.copy("Fixtures")]),
    ]
)
