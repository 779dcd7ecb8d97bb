// swift-tools-version:6.0
import Foundation
import PackageDescription

// Benchmarks run on demand, release builds only (`Benchmarks/run`); their own package so the
// main build and CI stay light. The main package is the parent directory, whose package
// identity is that directory's name.
let parent = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "ShadowbridgeBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(name: "MasterRoomBenchmark", dependencies: [.product(name: "DMUC", package: parent)]),
        .executableTarget(
            name: "IRCBenchmark",
            dependencies: [
                .product(name: "IRCCore", package: parent), .product(name: "IRCNIO", package: parent), .product(name: "Lab", package: parent),
            ]),
        .executableTarget(name: "GatewayBenchmark", dependencies: [.product(name: "Lab", package: parent)]),
    ],
    swiftLanguageModes: [.v6]
)
