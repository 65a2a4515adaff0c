import Foundation
import KVTensor

/// What the lossy encoder knows about one model: per-(layer, K/V) step weights, per-key-channel
/// weights and the keys' RoPE. Data, not code: read from a profile file (schemas/codec-profile.md,
/// written by tools/calibrate_llama.py or `kvstore calibrate`), kept by the store per model identity, or
/// derived from the KV itself when a model was never calibrated (`uncalibrated(model:kv:metadata:)`).
/// The decoder never needs it: every step and channel code it implies is stored in the chunk.
public struct CodecProfile: Sendable, Equatable, Codable {
    /// Why a profile was refused, as one line.
    public struct Invalid: Error, Equatable, CustomStringConvertible {
        public let description: String
        public init(_ description: String) { self.description = description }
    }

    public static let formatName = "kvstore-codec-profile"
    public static let currentVersion = 1
    /// Largest profile file read (a 80-layer, 8 x 256 model needs ~0.5 MB of JSON).
    public static let maxFileBytes = 8 << 20

    public struct Shape: Sendable, Equatable, Codable {
        public var layers: Int
        public var kv_heads: Int
        public var head_dim: Int
        public var kvShape: KVShape { KVShape(layers: layers, kvHeads: kv_heads, headDim: head_dim) }
    }

    /// The keys' rotary embedding as the model applies it: θ, pair layout ("adjacent" = (2i, 2i+1),
    /// "half" = (i, i + dim/2)), the rotated dims per head, and θ per layer where layers differ
    /// (Gemma 3's local and global layers).
    public struct RoPE: Sendable, Equatable, Codable {
        public var theta: Double
        public var pairs: String
        public var dim: Int
        public var layer_theta: [Double]?

        public init(theta: Double, pairs: String, dim: Int, layerTheta: [Double]? = nil) {
            self.theta = theta
            self.pairs = pairs
            self.dim = dim
            layer_theta = layerTheta
        }

        /// θ of layer l.
        public func theta(layer l: Int) -> Double { layer_theta?[l] ?? theta }
    }

    public var format: String
    public var version: Int
    /// The model identity the store keys profiles by (`put --model`, `__metadata__.model`).
    public var model: String
    /// False for a profile derived from KV alone (no forward pass): `stat`/`ls` report such models.
    public var calibrated: Bool
    /// How the numbers were made (tool, texts, tokens), for people.
    public var source: String
    public var shape: Shape
    public var rope: RoPE?
    /// Per layer: [keys, values] step multipliers (KVTuner-style sensitivity, sqrt(median KL / KL)).
    public var group_step_weights: [[Float]]
    /// Per layer, per (KV head, RoPE pair): round(4 · log2(w / mean w)) of the query energy w that
    /// reads the pair's key channels; nil = every key channel keeps its group's step.
    public var key_pair_energy: [[Int]]?
    /// Optional step multiplier per level 1...4 on top of the level's base step (nil = 1 each), for
    /// a profile that needs more margin at some levels than others.
    public var level_step_scales: [Float]?

    public init(model: String, calibrated: Bool, source: String, shape: KVShape, rope: RoPE?,
                groupStepWeights: [[Float]], keyPairEnergy: [[Int]]?, levelStepScales: [Float]? = nil) {
        format = Self.formatName
        version = Self.currentVersion
        self.model = model
        self.calibrated = calibrated
        self.source = source
        self.shape = Shape(layers: shape.layers, kv_heads: shape.kvHeads, head_dim: shape.headDim)
        self.rope = rope
        group_step_weights = groupStepWeights
        key_pair_energy = keyPairEnergy
        level_step_scales = levelStepScales
    }

    public var kvShape: KVShape { shape.kvShape }

    // MARK: reading and writing

    public static func parse(_ bytes: [UInt8]) throws -> CodecProfile {
        guard bytes.count <= maxFileBytes else { throw Invalid("codec profile of \(bytes.count) bytes, at most \(maxFileBytes)") }
        let p: CodecProfile
        do { p = try JSONDecoder().decode(CodecProfile.self, from: Data(bytes)) }
        catch { throw Invalid("not a codec profile: \(Self.describe(error))") }
        try p.validate()
        return p
    }

    public static func load(_ path: String) throws -> CodecProfile {
        do { return try parse(FileIO.readAll(path, limit: maxFileBytes)) }
        catch let e as Invalid { throw Invalid("\(path): \(e.description)") }
    }

    /// Pretty JSON with sorted keys, so a profile's bytes depend only on its content.
    public func encoded() throws -> [UInt8] {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return Array(try enc.encode(self)) + [0x0A]
    }

    /// Every bound a file could break, checked before any number is used.
    public func validate() throws {
        func bad(_ s: String) -> Invalid { Invalid("codec profile: \(s)") }
        guard format == Self.formatName else { throw bad("format is \"\(format)\", expected \"\(Self.formatName)\"") }
        guard version == Self.currentVersion else { throw bad("version \(version), this build reads \(Self.currentVersion)") }
        guard !model.isEmpty, model.utf8.count <= 1024 else { throw bad("model id must be 1...1024 bytes") }
        do { try kvShape.validate() } catch { throw bad("shape: \(error)") }
        guard group_step_weights.count == shape.layers else {
            throw bad("\(group_step_weights.count) layers of step weights for \(shape.layers) layers")
        }
        for (l, w) in group_step_weights.enumerated() {
            guard w.count == 2 else { throw bad("layer \(l) has \(w.count) step weights, expected [keys, values]") }
            for x in w where !(x >= Self.weightRange.lowerBound && x <= Self.weightRange.upperBound) {
                throw bad("layer \(l) step weight \(x) outside \(Self.weightRange)")
            }
        }
        if let e = key_pair_energy {
            guard shape.head_dim % 2 == 0 else { throw bad("key-pair energies need an even head_dim") }
            let pairs = shape.kv_heads * shape.head_dim / 2
            guard e.count == shape.layers else { throw bad("key-pair energies for \(e.count) layers, expected \(shape.layers)") }
            for (l, row) in e.enumerated() {
                guard row.count == pairs else { throw bad("layer \(l) has \(row.count) key-pair energies, expected \(pairs)") }
                guard row.allSatisfy({ abs($0) <= 127 }) else { throw bad("layer \(l) key-pair energy outside -127...127") }
            }
        }
        if let scales = level_step_scales {
            guard scales.count == 4 else { throw bad("\(scales.count) level step scales, expected 4 (levels 1...4)") }
            for x in scales where !(x >= Self.weightRange.lowerBound && x <= Self.weightRange.upperBound) {
                throw bad("level step scale \(x) outside \(Self.weightRange)")
            }
        }
        if let r = rope {
            guard r.theta.isFinite, r.theta > 1 else { throw bad("rope theta \(r.theta)") }
            guard r.pairs == "adjacent" || r.pairs == "half" else { throw bad("rope pairs \"\(r.pairs)\", expected adjacent or half") }
            guard r.dim > 0, r.dim <= shape.head_dim, r.dim % 2 == 0 else { throw bad("rope dim \(r.dim) for head_dim \(shape.head_dim)") }
            if let lt = r.layer_theta {
                guard lt.count == shape.layers else { throw bad("rope layer_theta has \(lt.count) entries for \(shape.layers) layers") }
                for t in lt where !(t.isFinite && t > 1) { throw bad("rope layer theta \(t)") }
                guard Set(lt).count <= 255 else { throw bad("rope layer_theta holds more than 255 distinct bases") }
            }
        }
    }

    static let weightRange: ClosedRange<Float> = (1.0 / 64)...64

    /// Shape mismatches are the caller's most likely mistake: say both shapes.
    public func check(matches shape: KVShape) throws {
        guard kvShape == shape else {
            throw Invalid("the codec profile of \(model) is for KV of shape \(kvShape), this KV is \(shape)")
        }
    }

    private static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.keyNotFound(let k, _): "missing field \(k.stringValue)"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c), DecodingError.dataCorrupted(let c):
            "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        default: "\(error)"
        }
    }

    // MARK: what the encoder reads

    /// Step multiplier of group g (layer g / 2; even g keys, odd g values).
    func stepWeight(group g: Int) -> Float { group_step_weights[g / 2][g % 2] }

    /// Step multiplier of a level (1 for levels without a scale).
    func levelScale(_ level: UInt8) -> Float {
        guard let s = level_step_scales, level >= 1, Int(level) <= s.count else { return 1 }
        return s[Int(level) - 1]
    }

    /// Half-octave step codes of one layer's key channels (C = kvHeads · headDim):
    /// code = γ · log2(mean w / w), so the multiplier 2^(code/2) = (mean w / w)^(γ/2), clamped to
    /// ±`maxChannelCode`. Nil without key-pair energies or with γ = 0 (one step per group).
    public func keyChannelCodes(layer: Int, gamma: Float) -> [Int8]? {
        guard gamma != 0, let energy = key_pair_energy else { return nil }
        return (0..<shape.kvShape.rowElements).map { c in
            let e = Float(energy[layer][c / 2])
            let code = (-gamma * e / 4).rounded(.toNearestOrEven)
            return Int8(max(-Float(Self.maxChannelCode), min(Float(Self.maxChannelCode), code)))
        }
    }

    /// Step codes are clamped to ±4 half-octaves (step ×¼…×4): wider ranges gained nothing.
    public static let maxChannelCode = 4

    /// The in-chunk un-rotation of the keys this profile's RoPE allows, or nil (no RoPE stated, or a
    /// head_dim the kernels cannot rotate).
    var inChunkRoPE: InChunkRoPE? {
        guard let r = rope, let pairs: InChunkRoPE.Pairs = r.pairs == "adjacent" ? .adjacent : r.pairs == "half" ? .half : nil
        else { return nil }
        var thetas: [Double] = []
        let index = (0..<shape.layers).map { l -> UInt8 in
            let t = r.theta(layer: l)
            if let i = thetas.firstIndex(of: t) { return UInt8(i) }
            thetas.append(t)
            return UInt8(min(thetas.count - 1, 255))
        }
        guard InChunkRoPE.problem(headDim: shape.head_dim, rotaryDim: r.dim, thetas: thetas) == nil else { return nil }
        return InChunkRoPE(headDim: shape.head_dim, rotaryDim: r.dim, pairs: pairs, thetas: thetas, layerTheta: index)
    }

    /// The profile a context is encoded with (`kvstore encode`, the C ABI's file encoder): the one
    /// given, checked against the KV's shape, else the default derived from the KV for `model`
    /// (default: the context's metadata "model", else "unknown").
    public static func forEncoding(_ ctx: KVContext, given: CodecProfile?, model: String? = nil) throws -> CodecProfile {
        try forEncoding(ctx.kv, given: given, model: model ?? ctx.metadata["model"] ?? "unknown", metadata: ctx.metadata)
    }

    /// The same for KV without a context around it (the C ABI's chunk encoder).
    public static func forEncoding(_ kv: KVTensor, given: CodecProfile?, model: String = "unknown",
                                   metadata: [String: String] = [:]) throws -> CodecProfile {
        if let given {
            try given.check(matches: kv.shape)
            return given
        }
        return uncalibrated(model: model, kv: kv, metadata: metadata)
    }

    // MARK: models never calibrated

    /// Every group's step multiplier when nothing was measured: below the calibrated profiles'
    /// median of 1, so the sensitive groups a calibration would have found keep finer steps than
    /// the level's base (measured: schemas/codec-profile.md, "The default for a model never calibrated").
    public static let uncalibratedStepWeight: Float = 0.7
    /// Per-level step scales when nothing was measured: fine enough that the most sensitive model
    /// measured keeps every level's floor with uniform step weights. That is Gemma 3 270M, whose
    /// three full-attention layers' keys are 100-500x as sensitive as its median group, which a
    /// KV-only default cannot single out (`tools/calibrate_llama.py --uniform`, float oracle;
    /// BENCHMARKS.md, "Quality per level and model"). Less sensitive models compress less than they could until
    /// calibrated: SmolLM2's level 1 needs 0.7, not 0.04.
    public static let uncalibratedLevelScales: [Float] = [0.04, 0.08, 0.11, 0.23]
    /// Tokens the default's key statistics are taken from (the start of the context).
    static let statisticsTokens = 1024

    /// A profile from the KV alone, for a model without one: its shape; RoPE from the context's
    /// metadata when the file states it (tools/extract_kv.py writes rope_theta, rope_pairs,
    /// rope_dim); one conservative step weight for every group; and key-pair weights from the
    /// keys' own energy E[k²] per (KV head, RoPE pair), which tracks the query energy a calibration
    /// measures (log-correlation 0.87 per layer on SmolLM2: queries read the pairs where keys are large).
    public static func uncalibrated(model: String, kv: KVTensor, metadata: [String: String] = [:]) -> CodecProfile {
        let shape = kv.shape
        var rope: RoPE? = nil
        if let t = metadata["rope_theta"].flatMap(Double.init), let p = metadata["rope_pairs"] {
            // The segment tools' "split" (GPT-NeoX) is the profile's "half".
            rope = RoPE(theta: t, pairs: p == "split" ? "half" : p, dim: metadata["rope_dim"].flatMap(Int.init) ?? shape.headDim)
        }
        var profile = CodecProfile(model: model, calibrated: false,
                                   source: "uncalibrated: derived by kvstore from the KV (shape, metadata, key energy)",
                                   shape: shape, rope: rope,
                                   groupStepWeights: [[Float]](repeating: [uncalibratedStepWeight, uncalibratedStepWeight], count: shape.layers),
                                   keyPairEnergy: keyPairEnergy(of: kv), levelStepScales: uncalibratedLevelScales)
        // Metadata the profile cannot use (an unknown pair layout, a bad θ) only costs the RoPE undo.
        if (try? profile.validate()) == nil { profile.rope = nil }
        return profile
    }

    /// round(4 · log2(e / mean e)) per layer and (KV head, pair (2i, 2i+1)), e = mean of k² over the
    /// first `statisticsTokens` tokens; nil when the KV gives nothing usable (odd head_dim, no
    /// tokens, non-finite sums). The log is `log2Approx` (IEEE basic operations only), so every
    /// machine derives the same profile from the same KV.
    static func keyPairEnergy(of kv: KVTensor) -> [[Int]]? {
        let shape = kv.shape, C = shape.rowElements
        let T = min(kv.tokens, statisticsTokens)
        guard shape.headDim % 2 == 0, T > 0 else { return nil }
        var sums = [Double](repeating: 0, count: shape.layers * C)
        // A few tokens at a time, so a long context of a large model never converts whole.
        let block = max(1, (1 << 20) / max(1, shape.elementsPerToken))
        for start in stride(from: 0, to: T, by: block) {
            let n = min(T, start + block) - start
            let f = kv.slice(tokens: start..<(start + n)).floats()
            for l in 0..<shape.layers {
                let keys = 2 * l * n * C // [layers, 2, tokens, C]: layer l's keys
                for t in 0..<n {
                    for c in 0..<C { let v = Double(f[keys + t * C + c]); sums[l * C + c] += v * v }
                }
            }
        }
        var out: [[Int]] = []
        for l in 0..<shape.layers {
            let pairs = (0..<(C / 2)).map { (sums[l * C + 2 * $0] + sums[l * C + 2 * $0 + 1]) / 2 }
            let mean = pairs.reduce(0, +) / Double(pairs.count)
            guard mean.isFinite, pairs.allSatisfy(\.isFinite) else { return nil }
            out.append(pairs.map { e in
                guard mean > 0, e > 0 else { return mean > 0 ? -127 : 0 }
                let code = (4 * ParametricModels.log2Approx(e / mean)).rounded(.toNearestOrEven)
                return Int(max(-127, min(127, code)))
            })
        }
        return out
    }

    /// One step weight of 1, no key-channel codes, no RoPE undo: the encoder's behaviour for a
    /// shape it had no table for before profiles were data (what the odd-shape tests pin).
    public static func flat(model: String = "unknown", shape: KVShape) -> CodecProfile {
        CodecProfile(model: model, calibrated: false, source: "flat", shape: shape, rope: nil,
                     groupStepWeights: [[Float]](repeating: [1, 1], count: shape.layers), keyPairEnergy: nil)
    }
}
