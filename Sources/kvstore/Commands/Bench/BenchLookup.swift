import ArgumentParser
import Foundation
import KVStore
import KVTensor

/// Longest-prefix lookup of a long query against a store that holds it.
struct BenchLookup: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Time longest-prefix lookup of a long query against a store holding it.")

    @Option(help: "A real context file whose KV is tiled to the query length.")
    var context: String

    @Option(help: "Query length in tokens.")
    var tokens = 32_768

    @Option(help: "Tokens per chunk.")
    var chunkTokens = 256

    @Option(help: "Timed lookups.")
    var iterations = 2_000

    func run() throws {
        let real = try Safetensors.readContext(context)
        guard real.kv.tokens > 0 else { throw ValidationError("\(context) holds no tokens") }
        // One chunk's worth of real KV, repeated: chains differ (distinct token ids) while the
        // content-addressed blobs dedupe to one, so building the store is quick.
        var rows: [KVTensor] = []
        var have = 0
        while have < chunkTokens {
            let n = min(real.kv.tokens, chunkTokens - have)
            rows.append(real.kv.slice(tokens: 0..<n))
            have += n
        }
        let chunk = try KVTensor.concatenate(rows)
        let chunks = (tokens + chunkTokens - 1) / chunkTokens
        let kv = try KVTensor.concatenate(Array(repeating: chunk, count: chunks)).slice(tokens: 0..<tokens)
        let ids = (0..<tokens).map { Int32(($0 * 7919) % 49_152) }
        let ctx = try KVContext(kv: kv, tokens: ids, metadata: real.metadata)

        let dir = NSTemporaryDirectory() + "kvstore-bench-lookup-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try ChunkStore(root: dir, chunkTokens: chunkTokens)
        let namespace = store.namespace(for: ctx, model: real.metadata["model"] ?? "bench")
        let report = try store.put(ctx, namespace: namespace)
        print("store: \(report.chunks) chunks of \(chunkTokens) tokens, \(report.blobsWritten) blob(s)")

        let query = ids + [1, 2, 3]
        var times: [Double] = []
        times.reserveCapacity(iterations)
        var matched = 0
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            matched = try store.lookup(query, namespace: namespace).tokens
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000)
        }
        guard matched == tokens else { throw ValidationError("lookup matched \(matched) of \(tokens) tokens") }
        let hashStart = DispatchTime.now().uptimeNanoseconds
        for _ in 0..<100 { _ = PrefixChain.hashes(root: namespace.root, tokens: ids, chunkTokens: chunkTokens) }
        let hashMicros = Double(DispatchTime.now().uptimeNanoseconds - hashStart) / 1000 / 100
        times.sort()
        func pct(_ p: Double) -> String { String(format: "%.1f", times[min(times.count - 1, Int(Double(times.count) * p))]) }
        let mean = times.reduce(0, +) / Double(times.count)
        print("lookup of a \(tokens)-token query (\(chunks) chunks), \(iterations) runs: mean \(String(format: "%.1f", mean)) µs, p50 \(pct(0.5)) µs, p99 \(pct(0.99)) µs, max \(pct(1.0)) µs")
        print("of which SHA-256 chain hashing: \(String(format: "%.1f", hashMicros)) µs")
    }
}
