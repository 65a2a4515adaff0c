import ArgumentParser
import KVBench
import KVCodec
import KVTensor

/// Size and speed of each level against zstd -3, in the same run, at each thread count asked.
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

    @Option(help: "Thread counts to measure, e.g. 1,2 (each thread codes whole chunks).")
    var threads = "1"

    func run() throws {
        let ctx = try Safetensors.readContext(context)
        let model = try codecProfile(file: profile, for: ctx, model: nil)
        let counts = threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ (1...1024).contains($0) }) else {
            throw ValidationError("--threads \(threads) is not a list of thread counts in 1...1024")
        }
        for n in counts {
            let report = try CodecBenchmark.run(tensor: ctx.kv, chunkTokens: chunkTokens, levels: parseLevels(levels),
                                                minSeconds: seconds, model: model, threads: n)
            print(report.table)
        }
    }
}
