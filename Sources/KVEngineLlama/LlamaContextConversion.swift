import KVTensor

/// Sequence states ↔ kvstore contexts. A stored context is a prefix: positions 0..<n in order.
extension LlamaSequenceState {
    /// The first `count` positions (0..<count) as a kvstore context of `tokens[0..<count]`.
    /// A quantized cache's context is its rows' bytes, filed under the model id naming the type.
    public func context(tokens: [Int32], count: Int? = nil, model: GGUFModel) throws -> KVContext {
        let n = count ?? min(tokens.count, cellCount)
        guard n <= tokens.count else { throw LlamaStateError.mismatch("\(n) tokens asked of a state with \(tokens.count) tokens") }
        guard kv.shape == Self.storageShape(model.kvShape, cacheType: cacheType) else {
            throw LlamaStateError.mismatch("state shape \(kv.shape), model \(model.kvShape) (\(GGMLType.name(cacheType)))")
        }
        return try KVContext(kv: prefixKV(count: n), tokens: Array(tokens[0..<n]), metadata: ["model": model.kvIdentity(cacheType: cacheType)])
    }

    /// The KV of positions 0..<count, in position order. Cells may sit in any order in the
    /// engine's cache; they are gathered by position.
    public func prefixKV(count n: Int) throws -> KVTensor {
        guard n > 0, n <= cellCount else { throw LlamaStateError.mismatch("\(n) positions asked of a state with \(cellCount) cells") }
        return try kv(positions: 0..<n)
    }

    /// The KV of `range`'s positions, in position order; each must be in exactly one cell.
    public func kv(positions range: Range<Int>) throws -> KVTensor {
        if let first = positions.firstIndex(of: Int32(clamping: range.lowerBound)), first + range.count <= cellCount,
           positions[first..<(first + range.count)].enumerated().allSatisfy({ Int($0.element) == range.lowerBound + $0.offset }) {
            return kv.slice(tokens: first..<(first + range.count))
        }
        var cellOf = [Int](repeating: -1, count: range.count)
        for (cell, p) in positions.enumerated() where range.contains(Int(p)) {
            guard cellOf[Int(p) - range.lowerBound] < 0 else { throw LlamaStateError.malformed("position \(p) appears in two cells") }
            cellOf[Int(p) - range.lowerBound] = cell
        }
        if let missing = cellOf.firstIndex(of: -1) { throw LlamaStateError.mismatch("position \(range.lowerBound + missing) is not in the state") }
        return try KVTensor.concatenate(cellOf.map { kv.slice(tokens: $0..<($0 + 1)) })
    }

    /// A state holding `context` at positions 0..<n, laid out for an engine with `streamCount`
    /// streams and V transposed or not (`LlamaEngineLayout`, learnt from one of its own states).
    public init(context: KVContext, layout: LlamaEngineLayout) throws {
        guard context.kv.dtype == layout.dtype else {
            throw LlamaStateError.mismatch("context KV is \(context.kv.dtype.rawValue), the engine's KV cache \(layout.dtype.rawValue)")
        }
        try self.init(streamCount: layout.streamCount, stream: 0, seqID: 0,
                      positions: (0..<Int32(context.tokens.count)).map { $0 }, vTransposed: layout.vTransposed, kv: context.kv,
                      cacheType: layout.cacheType)
    }
}

/// How an engine instance lays out its states: it must match for a restore to succeed.
public struct LlamaEngineLayout: Sendable, Equatable, CustomStringConvertible {
    public var streamCount: UInt32
    public var vTransposed: Bool
    /// The element type of the cache's tensors (F16 unless the engine runs `-ctk f32 -ctv f32`;
    /// F16 pairs for a quantized cache).
    public var dtype: DType
    /// The cache's ggml type: F16 or F32 as `dtype`, or a quantized type (`-ctk q8_0 -ctv q8_0`).
    public var cacheType: Int32

    public init(streamCount: UInt32, vTransposed: Bool, dtype: DType = .f16, cacheType: Int32? = nil) {
        self.streamCount = streamCount
        self.vTransposed = vTransposed
        self.dtype = dtype
        self.cacheType = cacheType ?? (dtype == .f32 ? 0 : 1)
    }

    /// Most KV streams a state may declare (llama.cpp has one per sequence at most: n_seq_max).
    public static let maxStreamCount: UInt32 = 4096

    /// Refuses a layout no engine has, before anything is sized from it: a state is 4 bytes per
    /// stream, so a caller's stream count of 2^31 would otherwise ask for 8 GB.
    public func validate() throws {
        guard (1...Self.maxStreamCount).contains(streamCount) else {
            throw LlamaStateError.mismatch("layout stream count \(streamCount) is outside 1...\(Self.maxStreamCount)")
        }
    }

    public init(of state: LlamaSequenceState) {
        self.init(streamCount: state.streamCount, vTransposed: state.vTransposed, dtype: state.kv.dtype, cacheType: state.cacheType)
    }

    public var isQuantized: Bool { GGMLType.isQuantized(cacheType) }

    /// The shape of the stored KV of a model of KV shape `shape` (`LlamaSequenceState.storageShape`).
    public func storageShape(_ shape: KVShape) -> KVShape? { LlamaSequenceState.storageShape(shape, cacheType: cacheType) }

    public var description: String {
        "\(streamCount) stream(s), V \(vTransposed ? "transposed" : "row-major"), \(isQuantized ? GGMLType.name(cacheType) : dtype.rawValue)"
    }
}

extension GGUFModel {
    /// The store's model id for KV of this model in a cache of `cacheType`: a quantized cache's rows
    /// are filed under an id naming the type, so F16 and quantized KV never mix.
    public func kvIdentity(cacheType: Int32) -> String {
        GGMLType.isQuantized(cacheType) ? identity + "+kv." + GGMLType.name(cacheType).lowercased() : identity
    }
}

extension LlamaSlotFile {
    /// A slot file llama-server restores as `context` (its tokens and KV at positions 0..<n).
    public init(context: KVContext, layout: LlamaEngineLayout) throws {
        guard context.kv.dtype == layout.dtype else {
            throw LlamaStateError.mismatch("context KV is \(context.kv.dtype.rawValue), the engine's KV cache \(layout.dtype.rawValue)")
        }
        self.init(tokens: context.tokens, state: try LlamaSequenceState(context: context, layout: layout))
    }
}
