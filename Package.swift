// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "kvstore",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "kvstore", targets: ["kvstore"]),
        .library(name: "KVStore", targets: ["KVStore"]),
        // The C ABI (Sources/KVStoreC/include/kvstore.h) the Python package loads: libkvstore_c.so.
        .library(name: "kvstore_c", type: .dynamic, targets: ["KVStoreC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.34.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(name: "CZstd", path: "Sources/CZstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLMDB", path: "Sources/CLMDB", providers: [.apt(["liblmdb-dev"])]),

        // Tensor model, safetensors I/O and file helpers: no dependencies.
        .target(name: "KVTensor"),
        // The lossy decoder's SIMD kernels (AVX2 + F16C, chosen at run time, scalar fallback).
        // No contraction to FMA: the bitstream fixes every rounding.
        .target(name: "CLossyKernels", cSettings: [.unsafeFlags(["-ffp-contract=off"])]),
        // Chunk container and the codecs (lossless, CacheGen-style).
        .target(name: "KVCodec", dependencies: ["KVTensor", "CZstd", "CLossyKernels"]),
        // Prefix hashing, blob store, LMDB index and the store that ties them together.
        .target(name: "KVStore", dependencies: [
            "KVTensor", "KVCodec", "CLMDB",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // The stream's frames (schemas/stream-frames.md): format, reader, assembly. No NIO, so the C ABI
        // and the fuzzers link none.
        .target(name: "KVFrames", dependencies: ["KVTensor", "KVCodec"]),
        // Streaming transport: level controller, bandwidth estimator, HTTP client.
        .target(name: "KVTransport", dependencies: [
            "KVTensor", "KVCodec", "KVFrames",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // `kvstore serve`: the Hummingbird app (routes, auth, metrics).
        .target(name: "KVServer", dependencies: [
            "KVStore", "KVFrames", "KVTransport", "KVCodec", "KVTensor",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            // HTTPResponsePart, to answer `Expect: 100-continue` (TrackedRequestBody).
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // The codec, stream reader and embedded store behind @_cdecl functions (the header in include/ is documentation
        // for C callers and the Python package; Swift does not compile it).
        .target(name: "KVStoreC", dependencies: ["KVCodec", "KVTensor", "KVFrames", "KVEngineLlama", "KVStore"], exclude: ["include"]),
        // RESP2 parser and encoder: pure value types, no dependencies (so the fuzz build is small).
        .target(name: "KVRESP", path: "Sources/KVCluster/RESP"),
        // The Redis Cluster tier: blocking-socket client (connections, slot map, redirects) and the tier on it.
        .target(name: "KVCluster", dependencies: [
            "KVRESP", "KVStore", "KVCodec", "KVTensor",
        ], exclude: ["RESP"]),
        // llama.cpp's sequence states and slot files <-> kvstore contexts; model identity from the GGUF.
        .target(name: "KVEngineLlama", dependencies: [
            "KVTensor", "KVCodec",
            .product(name: "Crypto", package: "swift-crypto"),
        ]),
        // `kvstore sidecar`: an OpenAI-compatible proxy in front of llama-server that restores stored prefixes into its slots.
        .target(name: "KVSidecar", dependencies: [
            "KVEngineLlama", "KVStore", "KVFrames", "KVTransport", "KVCodec", "KVTensor",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        // Benchmarks behind `kvstore bench` and the codec harness (not used by the product's paths).
        .target(name: "KVBench", dependencies: ["KVCodec", "KVTensor"]),
        .executableTarget(name: "kvstore", dependencies: [
            "KVBench",
            "KVStore", "KVCodec", "KVTensor", "KVFrames", "KVTransport", "KVServer", "KVCluster", "KVEngineLlama", "KVSidecar",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Codec development harness: chunked round trips and the codec benchmark (tools/bench_codec_quality.py).
        .executableTarget(name: "kvcodec-harness", dependencies: ["KVBench", "KVCodec", "KVTensor"]),
        // libFuzzer target for the chunk decoder (tools/fuzz_decoder.sh); a plain reproducer otherwise.
        .executableTarget(name: "DecoderFuzz", dependencies: ["KVCodec", "KVTensor"], path: "Fuzz/DecoderFuzz"),
        // libFuzzer target for what clients send: safetensors files, JSON token queries, stream frames.
        .executableTarget(name: "ParserFuzz", dependencies: ["KVTensor", "KVFrames"], path: "Fuzz/ParserFuzz"),
        // libFuzzer target for the RESP parser (tools/fuzz_resp.sh).
        .executableTarget(name: "RESPFuzz", dependencies: ["KVRESP"], path: "Fuzz/RESPFuzz"),

        // Fixtures, scratch directories and a runner for the real binary, shared by the test targets.
        .target(name: "TestSupport", dependencies: ["KVTensor"], path: "Tests/TestSupport"),
        .testTarget(name: "KVTensorTests", dependencies: ["KVTensor", "TestSupport"]),
        .testTarget(name: "KVCodecTests", dependencies: ["KVCodec", "KVTensor", "TestSupport"]),
        .testTarget(name: "KVStoreTests", dependencies: ["KVStore", "KVCodec", "KVTensor", "TestSupport"]),
        .testTarget(name: "CLITests", dependencies: ["kvstore", "KVStore", "KVTensor", "TestSupport"]),
        .testTarget(name: "KVClusterTests", dependencies: [
            "kvstore", "KVCluster", "KVRESP", "KVStore", "KVCodec", "KVTensor", "KVFrames", "KVTransport", "TestSupport",
        ]),
        .testTarget(name: "KVTransportTests", dependencies: ["KVTransport", "KVFrames", "KVCodec", "KVTensor"]),
        .testTarget(name: "KVServerTests", dependencies: [
            "KVServer", "KVFrames", "KVTransport", "KVStore", "KVCodec", "KVTensor", "TestSupport",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
        ]),
        .testTarget(name: "KVEngineLlamaTests", dependencies: [
            "KVEngineLlama", "KVSidecar", "KVStore", "KVTransport", "KVCodec", "KVTensor", "TestSupport",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
