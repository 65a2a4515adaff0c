import ArgumentParser

/// Benchmarks that print what they measured; run them from a release build.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the store (run from a release build).",
        subcommands: [BenchLookup.self, BenchCodec.self, BenchGC.self, BenchStream.self, BenchCluster.self])
}
