import CLossyKernels
import KVTensor

/// Lossy levels 1...4 (codec id 2): per-(layer, K/V) uniform quantisation with sensitivity-weighted
/// steps, per-token step scaling of values and of attention-sink tokens, and interleaved rANS over
/// parametric per-channel models. Layout: schemas/codec-bitstream.md; rationale: schemas/codec-design.md.
///
/// A group is one layer's keys or values: T tokens x C = kvHeads * headDim channels.
///   x̂[t, c] = mean[c] + (q[t, c] * 2^(channelCode[c] / 2)) * step * 2^(tokenCode[t] / 2)
/// where mean = k[c] * (step * 2^(channelCode[c] / 2) * 1/8) (k an i16), step is f32, and q is coded with the model `modelClass[c]`.
public struct QuantizedRANSCodec: ChunkCodec {
    public var id: CodecID { .cacheGen }
    public static let formatVersion: UInt8 = 5
    /// Version 5 has 32 interleaved rANS states (SIMD decoding), 4 has 4; version 3 is version 4
    /// without the channel step codes (every channel at its group's step). Older stores still decode.
    static let oldestDecodedVersion: UInt8 = 3
    static let prefixSize = 20
    /// Payload flags: keys were rotated back by in-chunk position (`InChunkRoPE`), by the fixed
    /// rotation of flag 1, or by the one a descriptor after the prefix states (flag 2).
    static let flagRoPE: UInt8 = 1
    static let flagRoPEDescriptor: UInt8 = 2
    static let minTokenCode = -20, maxTokenCode = 12
    static let maxEscape = 1 << 24

    public var profileOverride: QuantProfile?
    /// The model's calibration (step weights, key-channel weights, RoPE); nil encodes with
    /// `CodecProfile.flat` (one step per group, keys as stored). The decoder never reads it.
    public var model: CodecProfile?
    /// The version `encode` writes: 5, or 4 (tests keep the 4-state decoder covered).
    var writeVersion: UInt8 = formatVersion
    public init(profile: QuantProfile? = nil, model: CodecProfile? = nil) {
        profileOverride = profile
        self.model = model
    }
    init(profile: QuantProfile? = nil, model: CodecProfile? = nil, writeVersion: UInt8) {
        precondition(writeVersion == 4 || writeVersion == 5)
        profileOverride = profile
        self.model = model
        self.writeVersion = writeVersion
    }

    /// rANS states of a format version.
    static func ransWays(version: UInt8) -> Int { version >= 5 ? LossyDecodeKernel32.ways : RANS.ways }

    /// 2^(code/2) for code in minTokenCode...maxTokenCode, from exact powers of two and √2.
    static let tokenMultipliers: [Float] = (minTokenCode...maxTokenCode).map { code in
        let half = code >= 0 ? code / 2 : -((-code + 1) / 2)
        var m = Float(sign: .plus, exponent: half, significand: 1)
        if code - 2 * half == 1 { m = m * Float(2).squareRoot() }
        return m
    }

    // MARK: encode

    public func encode(_ tensor: KVTensor, level: UInt8) throws -> [UInt8] {
        try encode(tensor, level: level, isa: .best)
    }

    /// Every `isa` gives the same bytes (tests compare them); `.portable` runs on any CPU.
    func encode(_ tensor: KVTensor, level: UInt8, isa: EncoderISA) throws -> [UInt8] {
        // The SIMD kernels code 32 states (version 5).
        let isa = writeVersion == 5 ? min(isa, EncoderISA.best) : .portable
        let simd = isa.simd
        let profile = try profileOverride ?? QuantProfile.forLevel(level)
        let shape = tensor.shape
        let T = tensor.tokens, C = shape.rowElements, G = shape.layers * 2
        let model = self.model ?? CodecProfile.flat(shape: shape)
        try model.check(matches: shape)
        let levelScale = model.levelScale(level) // 1 unless the profile scales this level (then α · 1 = α exactly)
        // With F16C, each fp16 group is converted just before it is coded (it stays in cache);
        // otherwise the whole tensor up front.
        let groupwise = simd && tensor.dtype == .f16
        let values = groupwise ? [] : try LossyEncodeKernel.floats(of: tensor)
        var groupFloats = [Float](repeating: 0, count: groupwise ? T * C : 0)
        var nonFinite = false, overflow = false

        let sideCount = Self.sideInfoCount(G: G, C: C, T: T)
        var side = [UInt8](repeating: 0, count: sideCount)
        var escapesPerGroup = [[UInt8]](repeating: [], count: G)
        var encoder = RANSEncoder(maxSymbols: G * T * C, ways: Self.ransWays(version: writeVersion))
        defer { encoder.deallocate() }

        var tokenCodes = [Int8](repeating: 0, count: T)
        var salient = [Bool](repeating: false, count: T)
        var work = LossyEncodeKernel.Workspace(T: T, C: C)
        defer { work.deallocate() }
        // Keys are rotated back by in-chunk position when the profile states the model's RoPE.
        let rope = T > 1 ? model.inChunkRoPE : nil
        let rotate = rope != nil
        let ropeTables = rope?.tables(tokens: T) ?? []
        var unrotated = [Float](repeating: 0, count: rotate ? T * C : 0)
        // "half" pairs are interleaved into coded order first (InChunkRoPE).
        var interleaved = [Float](repeating: 0, count: rope?.pairs == .half ? T * C : 0)
        // The static read once (each access of a static in the per-token and per-channel loops is a swift_once call).
        let multipliers = Self.tokenMultipliers

        values.withUnsafeBufferPointer { vals in
         groupFloats.withUnsafeMutableBufferPointer { gf in
          unrotated.withUnsafeMutableBufferPointer { unrot in
           interleaved.withUnsafeMutableBufferPointer { inter in
            side.withUnsafeMutableBytes { sideRaw in
                let sideBase = sideRaw.baseAddress!
                // Groups are coded last to first: rANS is last-in, first-out.
                for g in stride(from: G - 1, through: 0, by: -1) {
                    let isValue = g % 2 == 1
                    var x: UnsafeBufferPointer<Float>
                    if groupwise {
                        if T * C > 0 {
                            let bad = tensor.bytes.withUnsafeBytes { raw in
                                clossy_half_to_float_avx2(raw.baseAddress!.assumingMemoryBound(to: UInt16.self) + g * T * C, gf.baseAddress!, T * C)
                            }
                            if bad != 0 { nonFinite = true; break }
                        }
                        x = UnsafeBufferPointer(gf)
                    } else {
                        x = UnsafeBufferPointer(rebasing: vals[(g * T * C)..<((g + 1) * T * C)])
                    }
                    // The step follows the spread of the keys as stored (what the sensitivity weights
                    // were calibrated on); un-rotating then makes the same step cost fewer bits.
                    var rmsAsStored: Float? = nil
                    if let rope, !isValue {
                        rmsAsStored = LossyEncodeKernel.channelStats(x.baseAddress!, &work, simd: simd)
                        if rope.pairs == .half {
                            rope.toCoded(x.baseAddress!, into: inter.baseAddress!, T: T, C: C)
                            x = UnsafeBufferPointer(inter)
                        }
                        let table = ropeTables[Int(rope.layerTheta[g / 2])]
                        if simd {
                            table.cos.withUnsafeBufferPointer { rc in
                                table.sin.withUnsafeBufferPointer { rs in
                                    clossy_unrotate_avx2(x.baseAddress!, unrot.baseAddress!, T, C, rope.headDim, rc.baseAddress!, rs.baseAddress!)
                                }
                            }
                        } else {
                            rope.unrotate(x.baseAddress!, into: unrot.baseAddress!, T: T, C: C, cos: table.cos, sin: table.sin)
                        }
                        x = UnsafeBufferPointer(unrot)
                    }
                    if isValue {
                        Self.tokenScales(values: x, T: T, C: C, profile: profile, codes: &tokenCodes, salient: &salient, simd: simd)
                    } else {
                        // salient[] still holds this layer's flags from its value group (coded just before).
                        for t in 0..<T { tokenCodes[t] = salient[t] ? Int8(-profile.salienceShift) : 0 }
                    }
                    for t in 0..<T {
                        sideBase.storeBytes(of: tokenCodes[t], toByteOffset: Self.tokenOffset(G: G, C: C) + g * T + t, as: Int8.self)
                        work.rowScale[t] = multipliers[Int(tokenCodes[t]) - Self.minTokenCode]
                    }
                    var channelCodes = isValue ? nil : model.keyChannelCodes(layer: g / 2, gamma: profile.keyChannelGamma)
                    if let rope, rope.pairs == .half, let codes = channelCodes {
                        let src = rope.source
                        channelCodes = (0..<C).map { c in codes[c - c % rope.headDim + src[c % rope.headDim]] }
                    }
                    for c in 0..<C {
                        let code = channelCodes?[c] ?? 0
                        sideBase.storeBytes(of: code, toByteOffset: Self.channelOffset(G: G, C: C, T: T) + g * C + c, as: Int8.self)
                        work.colScale[c] = multipliers[Int(code) - Self.minTokenCode]
                    }
                    // Means of the keys as coded; their spread is only needed if not taken as stored.
                    let rmsHere = LossyEncodeKernel.channelStats(x.baseAddress!, &work, rms: rmsAsStored == nil, simd: simd)
                    let rms = rmsAsStored ?? rmsHere ?? 0
                    // Finite f32 values near the top of the range overflow the statistics' sums.
                    guard rms.isFinite, (0..<C).allSatisfy({ work.means[$0].isFinite }) else { overflow = true; break }
                    var step = profile.alpha * levelScale * model.stepWeight(group: g) * rms
                    if !(step >= 1e-12) || !step.isFinite { step = 1e-12 }
                    // The stored step's sign says how the means are stored: + on the step grid, − as f16.
                    let onGrid = LossyEncodeKernel.snapMeans(step: step, &work)
                    for c in 0..<C {
                        let mh = work.meanBits[c]
                        sideBase.storeBytes(of: UInt8(mh & 0xFF), toByteOffset: Self.meanLoOffset(G: G, C: C) + g * C + c, as: UInt8.self)
                        sideBase.storeBytes(of: UInt8(mh >> 8), toByteOffset: Self.meanHiOffset(G: G, C: C) + g * C + c, as: UInt8.self)
                    }
                    sideBase.storeBytes(of: (onGrid ? step : -step).bitPattern.littleEndian, toByteOffset: 4 * g, as: UInt32.self)
                    LossyEncodeKernel.quantise(x.baseAddress!, step: step, &work, simd: simd)
                    if simd {
                        LossyEncodeKernel.bestClassesSIMD(&work)
                    } else {
                        for c in 0..<C { work.classes[c] = LossyEncodeKernel.bestClass(channel: c, work) }
                    }
                    for c in 0..<C {
                        sideBase.storeBytes(of: UInt8(work.classes[c]), toByteOffset: Self.classOffset(G: G) + g * C + c, as: UInt8.self)
                    }
                    var order = [Int](repeating: 0, count: C)
                    Self.channelOrder(keys: UnsafeBufferPointer(start: work.classes, count: C), into: &order)
                    // The next group's fp16 input is fetched from memory while this one codes.
                    escapesPerGroup[g] = groupwise && g > 0
                        ? tensor.bytes.withUnsafeBytes { raw in
                            LossyEncodeKernel.code(order: order, &work, encoder: &encoder, isa: isa,
                                                   ahead: UnsafeRawBufferPointer(rebasing: raw[((g - 1) * 2 * T * C)..<(g * 2 * T * C)]))
                        }
                        : LossyEncodeKernel.code(order: order, &work, encoder: &encoder, isa: isa)
                }
            }
           }
          }
         }
        }
        if nonFinite { throw CodecError.nonFinite }
        if overflow { throw CodecError.unsupported("values too large for lossy coding (a group's sum of squares overflows f32)") }

        let sideZ = try Zstd.compress(side, level: 3)
        let escapes = escapesPerGroup.flatMap { $0 }
        var w = ByteWriter(capacity: Self.prefixSize + 64 + shape.layers + sideZ.count + escapes.count + encoder.byteCount)
        w.append(writeVersion)
        // Flag 1 is the short form of its one rotation (and keeps such chunks' bytes as they were).
        let shortForm = rope == .flagOne(layers: shape.layers)
        w.append(!rotate ? UInt8(0) : shortForm ? Self.flagRoPE : Self.flagRoPEDescriptor)
        w.append(UInt16(0))
        w.append(UInt32(sideCount))
        w.append(UInt32(sideZ.count))
        w.append(UInt32(escapes.count))
        w.append(UInt32(encoder.byteCount))
        if !shortForm { rope?.write(into: &w) }
        w.append(sideZ)
        w.append(escapes)
        encoder.finish(into: &w)
        return w.bytes
    }

    /// Token step codes for one layer from its values: value tokens scale with their norm^beta;
    /// attention-sink tokens (small value norm) get finer steps for keys and values.
    static func tokenScales(values x: UnsafeBufferPointer<Float>, T: Int, C: Int, profile: QuantProfile,
                            codes: inout [Int8], salient: inout [Bool], simd: Bool = false) {
        guard T > 0 else { return }
        var norms = [Float](repeating: 0, count: T)
        if simd {
            norms.withUnsafeMutableBufferPointer { clossy_row_sumsq_avx2(x.baseAddress!, T, C, $0.baseAddress!) }
            for t in 0..<T { norms[t] = norms[t].squareRoot() }
        } else {
            for t in 0..<T {
                var s: Float = 0
                for c in 0..<C { let v = x[t * C + c]; s += v * v }
                norms[t] = s.squareRoot()
            }
        }
        let median: Float
        if simd {
            // Quickselect: the same value as sorting (the norms are finite).
            var scratch = norms
            median = scratch.withUnsafeMutableBufferPointer { clossy_kth_smallest($0.baseAddress!, T, T / 2) }
        } else {
            median = norms.sorted()[T / 2]
        }
        let codeOfRatio = Self.tokenCodeTable(beta: profile.valueTokenBeta) // β = 0: always 0
        for t in 0..<T {
            let r = median > 0 ? norms[t] / median : 1
            let sal = r < profile.salienceTau
            salient[t] = sal
            var code = 0
            if r > 0 { code = codeOfRatio(r) }
            if sal { code -= profile.salienceShift }
            codes[t] = Int8(max(minTokenCode, min(maxTokenCode, code)))
        }
    }

    /// A value token's step code from its norm ratio r: round(2β · log2 r) within −8...6.
    /// (The levels' β is tabulated once; other profiles, used in tuning, pay ~30 µs per chunk.)
    static func tokenCodeTable(beta: Float) -> StepTable {
        beta == levelTokenCodes.beta ? levelTokenCodes.table : makeTokenCodeTable(beta: beta)
    }
    private static let levelTokenCodes: (beta: Float, table: StepTable) = {
        let beta = QuantProfile(alpha: 1).valueTokenBeta
        return (beta, makeTokenCodeTable(beta: beta))
    }()
    private static func makeTokenCodeTable(beta: Float) -> StepTable {
        StepTable(from: .leastNonzeroMagnitude, to: .greatestFiniteMagnitude) { tokenCode(ratio: $0, beta: beta) }
    }
    static func tokenCode(ratio r: Float, beta: Float) -> Int {
        max(-8, min(6, Int((2 * beta * Float(ParametricModels.log2Approx(Double(r)))).rounded(.toNearestOrEven))))
    }

    /// The order a group's channels are coded in: by model class, ties by channel index, so each
    /// class's decode table is reused while it is in cache. A stable counting sort over `keys >> shift`:
    /// the encoder passes the classes, the decoder its class offsets (class << 12) with shift 12.
    static func channelOrder(keys: UnsafeBufferPointer<Int>, shift: Int = 0, into order: inout [Int]) {
        var counts = [Int](repeating: 0, count: ParametricModels.classCount + 1)
        for key in keys { counts[(key >> shift) + 1] += 1 }
        for i in 1..<counts.count { counts[i] += counts[i - 1] }
        for (c, key) in keys.enumerated() {
            let k = key >> shift
            order[counts[k]] = c
            counts[k] += 1
        }
    }

    static func channelOrder(classes: [Int]) -> [Int] {
        var order = [Int](repeating: 0, count: classes.count)
        classes.withUnsafeBufferPointer { channelOrder(keys: $0, into: &order) }
        return order
    }

    @inline(__always) static func zigzag(_ v: Int32) -> UInt32 { UInt32(bitPattern: (v << 1) ^ (v >> 31)) }
    @inline(__always) static func unzigzag(_ u: UInt32) -> Int32 { Int32(bitPattern: u >> 1) ^ -Int32(bitPattern: u & 1) }

    static func appendVarint(_ v: UInt32, to out: inout [UInt8]) {
        var v = v
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    // MARK: side-info layout (all sizes follow from checked header dimensions)

    static func sideInfoCount(G: Int, C: Int, T: Int, version: UInt8 = formatVersion) -> Int {
        4 * G + (version >= 4 ? 4 : 3) * G * C + G * T
    }
    static func classOffset(G: Int) -> Int { 4 * G }
    static func meanLoOffset(G: Int, C: Int) -> Int { 4 * G + G * C }
    static func meanHiOffset(G: Int, C: Int) -> Int { 4 * G + 2 * G * C }
    static func tokenOffset(G: Int, C: Int) -> Int { 4 * G + 3 * G * C }
    static func channelOffset(G: Int, C: Int, T: Int) -> Int { 4 * G + 3 * G * C + G * T }

    // MARK: decode

    public func decode(_ payload: UnsafeRawBufferPointer, header: ChunkHeader) throws -> KVTensor {
        try decode(payload, header: header, simd: LossyDecodeKernel32.cpuHasAVX2)
    }

    /// `simd: false` runs the portable kernels on any CPU (tests compare both).
    func decode(_ payload: UnsafeRawBufferPointer, header: ChunkHeader, simd: Bool) throws -> KVTensor {
        let simd = simd && LossyDecodeKernel32.cpuHasAVX2
        let shape = header.shape
        let T = header.tokens, C = shape.rowElements, G = shape.layers * 2
        guard payload.count >= Self.prefixSize else { throw CodecError.truncated("lossy payload of \(payload.count) bytes") }
        var r = ByteReader(payload)
        let version: UInt8 = r.read()
        guard version >= Self.oldestDecodedVersion, version <= Self.formatVersion else {
            throw CodecError.unsupported("lossy format version \(version)")
        }
        let hasChannelCodes = version >= 4
        let flags: UInt8 = r.read()
        guard flags == 0 || flags == Self.flagRoPE || flags == Self.flagRoPEDescriptor else {
            throw CodecError.unsupported("lossy flags \(flags)")
        }
        let _: UInt16 = r.read()
        let sideRaw = Int(r.read() as UInt32), sideZ = Int(r.read() as UInt32)
        let escLen = Int(r.read() as UInt32), ransLen = Int(r.read() as UInt32)
        var rope: InChunkRoPE? = nil
        if flags == Self.flagRoPE {
            rope = .flagOne(layers: shape.layers)
            guard shape.headDim == rope!.headDim else {
                throw CodecError.corrupt("RoPE flag 1 on head_dim \(shape.headDim), its rotation needs \(rope!.headDim)")
            }
        } else if flags == Self.flagRoPEDescriptor {
            rope = try InChunkRoPE.read(&r, headDim: shape.headDim, layers: shape.layers)
        }
        let sideCount = Self.sideInfoCount(G: G, C: C, T: T, version: version)
        guard sideRaw == sideCount else { throw CodecError.corrupt("side info of \(sideRaw) bytes, the shape needs \(sideCount)") }
        guard sideZ + escLen + ransLen == r.remaining else {
            throw CodecError.corrupt("section lengths \(sideZ) + \(escLen) + \(ransLen) do not add up to \(r.remaining)")
        }
        let side = try Zstd.decompress(r.slice(sideZ), size: sideCount)
        let escapes = r.slice(escLen)
        let rans = r.slice(ransLen)

        let n = G * T * C
        let isHalf = header.dtype == .f16
        var outBytes = [UInt8](repeating: 0, count: isHalf ? 2 * n : 0)
        var outFloat = [Float](repeating: 0, count: isHalf ? 0 : n)
        // The rANS stream: `ways` initial states (u32, each ≥ lowerBound), then u16 words.
        let ways = Self.ransWays(version: version)
        let x = UnsafeMutablePointer<UInt32>.allocate(capacity: ways)
        defer { x.deallocate() }
        let wordCount = try RANSDecoder.readStates(rans, ways: ways, into: x)
        var state = LossyDecodeKernel.State(x0: x[0], x1: x[1], x2: x[2], x3: x[3])
        var state32 = LossyDecodeKernel32.State(x: x)
        // The words, then T + 40 zero words of padding (see LossyDecodeKernel.run and LossyDecodeKernel32.decode).
        let paddedCount = wordCount + T + 40
        let words = UnsafeMutablePointer<UInt16>.allocate(capacity: paddedCount)
        defer { words.deallocate() }
        UnsafeMutableRawPointer(words).copyMemory(from: rans.baseAddress! + 4 * ways, byteCount: 2 * wordCount)
        #if _endian(big)
        for i in 0..<wordCount { words[i] = UInt16(littleEndian: words[i]) }
        #endif
        (words + wordCount).initialize(repeating: 0, count: T + 40)
        let escFlags = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, C))
        defer { escFlags.deallocate() }

        try side.withUnsafeBytes { sb in
            // Validate all side info before decoding anything with it.
            var steps = [Float](repeating: 0, count: G)
            var meansOnGrid = [Bool](repeating: true, count: G)
            for g in 0..<G {
                let s = Float(bitPattern: UInt32(littleEndian: sb.loadUnaligned(fromByteOffset: 4 * g, as: UInt32.self)))
                guard s.isFinite, s != 0 else { throw CodecError.corrupt("step of group \(g) is \(s)") }
                steps[g] = abs(s)
                meansOnGrid[g] = s > 0
            }
            let clsBase = Self.classOffset(G: G), tokBase = Self.tokenOffset(G: G, C: C)
            let loBase = Self.meanLoOffset(G: G, C: C), hiBase = Self.meanHiOffset(G: G, C: C)
            for i in 0..<(G * C) where Int(sb[clsBase + i]) >= ParametricModels.classCount {
                throw CodecError.corrupt("model class \(sb[clsBase + i]) out of range")
            }
            for i in 0..<(G * T) {
                let code = Int(Int8(bitPattern: sb[tokBase + i]))
                guard code >= Self.minTokenCode, code <= Self.maxTokenCode else { throw CodecError.corrupt("token code \(code) out of range") }
            }
            let chanBase = Self.channelOffset(G: G, C: C, T: T)
            for i in 0..<(hasChannelCodes ? G * C : 0) {
                let code = Int(Int8(bitPattern: sb[chanBase + i]))
                guard abs(code) <= CodecProfile.maxChannelCode else { throw CodecError.corrupt("channel step code \(code) out of range") }
            }
            var means = [Float](repeating: 0, count: C)
            var colScale = [Float](repeating: 1, count: C)
            var offsets = [Int](repeating: 0, count: C)
            var rowSteps = [Float](repeating: 0, count: T + 4)
            var order = [Int](repeating: 0, count: C)
            let ropeTables = rope?.tables(tokens: T) ?? []
            let ropeT = version >= 5 && simd
                ? ropeTables.map { (LossyDecodeKernel32.transposed($0.cos, tokens: T, headDim: rope!.headDim),
                                    LossyDecodeKernel32.transposed($0.sin, tokens: T, headDim: rope!.headDim)) } : []
            let hd = rope?.headDim ?? 0
            let rowScratch = UnsafeMutableRawPointer.allocate(byteCount: 4 * max(1, hd), alignment: 4)
            defer { rowScratch.deallocate() }
            let scratch = UnsafeMutablePointer<Int32>.allocate(capacity: T * C + 4)
            defer { scratch.deallocate() }
            try LossyDecodeKernel.entries.withUnsafeBufferPointer { entries in
                try means.withUnsafeMutableBufferPointer { mu in
                  try colScale.withUnsafeMutableBufferPointer { cs in
                    try offsets.withUnsafeMutableBufferPointer { off in
                        try rowSteps.withUnsafeMutableBufferPointer { rs in
                            try outBytes.withUnsafeMutableBytes { ob in
                                try outFloat.withUnsafeMutableBufferPointer { of in
                                    for g in 0..<G where n > 0 {
                                        for c in 0..<C {
                                            let code = hasChannelCodes ? Int(Int8(bitPattern: sb[chanBase + g * C + c])) : 0
                                            cs[c] = Self.tokenMultipliers[code - Self.minTokenCode]
                                            let bits = UInt16(sb[loBase + g * C + c]) | UInt16(sb[hiBase + g * C + c]) << 8
                                            if meansOnGrid[g] {
                                                mu[c] = Float(Int16(bitPattern: bits)) * (steps[g] * cs[c] * LossyEncodeKernel.meanGrid)
                                            } else {
                                                guard bits & 0x7C00 != 0x7C00 else { throw CodecError.corrupt("non-finite channel mean") }
                                                mu[c] = FastHalf.toFloatTable[Int(bits)]
                                            }
                                            off[c] = Int(sb[clsBase + g * C + c]) << RANS.precisionBits
                                        }
                                        for t in 0..<T {
                                            let code = Int(Int8(bitPattern: sb[tokBase + g * T + t]))
                                            rs[t] = steps[g] * Self.tokenMultipliers[code - Self.minTokenCode]
                                        }
                                        Self.channelOrder(keys: UnsafeBufferPointer(off), shift: Int(RANS.precisionBits), into: &order)
                                        // The layer's tables when this group is keys coded with the rotation.
                                        let table = rope != nil && g % 2 == 0 ? Int(rope!.layerTheta[g / 2]) : nil
                                        let noTable: [Float] = []
                                        order.withUnsafeBufferPointer { ord in
                                          (table.map { ropeTables[$0].cos } ?? noTable).withUnsafeBufferPointer { ropeCos in
                                           (table.map { ropeTables[$0].sin } ?? noTable).withUnsafeBufferPointer { ropeSin in
                                            var group = LossyDecodeKernel.Group(T: T, C: C, order: ord.baseAddress!, classOffset: UnsafePointer(off.baseAddress!),
                                                                                means: UnsafePointer(mu.baseAddress!), rowStep: UnsafePointer(rs.baseAddress!),
                                                                                colScale: UnsafePointer(cs.baseAddress!),
                                                                                scratch: scratch, ropeCos: nil, ropeSin: nil, ropeHeadDim: hd)
                                            if table != nil { group.ropeCos = ropeCos.baseAddress; group.ropeSin = ropeSin.baseAddress }
                                            let halfOut = isHalf ? ob.baseAddress!.assumingMemoryBound(to: UInt16.self) + g * T * C : nil
                                            let floatOut = isHalf ? nil : of.baseAddress! + g * T * C
                                            if version >= 5 {
                                                let transposed = table.map { ropeT.isEmpty ? nil : ropeT[$0] } ?? nil
                                                (transposed?.0 ?? noTable).withUnsafeBufferPointer { rcT in
                                                    (transposed?.1 ?? noTable).withUnsafeBufferPointer { rsT in
                                                        LossyDecodeKernel32.decode(
                                                            group, simd: simd, entries: entries.baseAddress!, words: words, wordCount: wordCount,
                                                            escapes: escapes, escFlags: escFlags, ropeCosT: rcT.baseAddress, ropeSinT: rsT.baseAddress,
                                                            state: &state32, half: halfOut, float: floatOut)
                                                    }
                                                }
                                            } else if let halfOut {
                                                LossyDecodeKernel.decodeHalf(group, entries: entries.baseAddress!, words: words, wordCount: wordCount,
                                                                             escapes: escapes, state: &state, out: halfOut)
                                            } else {
                                                LossyDecodeKernel.decodeFloat(group, entries: entries.baseAddress!, words: words, wordCount: wordCount,
                                                                              escapes: escapes, state: &state, out: floatOut!)
                                            }
                                            // "half" pairs were coded interleaved: back to the stored channel order.
                                            if table != nil, let rope, rope.pairs == .half {
                                                if let halfOut {
                                                    rope.toStored(halfOut, T: T, C: C, row: rowScratch.assumingMemoryBound(to: UInt16.self))
                                                } else if let floatOut {
                                                    rope.toStored(floatOut, T: T, C: C, row: rowScratch.assumingMemoryBound(to: Float.self))
                                                }
                                            }
                                           }
                                          }
                                        }
                                    }
                                }
                            }
                        }
                    }
                  }
                }
            }
        }
        // A clean stream ends with every word consumed and every state back at its start value.
        let (pos, escPos, badEscape) = version >= 5 ? (state32.pos, state32.escPos, state32.badEscape)
                                                    : (state.pos, state.escPos, state.badEscape)
        let finalStates = version >= 5 ? (0..<ways).map { x[$0] } : [state.x0, state.x1, state.x2, state.x3]
        guard pos == wordCount, finalStates.allSatisfy({ $0 == RANS.lowerBound }) else {
            throw CodecError.corrupt("rANS stream does not end where it should")
        }
        guard !badEscape, escPos == escapes.count else { throw CodecError.corrupt("escape stream does not match the symbols") }
        do {
            if isHalf {
                #if _endian(big)
                for i in 0..<n { outBytes.swapAt(2 * i, 2 * i + 1) }
                #endif
                return try KVTensor(shape: shape, tokens: T, dtype: .f16, bytes: outBytes)
            }
            return try KVTensor(shape: shape, tokens: T, dtype: header.dtype, floats: outFloat)
        } catch { throw CodecError.corrupt("\(error)") }
    }

    @inline(never)
    static func readEscape(_ buf: UnsafeRawBufferPointer, _ pos: inout Int, _ bad: inout Bool) -> Int32 {
        var v: UInt32 = 0
        var shift: UInt32 = 0
        while true {
            guard pos < buf.count, shift <= 21 else { bad = true; return 0 }
            let b = buf[pos]
            pos += 1
            v |= UInt32(b & 0x7F) << shift
            if b & 0x80 == 0 { break }
            shift += 7
        }
        let q = unzigzag(v)
        if q > Int32(maxEscape) || q < -Int32(maxEscape) { bad = true; return 0 }
        return q
    }
}

