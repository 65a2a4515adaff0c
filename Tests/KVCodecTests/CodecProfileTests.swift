import Foundation
import Testing
@testable import KVCodec
import KVTensor
import TestSupport

/// Calibration is data: profile files, the default for models never calibrated, and shapes the
/// codec has never seen.
@Suite struct CodecProfileTests {
    @Test func shippedSmolLM2ProfileParsesAndRoundTrips() throws {
        let p = try Profiles.smolLM2()
        #expect(p.model == "SmolLM2-135M-Instruct" && p.calibrated)
        #expect(p.kvShape == KVShape(layers: 30, kvHeads: 3, headDim: 64))
        #expect(p.inChunkRoPE == .flagOne(layers: p.shape.layers))
        #expect(try CodecProfile.parse(p.encoded()) == p)
        // Encoding with the file changes the bytes against the flat profile (it is really used).
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<32)
        #expect(try ChunkContainer.encode(kv, level: 2, model: p) != ChunkContainer.encode(kv, level: 2))
    }

    /// Every file in profiles/ is a valid calibrated profile of its model's KV shape, made by the one
    /// calibrator (tools/calibrate_llama.py) with the level scales its calibration found.
    @Test func everyShippedProfileParses() throws {
        let dir = TestSupport.repositoryRoot + "/profiles"
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".json") }.sorted()
        let shapes = ["SmolLM2-135M-Instruct-Q4_1.json": KVShape(layers: 30, kvHeads: 3, headDim: 64),
                      "gemma-3-270m-Q4_K_M.json": KVShape(layers: 18, kvHeads: 1, headDim: 256)]
        #expect(files == shapes.keys.sorted())
        for f in files {
            let p = try CodecProfile.parse(Array(FileManager.default.contents(atPath: dir + "/" + f)!))
            #expect(p.calibrated && p.kvShape == shapes[f], "\(f)")
            #expect(p.model.hasPrefix("llama.cpp/") && p.level_step_scales?.count == 4, "\(f)")
            #expect(p.source.hasPrefix("tools/calibrate_llama.py"), "\(f)")
        }
    }

    @Test func aProfileForAnotherShapeIsRefused() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<8)
        let other = CodecProfile.flat(model: "other", shape: KVShape(layers: 30, kvHeads: 3, headDim: 32))
        #expect(throws: CodecProfile.Invalid("the codec profile of other is for KV of shape 30x2x3x32, this KV is 30x2x3x64")) {
            try ChunkContainer.encode(kv, level: 2, model: other)
        }
    }

    /// Bad files get one clear line, never a crash or a profile with wrong counts.
    @Test func hostileProfileFilesAreRejected() throws {
        let good = try Profiles.smolLM2()
        func json(_ edit: (inout [String: Any]) -> Void) throws -> [UInt8] {
            var obj = try JSONSerialization.jsonObject(with: Data(good.encoded())) as! [String: Any]
            edit(&obj)
            return Array(try JSONSerialization.data(withJSONObject: obj))
        }
        let cases: [(String, [UInt8])] = [
            ("truncated", Array(try good.encoded().prefix(200))),
            ("not JSON", Array("hello".utf8)),
            ("version 2", try json { $0["version"] = 2 }),
            ("wrong format", try json { $0["format"] = "something" }),
            ("layers missing", try json { $0["group_step_weights"] = Array(($0["group_step_weights"] as! [Any]).dropLast()) }),
            ("three weights", try json { $0["group_step_weights"] = [[Any]](repeating: [1, 1, 1], count: 30) }),
            ("weight 0", try json { $0["group_step_weights"] = [[Any]](repeating: [0, 1], count: 30) }),
            ("weight 1e9", try json { $0["group_step_weights"] = [[Any]](repeating: [1e9, 1], count: 30) }),
            ("short energy row", try json { $0["key_pair_energy"] = [[Int]](repeating: [1, 2], count: 30) }),
            ("energy 500", try json { $0["key_pair_energy"] = [[Int]](repeating: [Int](repeating: 500, count: 96), count: 30) }),
            ("huge shape", try json { $0["shape"] = ["layers": 1 << 40, "kv_heads": 3, "head_dim": 64] }),
            ("odd pairs", try json { $0["rope"] = ["theta": 10000.0, "pairs": "diagonal", "dim": 64] }),
            ("empty model", try json { $0["model"] = "" }),
            ("three level scales", try json { $0["level_step_scales"] = [1, 1, 1] }),
            ("level scale -1", try json { $0["level_step_scales"] = [1, -1, 1, 1] }),
        ]
        for (name, bytes) in cases {
            #expect(throws: CodecProfile.Invalid.self, "\(name)") { try CodecProfile.parse(bytes) }
        }
        #expect(throws: CodecProfile.Invalid.self) { try CodecProfile.parse([UInt8](repeating: 0x20, count: CodecProfile.maxFileBytes + 1)) }
    }

    /// A deterministic KV of any shape with what real KV has: per-channel offsets and spreads that
    /// differ by channel, a few tokens far smaller (attention sinks) and a few far larger.
    static func syntheticKV(_ shape: KVShape, tokens: Int, seed: UInt64) throws -> KVTensor {
        var rng = TestRNG(s: seed)
        let C = shape.rowElements
        var floats = [Float](repeating: 0, count: shape.elementsPerToken * tokens)
        for g in 0..<(shape.layers * 2) {
            let offsets = (0..<C).map { _ in Float(rng.unit() * 4 - 2) * (g % 2 == 0 ? 3 : 0.2) }
            let spreads = (0..<C).map { _ in Float(0.1 + 2 * rng.unit() * rng.unit()) }
            for t in 0..<tokens {
                let tokenScale: Float = t == 0 ? 0.1 : (t % 37 == 5 ? 4 : 1)
                for c in 0..<C {
                    let gauss = Float(rng.unit() + rng.unit() + rng.unit() - 1.5) * 2
                    floats[(g * tokens + t) * C + c] = offsets[c] + spreads[c] * gauss * tokenScale
                }
            }
        }
        return try KVTensor(shape: shape, tokens: tokens, dtype: .f16, floats: floats)
    }

    /// Shapes no profile exists for (Gemma-3-like 18 x 1 x 256, Llama-like 16 x 8 x 128) round-trip
    /// through every level on the KV-derived default, with error growing by level and within what
    /// a uniform quantiser of the level's step gives, on both encoder paths.
    @Test(arguments: [KVShape(layers: 18, kvHeads: 1, headDim: 256), KVShape(layers: 16, kvHeads: 8, headDim: 128)])
    func unseenShapesRoundTripOnTheDefault(shape: KVShape) throws {
        let kv = try Self.syntheticKV(shape, tokens: 48, seed: UInt64(shape.headDim))
        let profile = CodecProfile.uncalibrated(model: "never-seen", kv: kv)
        #expect(!profile.calibrated && profile.rope == nil)
        #expect(profile.key_pair_energy?.count == shape.layers && profile.key_pair_energy?[0].count == shape.rowElements / 2)
        var last = 0.0, lastSize = kv.bytes.count
        for level: UInt8 in 1...4 {
            let bytes = try ChunkContainer.encode(kv, level: level, model: profile)
            let codec = QuantizedRANSCodec(model: profile)
            for isa in EncoderISA.available where isa != .portable {
                #expect(try codec.encode(kv, level: level, isa: isa) == codec.encode(kv, level: level, isa: .portable))
            }
            let out = try ChunkContainer.decode(bytes)
            #expect(out.shape == shape && out.tokens == kv.tokens)
            let err = LossyCodecTests.relativeRMSE(kv, out)
            // Uniform quantisation error is step/√12; the step is α · weight · the group's spread.
            let alpha = Double(try QuantProfile.forLevel(level).alpha), w = Double(CodecProfile.uncalibratedStepWeight)
            #expect(err > last && err < 0.6 * alpha * w, "\(shape) level \(level): relative RMSE \(err)")
            // The default steps finely (schemas/codec-profile.md): smaller than fp16, shrinking by level.
            #expect(bytes.count < lastSize, "\(shape) level \(level): \(bytes.count) bytes")
            last = err
            lastSize = bytes.count
        }
    }

    /// The default's key-pair weights follow the keys' energy: pairs whose keys are larger get
    /// finer steps; a pair of zeros gets the finest code, non-finite keys no codes at all.
    @Test func uncalibratedKeyPairWeightsFollowKeyEnergy() throws {
        let shape = KVShape(layers: 2, kvHeads: 1, headDim: 8)
        // Pair i of layer 0's keys has amplitude 2^i; layer 1's keys are all equal.
        let floats = (0..<(shape.elementsPerToken * 4)).map { i -> Float in
            let (g, c) = (i / (4 * 8), i % 8)
            return g == 0 ? Float(1 << (c / 2)) * (i % 3 == 0 ? -1 : 1) : (g == 2 ? 0.5 : 1)
        }
        let kv = try KVTensor(shape: shape, tokens: 4, dtype: .f32, floats: floats)
        let e = try #require(CodecProfile.uncalibrated(model: "m", kv: kv).key_pair_energy)
        // energy 4^i over mean (1 + 4 + 16 + 64) / 4 = 21.25: round(4 log2(4^i / 21.25))
        #expect(e[0] == [-18, -10, -2, 6])
        #expect(e[1] == [0, 0, 0, 0])
        let codes = try #require(CodecProfile.uncalibrated(model: "m", kv: kv).keyChannelCodes(layer: 0, gamma: 0.75))
        #expect(codes == [3, 3, 2, 2, 0, 0, -1, -1])
        var bad = floats
        bad[3] = .infinity
        #expect(CodecProfile.uncalibrated(model: "m", kv: try KVTensor(shape: shape, tokens: 4, dtype: .f32, floats: bad)).key_pair_energy == nil)
    }

    /// The default takes RoPE from the context's metadata, and ignores metadata it cannot use.
    @Test func uncalibratedDefaultReadsRoPEFromMetadata() throws {
        let ctx = try TestSupport.realContext()
        let p = CodecProfile.uncalibrated(model: "m", kv: ctx.kv, metadata: ctx.metadata)
        #expect(p.inChunkRoPE == .flagOne(layers: p.shape.layers))
        #expect(p.group_step_weights.allSatisfy { $0 == [CodecProfile.uncalibratedStepWeight, CodecProfile.uncalibratedStepWeight] })
        var meta = ctx.metadata
        meta["rope_pairs"] = "sideways"
        #expect(CodecProfile.uncalibrated(model: "m", kv: ctx.kv, metadata: meta).rope == nil)
        meta["rope_pairs"] = "split"
        #expect(CodecProfile.uncalibrated(model: "m", kv: ctx.kv, metadata: meta).inChunkRoPE?.pairs == .half)
        #expect(try ChunkContainer.encode(ctx.kv, level: 2, model: p)[ChunkHeader.size + 1] == QuantizedRANSCodec.flagRoPE)
    }

    /// No model's numbers in the sources: no long numeric table literal and no per-model names
    /// in Swift code under Sources/ (profiles live in profiles/*.json). The llama.cpp engine adapter,
    /// its sidecar and its C ABI binding name the engine, not a model, so the name check skips them.
    @Test func noModelSpecificTablesRemainInSources() throws {
        let root = TestSupport.repositoryRoot + "/Sources"
        let files = try FileManager.default.subpathsOfDirectory(atPath: root).filter { $0.hasSuffix(".swift") }
        let engineAdapters = ["KVEngineLlama/", "KVSidecar/", "kvstore/Commands/Sidecar.swift", "KVStoreC/Llama.swift", "KVStoreC/Errors.swift"]
        #expect(files.count > 50)
        // 24 or more numeric literals in a row separated by commas: a table.
        let table = try Regex(#"(-?[0-9][0-9.eE_+-]*\s*,\s*){24,}"#)
        let modelName = try Regex(#"(?i)(smollm|gemma|llama|qwen|mistral)[A-Za-z0-9_]*\s*[:=(\[]"#)
        for f in files {
            let text = try String(contentsOfFile: root + "/" + f, encoding: .utf8)
            let code = text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("//") }.joined(separator: "\n")
            let hasTable = code.firstMatch(of: table) != nil
            #expect(!hasTable, "\(f) holds a numeric table")
            guard !engineAdapters.contains(where: { f.hasPrefix($0) }) else { continue }
            let named = code.firstMatch(of: modelName).map { String(code[$0.range]) }
            #expect(named == nil, "\(f) names a model in code: \(named ?? "")")
        }
    }
}
