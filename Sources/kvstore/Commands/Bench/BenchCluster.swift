import ArgumentParser
import Foundation
import KVCluster
import KVCodec
import KVStore
import KVTensor

/// The cluster tier on a running Redis Cluster against Redis' own `redis-benchmark` at the same
/// value size: chunk reads (what a stream does per chunk) vs GET, chunk writes vs SET, and
/// longest-prefix lookup of a long query.
struct BenchCluster: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster",
        abstract: "Benchmark the Redis Cluster tier against redis-benchmark GET/SET of the same value size.")

    @Option(help: "Cluster seed nodes, redis://HOST:PORT[,HOST:PORT...] (a scratch cluster: the benchmark writes to it).")
    var cluster: String

    @Option(help: "A real context file; its KV is tiled to the stream and query lengths.")
    var context: String

    @Option(help: "Tokens per chunk.")
    var chunkTokens = 256

    @Option(help: "Tokens streamed per read pass (level 0).")
    var streamTokens = 4096

    @Option(help: "Query length for the lookup latency (stored at level 4 only: lookups read headers).")
    var lookupTokens = 32_768

    @Option(help: "Timed lookups.")
    var iterations = 300

    @Option(help: "Read passes over the streamed context (the median is reported).")
    var passes = 5

    func run() throws {
        let url = try ClusterURL(cluster)
        let redis = try RedisCluster(.init(seeds: url.seeds, credentials: url.password.map { .init(user: url.user, password: $0) }))
        let tier = RedisChunkTier(cluster: redis, chunkTokens: chunkTokens)
        let real = try Safetensors.readContext(context)
        let model = real.metadata["model"] ?? "bench"
        let salt = "bench-\(getpid())-\(Int(Date().timeIntervalSince1970))"   // a fresh namespace per run

        // Stream: a context of `streamTokens` at level 0, read chunk by chunk as the server does.
        let streamCtx = try tiled(real, tokens: streamTokens, idBase: 0)
        let ns = Namespace(model: model, dtype: real.kv.dtype, shape: real.kv.shape, chunkTokens: chunkTokens, salt: salt)
        let chain = PrefixChain.hashes(root: ns.root, tokens: streamCtx.tokens, chunkTokens: chunkTokens)
        let encoded = try PrefixChain.chunkRanges(count: streamTokens, chunkTokens: chunkTokens).enumerated().map { i, r in
            RedisChunkTier.EncodedChunk(prefix: chain[i], level: 0, bytes: try ChunkContainer.encode(streamCtx.kv.slice(tokens: r), level: 0))
        }
        let valueBytes = encoded.map(\.bytes.count).reduce(0, +) / encoded.count
        let totalBytes = encoded.map(\.bytes.count).reduce(0, +)
        // Write passes: the same bytes under a fresh namespace each (SET NX of stored keys is a no-op).
        var writeTimes: [Double] = []
        for p in 0..<passes {
            var copy = ns
            copy.salt = salt + "-w\(p)"
            let wchain = PrefixChain.hashes(root: copy.root, tokens: streamCtx.tokens, chunkTokens: chunkTokens)
            let fresh = encoded.enumerated().map { RedisChunkTier.EncodedChunk(prefix: wchain[$0.offset], level: 0, bytes: $0.element.bytes) }
            let t = Date()
            let w = try tier.writeChunks(fresh)
            writeTimes.append(Date().timeIntervalSince(t))
            guard w.written == encoded.count else { throw ValidationError("stored \(w.written) of \(encoded.count) chunks (cluster full?)") }
        }
        let putSeconds = writeTimes.sorted()[writeTimes.count / 2]
        // What of a write is the record headers' SHA-256 (the blob id), computed on the writer.
        var t = Date()
        for c in encoded { _ = TierRecordHeader(payload: c.bytes, level: 0) }
        let headerSeconds = Date().timeIntervalSince(t)
        let written = try tier.writeChunks(encoded)
        guard written.written == encoded.count else { throw ValidationError("stored \(written.written) of \(encoded.count) chunks (cluster full?)") }
        let match = try tier.longestPrefix(streamCtx.tokens, namespace: ns)
        guard match.tokens == streamTokens else { throw ValidationError("lookup matched \(match.tokens) of \(streamTokens) tokens") }
        var readTimes: [Double] = []
        for _ in 0..<passes {
            t = Date()
            var bytes = 0
            for chunk in match.chunks {
                guard let b = try tier.streamBytes(chunk, level: 0) else { throw ValidationError("chunk \(chunk.record.position) vanished") }
                bytes += b.count
            }
            readTimes.append(Date().timeIntervalSince(t))
            guard bytes == totalBytes else { throw ValidationError("read \(bytes) of \(totalBytes) bytes") }
        }
        let readSeconds = readTimes.sorted()[readTimes.count / 2]
        let mb = Double(totalBytes) / 1e6
        print("values: \(encoded.count) chunks of \(chunkTokens) tokens at level 0, mean \(valueBytes) bytes (+\(TierRecordHeader.size) header)")
        print(String(format: "tier read (GET + header and XXH64 check, one chunk at a time): %.0f MB/s (median of %d passes of %.1f MB)", mb / readSeconds, passes, mb))
        print(String(format: "tier write (SET NX, pipelined per master, masters in parallel): %.0f MB/s (median of %d writes of %.1f MB: %.1f ms, of which %.1f ms record headers' SHA-256)",
                     mb / putSeconds, passes, mb, putSeconds * 1000, headerSeconds * 1000))

        // redis-benchmark at the same value size, one connection, no pipelining (like one stream).
        let n = max(20, min(200, (256 << 20) / max(valueBytes, 1)))
        if let rb = redisBenchmark(seed: url.seeds[0], password: url.password, user: url.user, valueBytes: valueBytes, requests: n) {
            let get = rb["GET"] ?? 0, set = rb["SET"] ?? 0
            print(String(format: "redis-benchmark -d %d -c 1 (%d requests): GET %.0f MB/s, SET %.0f MB/s", valueBytes, n,
                         get * Double(valueBytes) / 1e6, set * Double(valueBytes) / 1e6))
            if get > 0 { print(String(format: "tier read / redis-benchmark GET: %.2fx", mb / readSeconds / (get * Double(valueBytes) / 1e6))) }
            if set > 0 { print(String(format: "tier write / redis-benchmark SET: %.2fx", mb / putSeconds / (set * Double(valueBytes) / 1e6))) }
        } else {
            print("redis-benchmark: not run (not installed or failed)")
        }

        // Lookup: a long query stored at level 4 (the probe reads the 48-byte headers of the levels
        // the namespace was written at), extended by 3 new tokens.
        let long = try tiled(real, tokens: lookupTokens, idBase: 7)
        // No store here: level 4 with the profile derived from this KV, as a store without one would.
        let report = try tier.storeContext(try EncodedContext(long, namespace: ns, levels: [4], storedProfile: nil), name: "")
        var times: [Double] = []
        var matched = 0
        let query = long.tokens + [1, 2, 3]
        for _ in 0..<iterations {
            let start = DispatchTime.now().uptimeNanoseconds
            matched = try tier.longestPrefix(query, namespace: ns).tokens
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1000)
        }
        guard matched == lookupTokens else { throw ValidationError("lookup matched \(matched) of \(lookupTokens) tokens") }
        times.sort()
        func pct(_ p: Double) -> String { String(format: "%.0f", times[min(times.count - 1, Int(Double(times.count) * p))]) }
        print("lookup of a \(lookupTokens + 3)-token query (\(report.chunks) chunks stored at level 4, the one level probed; \(redis.slotMap?.nodes.count ?? 0) masters), \(iterations) runs: p50 \(pct(0.5)) µs, p90 \(pct(0.9)) µs, p99 \(pct(0.99)) µs")
    }

    /// `tokens` tokens of the real KV repeated, with distinct ids from `idBase`.
    func tiled(_ real: KVContext, tokens: Int, idBase: Int) throws -> KVContext {
        var parts: [KVTensor] = []
        var have = 0
        while have < tokens {
            let n = min(real.kv.tokens, tokens - have)
            parts.append(real.kv.slice(tokens: 0..<n))
            have += n
        }
        let ids = (0..<tokens).map { Int32((($0 + idBase * 100_003) * 7919) % 49_152) }
        return try KVContext(kv: KVTensor.concatenate(parts), tokens: ids, metadata: real.metadata)
    }

    /// Requests per second of GET and SET from `redis-benchmark --cluster --csv`.
    func redisBenchmark(seed: String, password: String?, user: String?, valueBytes: Int, requests: Int) -> [String: Double]? {
        guard let colon = seed.lastIndex(of: ":") else { return nil }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/redis-benchmark")
        var args = ["--cluster", "-h", String(seed[..<colon]), "-p", String(seed[seed.index(after: colon)...]),
                    "-t", "set,get", "-d", "\(valueBytes)", "-n", "\(requests)", "-c", "1", "-P", "1", "--csv"]
        if let password { args += ["-a", password] }
        if let user { args += ["--user", user] }
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return nil }
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        var rates: [String: Double] = [:]
        for line in String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline) {
            let f = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            if f.count >= 2, let r = Double(f[1]) { rates[f[0]] = r }
        }
        return rates.isEmpty ? nil : rates
    }
}
