// swift-tools-version:6.0
import PackageDescription

// Kernels and the engine are hot loops: build them optimised even in debug
// test runs would be too slow otherwise, so `make test` uses -c release.
let kernelSettings: [SwiftSetting] = [
    .unsafeFlags(["-Ounchecked", "-wmo"], .when(configuration: .release)),
    // Raw-pointer numerics; the strict-concurrency checks of Swift 6 mode add noise, not safety, here.
    .swiftLanguageMode(.v5),
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
        .target(name: "MainBrain", dependencies: ["Kernels"], swiftSettings: kernelSettings),
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
