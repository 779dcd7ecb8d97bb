// swift-tools-version:6.1
import Foundation
import PackageDescription

// Microbenchmarks on ordo-one/benchmark (issue 8): our XML stream parser against raw libxml2 SAX
// on the same bytes, and IRC parse/serialize. Run with `bash Benchmarks/run micro`.
// A package of its own: the benchmark package needs tools 6.1 and pulls its own dependencies.
// The main package is two directories up; its package identity is that directory's name.
let parent = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    .lastPathComponent.lowercased()

let package = Package(
    name: "ShadowbridgeMicroBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(path: "../.."),
        // The Linux Swift 6.3 runtime interposer is not available here; malloc counts are.
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        // The baseline: libxml2's push parser with SAX callbacks that only count, in C.
        .target(
            name: "RawSAX",
            cSettings: [.unsafeFlags(["-I/usr/include/libxml2"])],
            linkerSettings: [.linkedLibrary("xml2")]),
        .target(name: "Corpus", dependencies: [.product(name: "XMLCore", package: parent)]),
        .executableTarget(name: "ParseCount", dependencies: ["Corpus", "RawSAX"]),
        .executableTarget(
            name: "Parsers",
            dependencies: [
                "Corpus", "RawSAX",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "XMLCore", package: parent),
                .product(name: "IRCCore", package: parent),
            ],
            path: "Benchmarks/Parsers",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    ],
    swiftLanguageModes: [.v6]
)
