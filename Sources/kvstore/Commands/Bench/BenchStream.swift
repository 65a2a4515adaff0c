import ArgumentParser
import Foundation
import KVTensor
import KVFrames
import KVTransport

/// Side-by-side load benchmark against a running `kvstore serve` (tools/bench_stream.sh runs it
/// over a shaped namespace link).
struct BenchStream: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream",
        abstract: "Benchmark streamed loads from a kvstore server: adaptive vs raw fp16 vs zstd vs fixed levels.")

    @Option(help: "Server, http://HOST:PORT.")
    var remote: String

    @Option(help: "Query: safetensors with `tokens`, a JSON array file, or an inline JSON array.")
    var tokens: String

    @Option(help: "Deadline, milliseconds.")
    var sloMs = 1000.0

    @Option(help: "Comma-separated modes: adaptive, raw, zstd, L0..L4.")
    var modes = "adaptive,raw,zstd,L0"

    @Option(help: "Runs per mode (the median is reported).")
    var runs = 3

    @Option(help: "Concurrent streams per run (throughput mode: no decoding, aggregate bytes/s).")
    var streams = 1

    @Flag(inversion: .prefixedNo, help: "Decode chunks as they arrive (default with one stream; throughput runs pass --no-decode).")
    var decode: Bool?

    @Option(help: "Prior for the first level choice, Mbit/s (default: the server's).")
    var bandwidthHintMbps: Double?

    @Option(help: "Bearer token (default: $KVSTORE_TOKEN).")
    var authToken: String?

    struct Row: Encodable {
        var mode: String
        var bytes: Int
        var ttlbMs: Double
        var transferMs: Double
        var throughputMbps: Double
        var levels: String
        var deadlineMet: Bool
        var errors: Int
    }

    func run() async throws {
        guard (1...256).contains(streams), (1...50).contains(runs) else { throw ValidationError("--streams must be 1...256 and --runs 1...50") }
        let query = try TokenQuery.parse(tokens)
        let token = authToken ?? ProcessInfo.processInfo.environment["KVSTORE_TOKEN"]
        let client = StreamClient(exchange: HTTPExchange(endpoint: try RemoteEndpoint(url: remote), bearerToken: token))
        var rows: [Row] = []
        for mode in modes.split(separator: ",").map(String.init) {
            var request = StreamRequest(tokens: query, sloMs: sloMs, bandwidthHintMbps: bandwidthHintMbps)
            switch mode {
            case "adaptive": break
            case "raw", "zstd": request.encoding = mode
            case let m where m.hasPrefix("L") && UInt8(m.dropFirst()) != nil: request.level = UInt8(m.dropFirst())
            default: throw ValidationError("unknown mode \(mode)")
            }
            var samples: [Row] = []
            for _ in 0..<runs { samples.append(try await measure(mode: mode, request: request, client: client)) }
            rows.append(samples.sorted { $0.ttlbMs < $1.ttlbMs }[samples.count / 2])
        }
        print(table(rows))
    }

    /// One run: `streams` concurrent loads; figures are for the slowest stream, bytes summed.
    func measure(mode: String, request: StreamRequest, client: StreamClient) async throws -> Row {
        let decode = self.decode ?? (streams == 1)
        let start = ContinuousClock.now
        let results = await withTaskGroup(of: Result<StreamResult?, any Error>.self) { group in
            for _ in 0..<streams {
                group.addTask {
                    do { return .success(try await client.stream(request, decode: decode)) } catch { return .failure(error) }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        let wall = (ContinuousClock.now - start).seconds
        var ok: [StreamResult] = []
        var errors = 0
        for r in results {
            switch r {
            case .success(let s?): ok.append(s)
            case .success(nil): errors += 1
            case .failure(let e):
                errors += 1
                FileHandle.standardError.write(Data("stream error: \(e)\n".utf8))
            }
        }
        guard let slowest = ok.max(by: { $0.timeToLastByte < $1.timeToLastByte }) else {
            return Row(mode: mode, bytes: 0, ttlbMs: 0, transferMs: 0, throughputMbps: 0, levels: "-", deadlineMet: false, errors: errors)
        }
        let bytes = ok.reduce(0) { $0 + $1.bytes }
        let transfer = slowest.timeToLastByte - slowest.timeToFirstByte
        return Row(mode: mode, bytes: bytes, ttlbMs: slowest.timeToLastByte * 1000, transferMs: transfer * 1000,
                   throughputMbps: Double(bytes) * 8 / (streams == 1 ? slowest.timeToLastByte : wall) / 1e6,
                   levels: Self.levelSummary(slowest), deadlineMet: slowest.deadlineMet, errors: errors)
    }

    static func levelSummary(_ r: StreamResult) -> String {
        if let enc = r.header.encoding { return enc == "raw" ? "lossless (fp16 raw)" : "lossless (zstd)" }
        var counts: [String: Int] = [:]
        for c in r.chunks { counts[c.choice.description, default: 0] += 1 }
        return counts.sorted { $0.key < $1.key }.map { "\($0.value)x\($0.key)" }.joined(separator: " ")
    }

    func table(_ rows: [Row]) -> String {
        var lines = ["| mode | streams | bytes | time to last byte | transfer | throughput | levels delivered | deadline \(Int(sloMs)) ms | errors |",
                     "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"]
        for r in rows {
            lines.append("| \(r.mode) | \(streams) | \(Format.bytes(r.bytes)) | " + String(format: "%.1f ms | %.1f ms | %.1f Mbit/s", r.ttlbMs, r.transferMs, r.throughputMbps)
                         + " | \(r.levels) | \(r.deadlineMet ? "met" : "missed") | \(r.errors) |")
        }
        return lines.joined(separator: "\n")
    }
}
