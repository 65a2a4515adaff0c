#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KVCodec
import KVTensor

/// Size and single-core speed of every level next to zstd -3 on the same raw tensor, in one run.
/// `kvstore bench codec FILE` prints `CodecBenchmark.run(...).table`.
public enum CodecBenchmark {
    public struct Row: Sendable {
        public var name: String
        /// fp16-equivalent bytes of the input / container bytes (header + tables + payload).
        public var ratio: Double
        /// Input bytes encoded per second, and decoded bytes produced per second.
        public var encodeMBps: Double
        public var decodeMBps: Double
    }

    public struct Report: Sendable, CustomStringConvertible {
        public var rows: [Row]
        public var tokens: Int
        public var chunkTokens: Int
        public var rawBytes: Int
        /// Threads coding chunks at once (each codes whole chunks; 1 = one core's speed).
        public var threads: Int
        public var table: String {
            var s = "codec benchmark: \(tokens) tokens in chunks of \(chunkTokens), \(rawBytes) raw bytes, \(threads == 1 ? "single core" : "\(threads) threads")\n"
            s += "| codec | size vs fp16 | encode MB/s | decode MB/s |\n|---|---|---|---|\n"
            for r in rows {
                s += "| \(r.name) | \(fmt(r.ratio, 2))x | \(fmt(r.encodeMBps, 0)) | \(fmt(r.decodeMBps, 0)) |\n"
            }
            return s
        }
        public var description: String { table }
    }

    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    static func fmt(_ v: Double, _ digits: Int) -> String {
        var p = 1.0
        for _ in 0..<digits { p *= 10 }
        let r = (v * p).rounded() / p
        return digits == 0 ? String(Int(r)) : String(r)
    }

    /// Runs `body` until at least `minSeconds` have passed (and at least twice); returns the best
    /// seconds per run.
    static func time(minSeconds: Double, _ body: () throws -> Void) rethrows -> Double {
        var best = Double.infinity
        let start = now()
        var runs = 0
        while runs < 2 || now() - start < minSeconds {
            let t0 = now()
            try body()
            best = min(best, now() - t0)
            runs += 1
        }
        return best
    }

    /// `model`: the codec profile lossy levels encode with (nil: `CodecProfile.flat`); `threads`:
    /// chunks coded at once, zstd's included.
    public static func run(tensor: KVTensor, chunkTokens: Int = 256, levels: [UInt8] = [0, 1, 2, 3, 4],
                           minSeconds: Double = 1.0, model: CodecProfile? = nil, threads: Int = 1) throws -> Report {
        precondition(chunkTokens > 0)
        var chunks: [KVTensor] = []
        var start = 0
        while start < tensor.tokens {
            let end = min(tensor.tokens, start + chunkTokens)
            chunks.append(tensor.slice(tokens: start..<end))
            start = end
        }
        let fp16Bytes = Double(tensor.elementCount * 2)
        let rawBytes = Double(tensor.bytes.count)
        var rows: [Row] = []

        // zstd -3 on the raw tensor, chunk by chunk, through libzstd in this process.
        var zs: [[UInt8]] = []
        let zEnc = try time(minSeconds: minSeconds) { zs = try Parallel.map(chunks.count, threads: threads) { try Zstd.compress(chunks[$0].bytes, level: 3) } }
        let zDec = try time(minSeconds: minSeconds) {
            _ = try Parallel.map(zs.count, threads: threads) { i in
                try zs[i].withUnsafeBytes { try Zstd.decompress($0, size: chunks[i].bytes.count) }
            }
        }
        let zBytes = Double(zs.reduce(0) { $0 + $1.count })
        rows.append(Row(name: "zstd -3 (raw)", ratio: fp16Bytes / zBytes, encodeMBps: rawBytes / zEnc / 1e6, decodeMBps: rawBytes / zDec / 1e6))

        for level in levels {
            var enc: [[UInt8]] = []
            let te = try time(minSeconds: minSeconds) {
                enc = try Parallel.map(chunks.count, threads: threads) { try ChunkContainer.encode(chunks[$0], level: level, model: model) }
            }
            let td = try time(minSeconds: minSeconds) { _ = try Parallel.map(enc.count, threads: threads) { try ChunkContainer.decode(enc[$0]) } }
            let total = Double(enc.reduce(0) { $0 + $1.count })
            rows.append(Row(name: "kvstore level \(level)", ratio: fp16Bytes / total, encodeMBps: rawBytes / te / 1e6, decodeMBps: rawBytes / td / 1e6))
        }
        return Report(rows: rows, tokens: tensor.tokens, chunkTokens: chunkTokens, rawBytes: Int(rawBytes), threads: threads)
    }
}
