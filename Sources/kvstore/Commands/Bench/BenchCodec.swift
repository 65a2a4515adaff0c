import ArgumentParser
import KVBench
import KVCodec
import KVTensor

/// Size and single-core speed of each level against zstd -3, in the same run.
struct BenchCodec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "codec",
        abstract: "Compare each level's size and encode/decode speed with zstd -3 on a real context.")

    @Argument(help: "A context file (real KV from tools/extract_kv.py).")
    var context: String

    @Option(help: "Tokens per chunk.")
    var chunkTokens = 256

    @Option(help: "Levels to measure, e.g. 0,1,2,3,4.")
    var levels = "0,1,2,3,4"

    @Option(help: "Minimum seconds each measurement runs.")
    var seconds = 1.0

    @Option(help: "Codec profile file of the model (default: derived from the KV, as kvstore encode does).")
    var profile: String?

    func run() throws {
        let ctx = try Safetensors.readContext(context)
        let model = try codecProfile(file: profile, for: ctx, model: nil)
        let report = try CodecBenchmark.run(tensor: ctx.kv, chunkTokens: chunkTokens, levels: parseLevels(levels), minSeconds: seconds, model: model)
        print(report.table)
    }
}
