import Foundation
import KVStore
import KVTensor
import Testing
import TestSupport

/// The reuse options of put/get through the real binary: aLoRA adapters, salts, independent
/// segments and vLLM block hashes.
@Suite struct ReuseCLITests {
    let dir = TestSupport.scratchDirectory("reuse-cli")
    var store: String { dir + "/store" }
    let fixture = TestSupport.fixture("smollm2_ctx96_f16.safetensors")

    func run(_ args: [String]) throws -> TestSupport.RunResult {
        try TestSupport.run(args + ["--store", store])
    }

    /// The fixture's KV with rows from `from` on replaced by a transform of them (an adapter's KV).
    func adapterContext(_ base: KVContext, from: Int, scale: Float) throws -> KVContext {
        let changed = try KVTensor(shape: base.kv.shape, tokens: base.kv.tokens, dtype: base.kv.dtype,
                                   floats: base.kv.floats().map { $0 * scale })
        let kv = try KVTensor.concatenate([base.kv.slice(tokens: 0..<from), changed.slice(tokens: from..<base.kv.tokens)])
        return try KVContext(kv: kv, tokens: base.tokens, metadata: base.metadata)
    }

    @Test func twoALoRAAdaptersAndTheBaseShareTheConversationPrefix() throws {
        defer { TestSupport.removeTree(dir) }
        let base = try TestSupport.realContext()
        let a = try adapterContext(base, from: 64, scale: 0.5), b = try adapterContext(base, from: 64, scale: -1)
        try Safetensors.write(a, to: dir + "/a.safetensors")
        try Safetensors.write(b, to: dir + "/b.safetensors")
        try TestSupport.write(Array("weights of adapter A".utf8), to: dir + "/A.bin")
        try TestSupport.write(Array("weights of adapter B".utf8), to: dir + "/B.bin")
        let digestB = Hash32.sha256(Array("weights of adapter B".utf8)).hex

        #expect(try run(["put", fixture, "--chunk-tokens", "16", "--json"]).stdout.contains("\"deduplicatedChunks\":0"))
        let putA = try run(["put", dir + "/a.safetensors", "--adapter-file", dir + "/A.bin", "--invocation-start", "64", "--json"])
        #expect(putA.status == 0, "\(putA.stderr)")
        #expect(putA.stdout.contains("\"deduplicatedChunks\":4"), "\(putA.stdout)")   // chunks 0..63 are the base's
        let putB = try run(["put", dir + "/b.safetensors", "--adapter-digest", digestB, "--invocation-start", "64", "--json"])
        #expect(putB.stdout.contains("\"deduplicatedChunks\":4"), "\(putB.stdout)")
        #expect(try run(["stat", "--json"]).stdout.contains("\"chunks\":10"))         // 6 base + 2 + 2

        let tokens = dir + "/tokens.json"
        try TestSupport.write(Array("\(base.tokens)".utf8), to: tokens)
        for (args, expected) in [([String](), base), (["--adapter-file", dir + "/A.bin", "--invocation-start", "64"], a),
                                 (["--adapter-digest", digestB, "--invocation-start", "64"], b)] {
            let out = dir + "/out.safetensors"
            let get = try run(["get", "--tokens", tokens, "-o", out] + args)
            #expect(get.stdout.contains("matched 96 of 96 tokens"), "\(args) \(get.stdout) \(get.stderr)")
            #expect(try Safetensors.readContext(out).kv == expected.kv, "\(args)")
        }
        // the same adapter name with new weights is a new digest: only the base part is found
        try TestSupport.write(Array("weights of adapter A, retrained".utf8), to: dir + "/A.bin")
        let stale = try run(["get", "--tokens", tokens, "-o", dir + "/s.safetensors", "--adapter-file", dir + "/A.bin", "--invocation-start", "64"])
        #expect(stale.stdout.contains("matched 64 of 96 tokens"), "\(stale.stdout)")
    }

    @Test func saltsSeparateTenants() throws {
        defer { TestSupport.removeTree(dir) }
        #expect(try run(["put", fixture, "--salt", "tenant-a"]).status == 0)
        let tokens = dir + "/tokens.json"
        try TestSupport.write(Array("\(try TestSupport.realContext().tokens)".utf8), to: tokens)
        #expect(try run(["get", "--tokens", tokens, "-o", dir + "/o", "--salt", "tenant-a"]).status == 0)
        let other = try run(["get", "--tokens", tokens, "-o", dir + "/o", "--salt", "tenant-b"])
        #expect(other.status == 3)
        #expect(try run(["get", "--tokens", tokens, "-o", dir + "/o"]).status == 3)
    }

    @Test func independentSegmentsAreMovedToTheRequestedPositions() throws {
        defer { TestSupport.removeTree(dir) }
        let ctx = try TestSupport.realContext()
        let docA = try KVContext(kv: ctx.kv.slice(tokens: 0..<30), tokens: Array(ctx.tokens[0..<30]), metadata: ctx.metadata)
        let docB = try KVContext(kv: ctx.kv.slice(tokens: 30..<96), tokens: Array(ctx.tokens[30..<96]), metadata: ctx.metadata)
        try Safetensors.write(docA, to: dir + "/a.safetensors")
        try Safetensors.write(docB, to: dir + "/b.safetensors")
        #expect(try run(["put", dir + "/a.safetensors", "--independent", "--levels", "0"]).stdout.contains("encoded at position 0"))
        let putB = try run(["put", dir + "/b.safetensors", "--independent", "--start", "30", "--levels", "0"])
        #expect(putB.stdout.contains("66 tokens encoded at position 30"), "\(putB.stdout) \(putB.stderr)")
        try TestSupport.write(Array("\(docA.tokens)".utf8), to: dir + "/a.json")
        try TestSupport.write(Array("\(docB.tokens)".utf8), to: dir + "/b.json")

        let out = dir + "/out.safetensors"
        let get = try run(["get", "--segments", dir + "/b.json", dir + "/a.json@200", "-o", out, "--recompute-tokens", "3"])
        #expect(get.status == 0, "\(get.stderr)")
        #expect(get.stdout.contains("segment 0"), "\(get.stdout)")
        let got = try Safetensors.readContext(out)
        let rope = RoPEConfig(theta: 100_000, rotaryDim: 64, pairs: .adjacent)
        #expect(got.kv == (try KVTensor.concatenate([RoPE.shift(docB.kv, delta: -30, config: rope), RoPE.shift(docA.kv, delta: 200, config: rope)])))
        #expect(got.tokens == docB.tokens + docA.tokens)
        #expect(got.metadata["positions"] == "0-65,200-229")
        #expect(got.metadata["recompute"] == "[0, 1, 2, 66, 67, 68]")

        let missing = try run(["get", "--segments", "[1,2,3]", "-o", out])
        #expect(missing.status == 3)
        #expect(missing.stdout.contains("segment 0 (3 tokens) is not stored"), "\(missing.stdout)")

        let ls = try run(["segments", "ls", "--json"])
        #expect(ls.stdout.contains("\"start\":30") && ls.stdout.contains("\"tokens\":66"), "\(ls.stdout)")
        let id = try #require(ls.stdout.split(separator: "\"").first { $0.count == 64 })
        let short = String(id.prefix(12))
        let rm = try run(["segments", "rm", short])
        #expect(rm.stdout.contains("removed 1 segment; freed 1 blobs"), "\(rm.stdout) \(rm.stderr)")
        let again = try run(["segments", "rm", short])
        let expected = "not found: no segment " + short
        #expect(again.status == 1)
        #expect(again.stderr.contains(expected), "\(again.stderr)")
        #expect(try run(["segments"]).stdout.split(separator: "\n").count == 2)   // header + the other segment
    }

    @Test func vLLMHashesFindTheStoredBlocks() throws {
        defer { TestSupport.removeTree(dir) }
        let put = try run(["put", fixture, "--chunk-tokens", "32", "--vllm-seed", "0"])
        #expect(put.stdout.contains("indexed 6 vLLM block hashes"), "\(put.stdout) \(put.stderr)")
        let ctx = try TestSupport.realContext()
        let hashes = VLLMBlockHash.hashes(tokens: ctx.tokens, noneHash: VLLMBlockHash.noneHash(seed: "0"))
        let out = dir + "/v.safetensors"
        let get = try run(["get", "--vllm-hashes", hashes.prefix(4).map(\.hex).joined(separator: ","), "-o", out])
        #expect(get.stdout.contains("matched 4 of 4 vLLM blocks (64 tokens)"), "\(get.stdout) \(get.stderr)")
        #expect(try Safetensors.readContext(out).kv == ctx.kv.slice(tokens: 0..<64))
        let other = VLLMBlockHash.hashes(tokens: ctx.tokens, noneHash: VLLMBlockHash.noneHash(seed: "1"))
        #expect(try run(["get", "--vllm-hashes", other[0].hex, "-o", out]).status == 3)
    }

    @Test func badReuseOptionsGiveOneLineErrors() throws {
        defer { TestSupport.removeTree(dir) }
        let digest = String(repeating: "ab", count: 32)
        let cases: [([String], String)] = [
            (["put", fixture, "--invocation-start", "5"], "--invocation-start needs --adapter-digest or --adapter-file"),
            (["put", fixture, "--adapter-digest", digest], "an aLoRA adapter needs --invocation-start"),
            (["put", fixture, "--adapter-digest", digest, "--adapter-file", fixture, "--invocation-start", "1"], "give --adapter-digest or --adapter-file, not both"),
            (["put", fixture, "--adapter-digest", "lora-x", "--invocation-start", "1"], "adapter digest must be 32 to 128 hex digits"),
            (["put", fixture, "--adapter-file", dir + "/none.bin", "--invocation-start", "1"], "cannot read adapter file \(dir)/none.bin"),
            (["put", fixture, "--independent", "--rope-pairs", "diagonal"], "RoPE pairs \"diagonal\" is not adjacent or split"),
            (["put", fixture, "--independent", "--rope-dim", "65"], "RoPE rotary dim 65 must be even and in 2...64"),
            (["put", fixture, "--independent", "--adapter-digest", digest, "--invocation-start", "1"], "--independent segments are stored for the base model"),
            (["put", fixture, "--chunk-tokens", "24", "--vllm-seed", "0"], "vLLM block size 16 does not divide the store's 24-token chunks"),
            (["get", "-o", dir + "/x"], "give exactly one of --tokens, --segments, --vllm-hashes"),
            (["get", "--tokens", "[1]", "--segments", "[1]", "-o", dir + "/x"], "give exactly one of --tokens, --segments, --vllm-hashes"),
            (["get", "--vllm-hashes", "abc", "-o", dir + "/x"], "vLLM hash 0 is not 64 hex digits: abc"),
        ]
        for (args, message) in cases {
            let r = try run(args)
            #expect(r.status != 0 && r.status != 3, "\(args)")
            #expect(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
    }
}
