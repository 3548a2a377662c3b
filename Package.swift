// swift-tools-version:6.1
// objmount: mount object storage (OpenStack Swift, Hubic, S3, KS3) as a local directory.
// Layers (see doc and ../shared/DESIGN.md §1): CFuse → FuseKit → (adapter in ObjmountCLI) → ObjectFS
// → ObjectStorage ← drivers (MemoryStorage, OpenStackStorage, S3Storage; the HTTP ones over StorageHTTP). The build enforces the rule with
// `--explicit-target-dependency-import-check error`.
import PackageDescription

let package = Package(
    name: "objmount",
    products: [
        .executable(name: "objmount", targets: ["objmount"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        // StorageHTTP speaks NIO's types (ByteBuffer, HTTPMethod) to async-http-client.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.100.0"),
        // The named remotes' config file (TOML).
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        .target(name: "CFuse", path: "CFuse", linkerSettings: [.linkedLibrary("fuse3")]),
        .target(name: "FuseKit", dependencies: ["CFuse"]),
        .target(name: "ObjectStorage"),
        .target(name: "MemoryStorage", dependencies: ["ObjectStorage"]),
        .target(name: "ObjectFS", dependencies: ["ObjectStorage"]),
        .target(
            name: "StorageHTTP",
            dependencies: [
                "ObjectStorage", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "OpenStackStorage",
            dependencies: ["ObjectStorage", "StorageHTTP", .product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "S3Storage",
            dependencies: [
                "ObjectStorage", "StorageHTTP", "S3Signing", .product(name: "Crypto", package: "swift-crypto"),
            ]),
        .target(
            name: "ObjmountCLI",
            dependencies: [
                "FuseKit", "ObjectFS", "ObjectStorage", "MemoryStorage", "StorageHTTP", "OpenStackStorage", "S3Storage",
                "S3Signing", "ClientEncryption", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            plugins: ["BuildInfo"]),
        // The git commit for `objmount --version`.
        .plugin(name: "BuildInfo", capability: .buildTool()),
        .executableTarget(name: "objmount", dependencies: ["ObjmountCLI"]),
        .target(name: "S3Signing", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        // ks3sdk's client-side encryption format: AES-128-CBC from OpenSSL's EVP (libssl-dev).
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .target(
            name: "ClientEncryption",
            dependencies: ["COpenSSL", "ObjectStorage", .product(name: "Crypto", package: "swift-crypto")]),
        .testTarget(
            name: "ClientEncryptionTests",
            dependencies: [
                "ClientEncryption", "ObjectStorage", "MemoryStorage", .product(name: "Crypto", package: "swift-crypto"),
            ],
            exclude: ["make_vectors.py", "vectors.json"]),
        .testTarget(
            name: "ObjectFSTests",
            dependencies: [
                "ObjectFS", "ObjectStorage", "MemoryStorage",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ]),
        .testTarget(
            name: "ObjectStorageTests",
            dependencies: [
                "ObjectStorage", "MemoryStorage", "StorageHTTP", "OpenStackStorage", "S3Storage", "S3Signing",
            ]),
        .testTarget(
            name: "ObjmountCLITests",
            dependencies: [
                "ObjmountCLI", "ObjectStorage", "S3Signing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),
        .testTarget(name: "FuseKitTests", dependencies: ["FuseKit"]),
        .testTarget(name: "OpenStackStorageTests", dependencies: ["OpenStackStorage", "ObjectStorage", "StorageHTTP"]),
        .testTarget(name: "S3StorageTests", dependencies: ["S3Storage", "ObjectStorage", "StorageHTTP", "S3Signing"]),
        .testTarget(name: "S3SigningTests", dependencies: ["S3Signing"], exclude: ["generate_kss_vectors.py"]),
    ]
)
