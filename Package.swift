// swift-tools-version:6.1
import PackageDescription

// forecastd is a Linux daemon for x86-64-v3 CPUs (AVX2 + FMA; the README lists them): it links
// libpq, libsystemd and OpenBLAS, and its hot loops (activations, LSTM cell pointwise math) are
// compiled for that CPU level, with AVX-512 forms chosen at run time where the CPU has them.
#if !os(Linux)
#error("forecastd builds on Linux only (it is a systemd service using libsystemd)")
#endif
#if !arch(x86_64)
#error("forecastd needs an x86-64-v3 CPU (AVX2 and FMA)")
#endif
let kernelFlags: [CSetting] = [.unsafeFlags(["-O3", "-march=x86-64-v3", "-ffp-contract=fast"])]

let package = Package(
    name: "forecastd",
    products: [
        .executable(name: "forecastd", targets: ["Daemon"]),
        .library(name: "Forecast", targets: ["Forecast"]),
        .library(name: "Ingest", targets: ["Ingest"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(name: "CLibPQ", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CSystemd", pkgConfig: "libsystemd", providers: [.apt(["libsystemd-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CKernels", cSettings: kernelFlags),
        .target(name: "Forecast", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "Replay", dependencies: ["Forecast", "Ingest"]),
        .target(
            name: "Ingest",
            dependencies: ["CLibPQ", "Forecast", .product(name: "Logging", package: "swift-log")],
            plugins: ["EmbedMigrations"]
        ),
        // sql/NNN_*.sql compiled into Ingest as `Migration.embedded`.
        .executableTarget(name: "EmbedMigrationsTool", path: "Plugins/EmbedMigrationsTool"),
        .plugin(name: "EmbedMigrations", capability: .buildTool(), dependencies: ["EmbedMigrationsTool"],
                path: "Plugins/EmbedMigrations"),
        .executableTarget(
            name: "Daemon",
            dependencies: [
                "Forecast", "Ingest", "Replay", "CSystemd",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .target(name: "TestSupport", dependencies: ["Ingest"], path: "Tests/TestSupport"),
        .testTarget(name: "ForecastTests", dependencies: ["Forecast", "CKernels"], resources: [.copy("Fixtures")]),
        .testTarget(name: "IngestTests", dependencies: ["Ingest", "Forecast", "TestSupport"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Ingest", "Forecast", "Replay", "TestSupport",
                                                  .product(name: "ServiceLifecycle", package: "swift-service-lifecycle")]),
    ]
)
