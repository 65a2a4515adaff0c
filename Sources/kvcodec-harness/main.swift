// Development harness for the codec (not the product CLI): chunked round trips for the quality
// script and the benchmark table.
//   kvcodec-harness roundtrip IN.safetensors OUT.safetensors LEVEL [CHUNK_TOKENS [ALPHA [GAMMA]]]
//   kvcodec-harness bench IN.safetensors [CHUNK_TOKENS] [LEVELS e.g. 0,1,2,3,4]
//   kvcodec-harness sideinfo IN.safetensors LEVEL     (side-info bytes per section)
//   kvcodec-harness encode-loop IN.safetensors LEVEL  (encode only, for profiling)
//   kvcodec-harness encode-count IN.safetensors LEVEL N  (encode N times, for instruction counts)
// Every command takes `--profile FILE` (the model's codec profile); without it, lossy levels use the
// profile derived from the KV (`CodecProfile.uncalibrated`), as `kvstore encode` does.
import KVBench
import KVCodec
import KVTensor

func fail(_ s: String) -> Never {
    print("error: \(s)")
    exit(1)
}

#if canImport(Glibc)
import Glibc
#endif

let (args, profileFile): ([String], String?) = {
    var args = CommandLine.arguments
    guard let i = args.firstIndex(of: "--profile") else { return (args, nil) }
    guard i + 1 < args.count else { fail("--profile needs a file") }
    let file = args[i + 1]
    args.removeSubrange(i...(i + 1))
    return (args, file)
}()
/// The codec profile lossy levels of `ctx` encode with.
func profile(for ctx: KVContext) throws -> CodecProfile {
    if let f = profileFile {
        let p = try CodecProfile.load(f)
        try p.check(matches: ctx.kv.shape)
        return p
    }
    return CodecProfile.uncalibrated(model: ctx.metadata["model"] ?? "unknown", kv: ctx.kv, metadata: ctx.metadata)
}
guard args.count >= 3 else { fail("usage: kvcodec-harness roundtrip IN OUT LEVEL [CHUNK] | bench IN [CHUNK] [LEVELS]") }
do {
    switch args[1] {
    case "roundtrip":
        guard args.count >= 5, let level = UInt8(args[4]) else { fail("roundtrip IN OUT LEVEL [CHUNK]") }
        let chunk = args.count > 5 ? Int(args[5]) ?? 256 : 256
        // Optional 6th and 7th arguments: a base step (alpha) and a key-channel gamma overriding the
        // level's profile, for tuning.
        let ctx = try Safetensors.readContext(args[2])
        let model = try profile(for: ctx)
        let codec: any ChunkCodec = args.count > 6
            ? QuantizedRANSCodec(profile: QuantProfile(alpha: Float(args[6]) ?? 0.5,
                                                       keyChannelGamma: args.count > 7 ? Float(args[7]) ?? 0.75 : 0.75), model: model)
            : level == 0 ? try ChunkContainer.codec(forLevel: level) : QuantizedRANSCodec(model: model)
        var parts: [KVTensor] = []
        var total = 0, sideBytes = 0, escapeBytes = 0
        var start = 0
        while start < ctx.kv.tokens {
            let end = min(ctx.kv.tokens, start + chunk)
            let enc = try ChunkContainer.encode(ctx.kv.slice(tokens: start..<end), level: level, codec: codec)
            total += enc.count
            if level > 0, enc.count >= ChunkHeader.size + 20 {
                // Lossy payload prefix: version, flags, reserved, side raw, side zstd, escapes, rANS.
                func u32(_ o: Int) -> Int { Int(enc[o]) | Int(enc[o + 1]) << 8 | Int(enc[o + 2]) << 16 | Int(enc[o + 3]) << 24 }
                sideBytes += u32(ChunkHeader.size + 8)
                escapeBytes += u32(ChunkHeader.size + 12)
            }
            parts.append(try ChunkContainer.decode(enc))
            start = end
        }
        let out = try KVTensor.concatenate(parts)
        let fp16 = ctx.kv.elementCount * 2
        if level == 0 && out != ctx.kv { fail("level 0 round trip is not bit-identical") }
        try FileIO.writeAtomically(Safetensors.serialize(KVContext(kv: out, tokens: ctx.tokens, metadata: ctx.metadata)), to: args[3], sync: false)
        if level > 0 { print("side info \(sideBytes) bytes, escapes \(escapeBytes) bytes of \(total)") }
        print("level \(level) chunk \(chunk): \(total) bytes, ratio vs fp16 \(Double(fp16) / Double(total))")
    case "bench":
        let chunk = args.count > 3 ? Int(args[3]) ?? 256 : 256
        let levels = args.count > 4 ? args[4].split(separator: ",").compactMap { UInt8($0) } : [0, 1, 2, 3, 4]
        let ctx = try Safetensors.readContext(args[2])
        print(try CodecBenchmark.run(tensor: ctx.kv, chunkTokens: chunk, levels: levels, model: profile(for: ctx)).table)
    case "decode-loop":
        // Profiling aid: encodes once, then only decodes (kvcodec-harness decode-loop IN LEVEL [SECONDS]).
        guard args.count >= 4, let level = UInt8(args[3]) else { fail("decode-loop IN LEVEL [SECONDS]") }
        let seconds = args.count > 4 ? Double(args[4]) ?? 5 : 5
        let ctx = try Safetensors.readContext(args[2])
        var chunks: [[UInt8]] = []
        var start = 0
        while start < ctx.kv.tokens {
            let end = min(ctx.kv.tokens, start + 256)
            chunks.append(try ChunkContainer.encode(ctx.kv.slice(tokens: start..<end), level: level, model: profile(for: ctx)))
            start = end
        }
        var runs = 0
        var best = Double.infinity
        let t0 = CodecBenchmark.now()
        while CodecBenchmark.now() - t0 < seconds {
            let t1 = CodecBenchmark.now()
            for c in chunks { _ = try ChunkContainer.decode(c) }
            best = min(best, CodecBenchmark.now() - t1)
            runs += 1
        }
        print("level \(level): \(runs) decodes, best \(Int(Double(ctx.kv.bytes.count) / best / 1e6)) MB/s")
    case "encode-loop":
        // Profiling aid: only encodes, for 4 seconds (kvcodec-harness encode-loop IN LEVEL).
        guard args.count >= 4, let level = UInt8(args[3]) else { fail("encode-loop IN LEVEL") }
        let ctx = try Safetensors.readContext(args[2])
        // Chunks sliced up front, as `kvstore bench codec` does.
        let chunks = stride(from: 0, to: ctx.kv.tokens, by: 256).map { ctx.kv.slice(tokens: $0..<min(ctx.kv.tokens, $0 + 256)) }
        let model = try profile(for: ctx)
        let t0 = CodecBenchmark.now()
        var n = 0
        while CodecBenchmark.now() - t0 < 4 {
            for chunk in chunks { _ = try ChunkContainer.encode(chunk, level: level, model: model) }
            n += 1
        }
        print("level \(level): \(n) encodes, \(Int(Double(n * ctx.kv.bytes.count) / (CodecBenchmark.now() - t0) / 1e6)) MB/s")
    case "encode-count":
        // Profiling aid: encodes every chunk N times, a fixed amount of work for instruction counts
        // (kvcodec-harness encode-count IN LEVEL N, e.g. under valgrind --tool=callgrind).
        guard args.count >= 5, let level = UInt8(args[3]), let count = Int(args[4]) else { fail("encode-count IN LEVEL N") }
        let ctx = try Safetensors.readContext(args[2])
        let chunks = stride(from: 0, to: ctx.kv.tokens, by: 256).map { ctx.kv.slice(tokens: $0..<min(ctx.kv.tokens, $0 + 256)) }
        let model = try profile(for: ctx)
        var bytes = 0
        var hash: UInt64 = 0 // XXH64 chained over the chunks: equal output, equal hash
        for _ in 0..<count {
            for chunk in chunks {
                let e = try ChunkContainer.encode(chunk, level: level, model: model)
                bytes += e.count
                hash = XXHash64.hash(e, seed: hash)
            }
        }
        print("level \(level): \(count) encodes, \(bytes) bytes, hash \(String(hash, radix: 16))")
    case "sideinfo":
        // Side-info budget per section (kvcodec-harness sideinfo IN LEVEL): each section of the
        // layout in schemas/codec-bitstream.md zstd-compressed alone, summed over 256-token chunks.
        guard args.count >= 4, let level = UInt8(args[3]) else { fail("sideinfo IN LEVEL") }
        let ctx = try Safetensors.readContext(args[2])
        let G = ctx.kv.shape.layers * 2, C = ctx.kv.shape.rowElements
        var names = ["steps", "model classes", "mean codes (low bytes)", "mean codes (high bytes)", "token codes", "channel codes", "all side info (one frame)"]
        var sums = [Int](repeating: 0, count: names.count)
        var total = 0, header = 0
        var start = 0
        while start < ctx.kv.tokens {
            let end = min(ctx.kv.tokens, start + 256)
            let T = end - start
            let chunk = try ChunkContainer.encode(ctx.kv.slice(tokens: start..<end), level: level, model: profile(for: ctx))
            total += chunk.count
            header += ChunkHeader.size + 20
            let p = Array(chunk[ChunkHeader.size...])
            func u32(_ o: Int) -> Int { Int(p[o]) | Int(p[o + 1]) << 8 | Int(p[o + 2]) << 16 | Int(p[o + 3]) << 24 }
            let side = try p.withUnsafeBytes { try Zstd.decompress(UnsafeRawBufferPointer(rebasing: $0[20..<(20 + u32(8))]), size: u32(4)) }
            let sizes = [4 * G, G * C, G * C, G * C, G * T, G * C]
            var o = 0
            for (i, n) in sizes.enumerated() {
                sums[i] += try Zstd.compress(Array(side[o..<(o + n)]), level: 3).count
                o += n
            }
            sums[sizes.count] += u32(8)
            start = end
        }
        names.append("chunk header + payload prefix")
        sums.append(header)
        for (n, b) in zip(names, sums) {
            print("\(n): \(b) bytes, \(String(format: "%.2f", 100 * Double(b) / Double(total)))% of \(total)")
        }
    default:
        fail("unknown command \(args[1])")
    }
} catch {
    fail("\(error)")
}
