import ArgumentParser
import Foundation
import KVTensor
import KVFrames
import KVTransport

struct RemoteOptions: ParsableArguments {
    @Option(help: "Stream the prefix from a `kvstore serve` at http://HOST:PORT instead of a local store.")
    var remote: String?

    @Option(help: "Deadline for the whole prefix, milliseconds (with --remote).")
    var sloMs = 1000.0

    @Option(help: "Bearer token for --remote (default: $KVSTORE_TOKEN).")
    var authToken: String?

    @Option(help: "Expected bandwidth, Mbit/s: the server's first level choice (with --remote).")
    var bandwidthHintMbps: Double?

    @Option(help: ArgumentHelp("Baseline wire encoding for benchmarks: stored, raw or zstd.", visibility: .hidden))
    var encoding: String?
}

extension Get {
    struct RemoteReport: Encodable {
        struct Chunk: Encodable {
            var index: Int
            var start: Int
            var end: Int
            var level: String
            var bytes: Int
            var arrivedMs: Double
        }
        var matchedTokens: Int
        var queryTokens: Int
        /// Tokens of KV written (the contiguous prefix before the first recompute chunk).
        var writtenTokens: Int
        var recompute: [[Int]]
        var bytes: Int
        var ttfbMs: Double
        var ttlbMs: Double
        var decodedMs: Double
        var prepareMs: Double?
        var throughputMbps: Double
        var sloMs: Double
        var deadlineMet: Bool
        var chunks: [Chunk]
        var output: String?
    }

    func runRemote(query: [Int32]) async throws {
        let endpoint = try RemoteEndpoint(url: remoteOptions.remote!)
        let token = remoteOptions.authToken ?? ProcessInfo.processInfo.environment["KVSTORE_TOKEN"]
        let client = StreamClient(exchange: HTTPExchange(endpoint: endpoint, bearerToken: token))
        let request = StreamRequest(tokens: query, model: model, dtype: dtype, sloMs: remoteOptions.sloMs, level: level,
                                    bandwidthHintMbps: remoteOptions.bandwidthHintMbps, encoding: remoteOptions.encoding)
        guard let result = try await client.stream(request) else {
            out.emit(Report(matchedTokens: 0, queryTokens: query.count, chunks: 0)) {
                "no stored prefix for the query (0 of \(query.count) tokens)"
            }
            throw Exit.miss
        }
        var written: String?
        if let kv = try result.contiguousKV() {
            let ctx = try KVContext(kv: kv, tokens: Array(query[0..<result.contiguousTokens]),
                                    metadata: ["model": result.header.model])
            try Safetensors.write(ctx, to: output)
            written = output
        }
        let ttlb = result.timeToLastByte
        let report = RemoteReport(
            matchedTokens: result.header.matchedTokens, queryTokens: query.count, writtenTokens: result.contiguousTokens,
            recompute: result.recomputeRanges.map { [$0.lowerBound, $0.upperBound] }, bytes: result.bytes,
            ttfbMs: result.timeToFirstByte * 1000, ttlbMs: ttlb * 1000, decodedMs: result.timeToDecoded * 1000,
            prepareMs: result.header.prepareMs,
            throughputMbps: ttlb > 0 ? Double(result.bytes) * 8 / ttlb / 1e6 : 0,
            sloMs: result.header.sloMs, deadlineMet: result.deadlineMet,
            chunks: result.chunks.map {
                RemoteReport.Chunk(index: $0.index, start: $0.tokens.lowerBound, end: $0.tokens.upperBound,
                                   level: $0.choice.description, bytes: $0.bytes, arrivedMs: $0.arrived * 1000)
            },
            output: written)
        out.emit(report) {
            var lines = result.chunks.map { c in
                String(format: "chunk %3d  tokens %6d..<%-6d  ", c.index, c.tokens.lowerBound, c.tokens.upperBound)
                    + c.choice.description.padding(toLength: 6, withPad: " ", startingAt: 0)
                    + Format.bytes(c.bytes).padding(toLength: 11, withPad: " ", startingAt: 0)
                    + String(format: "at %8.1f ms", c.arrived * 1000)
            }
            lines.append("matched \(report.matchedTokens) of \(query.count) tokens; \(Format.bytes(report.bytes)) "
                + String(format: "in %.1f ms (first byte %.1f ms, decoded %.1f ms): %.1f Mbit/s",
                         report.ttlbMs, report.ttfbMs, report.decodedMs, report.throughputMbps))
            lines.append("deadline \(Int(report.sloMs)) ms " + (report.deadlineMet ? "met" : "MISSED"))
            if !report.recompute.isEmpty {
                lines.append("recompute from text: " + report.recompute.map { "\($0[0])..<\($0[1])" }.joined(separator: ", "))
            }
            lines.append(written.map { "wrote \(report.writtenTokens) tokens of KV -> \($0)" } ?? "no KV written (every chunk must be recomputed)")
            return lines.joined(separator: "\n")
        }
    }
}
