// swift-tools-version:6.0
import PackageDescription

/// Warnings are errors in every target we own; dependencies keep their own settings.
let strict: [SwiftSetting] = [.unsafeFlags(["-warnings-as-errors"])]

let package = Package(
    name: "Shadowbridge",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "shadowbridge", targets: ["shadowbridge"]),
        // For Benchmarks/ (its own package, so the main build stays light).
        .library(name: "DMUC", targets: ["DMUC"]),
        .library(name: "XMLCore", targets: ["XMLCore"]),
        .library(name: "IRCCore", targets: ["IRCCore"]),
        .library(name: "IRCNIO", targets: ["IRCNIO"]),
        .library(name: "Lab", targets: ["Lab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C libraries behind thin shims (STYLE: Swift never sees a C type it does not need).
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0", providers: [.apt(["libxml2-dev"])]),
        .target(name: "CCrypto", linkerSettings: [.linkedLibrary("crypto")]),
        .target(name: "CICUShim", linkerSettings: [.linkedLibrary("icuuc"), .linkedLibrary("icui18n")]),

        // Protocol cores: no I/O.
        .target(name: "XMLCore", dependencies: ["CLibXML2"], swiftSettings: strict),
        .target(name: "TextPrep", dependencies: ["CICUShim"], swiftSettings: strict),
        .target(name: "XMPPCore", dependencies: ["XMLCore", "CCrypto", "TextPrep"], swiftSettings: strict),
        .target(name: "IRCCore", swiftSettings: strict),
        .target(name: "DMUC", dependencies: ["XMPPCore"], swiftSettings: strict),

        // Connections.
        .target(
            name: "XMPPNIO",
            dependencies: [
                "XMPPCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .target(
            name: "IRCNIO",
            dependencies: [
                "IRCCore",
                "CCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),

        // State: the only module that speaks SQL.
        .target(name: "Store", dependencies: [.product(name: "GRDB", package: "GRDB.swift")], swiftSettings: strict),

        // Configuration and services.
        .target(
            name: "Configuration",
            dependencies: ["XMPPCore", .product(name: "TOMLKit", package: "TOMLKit")],
            swiftSettings: strict),
        .target(
            name: "MasterService",
            dependencies: [
                "DMUC", "XMPPNIO", "Configuration", "Store", .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        .target(
            name: "Bridge",
            dependencies: [
                "DMUC", "XMPPNIO", "IRCNIO", "Configuration", "TextPrep", "CCrypto", "Store", .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),

        // Real servers on loopback: shared by the end-to-end tests and `shadowbridge demo`.
        .target(name: "Lab", swiftSettings: strict),

        .executableTarget(
            name: "shadowbridge",
            dependencies: [
                "MasterService", "Bridge", "Configuration", "Lab", "Store",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict),

        .testTarget(name: "XMLCoreTests", dependencies: ["XMLCore"], swiftSettings: strict),
        .testTarget(name: "XMPPCoreTests", dependencies: ["XMPPCore"], swiftSettings: strict),
        .testTarget(name: "TextPrepTests", dependencies: ["TextPrep"], swiftSettings: strict),
        .testTarget(name: "IRCCoreTests", dependencies: ["IRCCore", "IRCNIO"], swiftSettings: strict),
        .testTarget(name: "XMPPNIOTests", dependencies: ["XMPPNIO", "XMLCore"], swiftSettings: strict),
        .testTarget(name: "DMUCTests", dependencies: ["DMUC"], swiftSettings: strict),
        .testTarget(name: "ConfigurationTests", dependencies: ["Configuration"], swiftSettings: strict),
        .testTarget(name: "StoreTests", dependencies: ["Store"], swiftSettings: strict),
        .testTarget(name: "BridgeTests", dependencies: ["Bridge"], swiftSettings: strict),
        .testTarget(
            name: "EndToEndTests",
            dependencies: [
                "Lab",
                "XMPPNIO",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            exclude: ["Support"],
            swiftSettings: strict),
    ],
    swiftLanguageModes: [.v6]
)
