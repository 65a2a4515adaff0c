import ArgumentParser
import KVStore
import KVTensor

/// Options of `put --independent`.
struct SegmentPutOptions: ParsableArguments {
    @Flag(help: "Store the file as an independently encoded segment (APE / CacheBlend), reusable at any position.")
    var independent = false

    @Option(help: "Position the segment's first token was encoded at (default: the shared prefix's length, else metadata start_pos, else 0).")
    var start: Int?

    @Option(help: "Shared prefix the segment was encoded after: a safetensors file with `tokens`, a JSON array file, or inline JSON.")
    var prefix: String?

    @Option(help: "RoPE base theta (default: metadata rope_theta).")
    var ropeTheta: Double?

    @Option(help: "RoPE rotary dimensions (default: metadata rope_dim, else the head dim).")
    var ropeDim: Int?

    @Option(help: "RoPE pair convention: adjacent (GPT-J, llama.cpp) or split (GPT-NeoX, HF) (default: metadata rope_pairs).")
    var ropePairs: String?

    func rope(for ctx: KVContext) throws -> RoPEConfig {
        guard let theta = ropeTheta ?? ctx.metadata["rope_theta"].flatMap(Double.init) else {
            throw ValidationError("the segment's RoPE theta is unknown: pass --rope-theta (or metadata rope_theta)")
        }
        let dimText = ctx.metadata["rope_dim"]
        guard let dim = ropeDim ?? (dimText == nil ? ctx.kv.shape.headDim : Int(dimText!)) else {
            throw ValidationError("metadata rope_dim \"\(dimText!)\" is not an integer")
        }
        guard let pairsText = ropePairs ?? ctx.metadata["rope_pairs"] else {
            throw ValidationError("the segment's RoPE pair convention is unknown: pass --rope-pairs adjacent|split")
        }
        guard let pairs = RoPEPairs(rawValue: pairsText.lowercased()) else {
            throw ValidationError("RoPE pairs \"\(pairsText)\" is not adjacent or split")
        }
        let config = RoPEConfig(theta: theta, rotaryDim: dim, pairs: pairs)
        try config.validate(headDim: ctx.kv.shape.headDim)
        return config
    }

    func startPosition(for ctx: KVContext, prefixTokens: Int) throws -> Int {
        if let start { return start }
        if prefixTokens > 0 { return prefixTokens }
        guard let text = ctx.metadata["start_pos"] else { return 0 }
        guard let s = Int(text) else { throw ValidationError("metadata start_pos \"\(text)\" is not an integer") }
        return s
    }
}

extension Put {
    func putSegment(_ ctx: KVContext, model: String, levels: [UInt8]) throws {
        guard try reuse.adapter() == nil else { throw ValidationError("--independent segments are stored for the base model; drop the adapter options") }
        let prefixTokens = try segmentOptions.prefix.map(TokenQuery.parse) ?? []
        let rope = try segmentOptions.rope(for: ctx)
        let start = try segmentOptions.startPosition(for: ctx, prefixTokens: prefixTokens.count)
        let store = try storeOptions.open(create: true)
        try storeProfile(in: store, for: ctx, model: model)
        let namespace = store.namespace(for: ctx, model: model, salt: reuse.tenant)
        let report = try store.putSegment(ctx, namespace: namespace, start: start, rope: rope, prefix: prefixTokens, levels: levels)
        output.emit(report) {
            """
            stored segment \(report.segmentID.prefix(16)) (\(report.tokens) tokens encoded at position \(report.start), \(report.pieces) pieces)\(report.alreadyStored ? ", already stored" : "")
            wrote \(report.blobsWritten) blobs, \(Format.bytes(report.bytesWritten)); stored \(Format.bytes(report.storedBytes))
            """
        }
    }
}
