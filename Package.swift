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
        .executable(name: "twinbraind", targets: ["twinbraind"]),
        .executable(name: "twinbrain", targets: ["twinbrain"]),
        .executable(name: "twinbrain-eval", targets: ["twinbrain-eval"]),
        .executable(name: "twinbrain-extract", targets: ["twinbrain-extract"]),
        .library(name: "MainBrain", targets: ["MainBrain"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CSystemd", path: "Sources/CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        // Dot products of GGUF-format rows with quantised activations (AVX2 and portable), the worker pool.
        .target(name: "CQuant", path: "Sources/CQuant"),
        .target(name: "Kernels", dependencies: ["CBLAS", "CQuant"], swiftSettings: kernelSettings),
        .target(name: "MainBrain", dependencies: ["Kernels"], swiftSettings: engineSettings),
        // The FreshDocs evaluation: corpus format, tasks, baseline systems.
        .target(name: "Evaluation", dependencies: ["MainBrain", "Kernels", "LearningBrain", "Store"], swiftSettings: engineSettings),
        // openat2, directory-entry and prctl helpers for reading untrusted media.
        .target(name: "CIntake", path: "Sources/CIntake"),
        // SQLite state: sources, documents and versions, extracted text, jobs, audit.
        .target(name: "Store", dependencies: [.product(name: "GRDB", package: "GRDB.swift")], swiftSettings: engineSettings),
        // File formats → text; runs only inside the twinbrain-extract helper.
        .target(name: "Extraction", dependencies: [.product(name: "ZIPFoundation", package: "ZIPFoundation")], swiftSettings: engineSettings),
        // Drives, safe scanning, the extraction helper's runner, ingest jobs.
        .systemLibrary(name: "CUdev", path: "Sources/CUdev", pkgConfig: "libudev", providers: [.apt(["libudev-dev"])]),
        .target(name: "Intake", dependencies: ["Store", "Extraction", "CIntake", "CUdev"], swiftSettings: engineSettings),
        .executableTarget(name: "twinbrain-extract", dependencies: ["Extraction", "CIntake"], swiftSettings: engineSettings),
        // The learning brain: passages and recall over the store's index, evidence, the token memory and its gate.
        .target(name: "LearningBrain", dependencies: ["MainBrain", "Kernels", "Store"], swiftSettings: engineSettings),
        // Wire types and the Unix-socket client, shared by the daemon and the CLI; imports neither.
        .target(name: "ControlAPI"),
        .executableTarget(
            name: "twinbraind",
            dependencies: [
                "MainBrain", "LearningBrain", "ControlAPI", "CSystemd", "Store", "Intake",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: engineSettings),
        .executableTarget(
            name: "twinbrain",
            dependencies: ["ControlAPI", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(
            name: "twinbrain-eval",
            dependencies: [
                "MainBrain", "Evaluation",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "ControlAPITests", dependencies: ["ControlAPI"]),
        .testTarget(name: "StoreTests", dependencies: ["Store", .product(name: "GRDB", package: "GRDB.swift")]),
        .testTarget(name: "LearningBrainTests", dependencies: ["LearningBrain", "MainBrain", "Kernels", "Store"]),
        .testTarget(
            name: "IntakeTests",
            dependencies: ["Intake", "Store", .product(name: "ZIPFoundation", package: "ZIPFoundation")]),
        .testTarget(name: "EvaluationTests", dependencies: ["Evaluation", "MainBrain", "LearningBrain"], resources: [.copy("Fixtures")]),
        .testTarget(name: "DaemonTests", dependencies: ["ControlAPI", .product(name: "GRDB", package: "GRDB.swift")],
                    exclude: ["openai_client_check.py"]),
        .testTarget(name: "KernelsTests", dependencies: ["Kernels"], resources: [.copy("Fixtures")]),
        .testTarget(
            name: "MainBrainTests", dependencies: ["MainBrain", "Kernels"],
            resources: [.copy("Fixtures")]),
    ]
)
