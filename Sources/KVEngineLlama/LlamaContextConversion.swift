import KVTensor

/// Sequence states ↔ kvstore contexts. A stored context is a prefix: positions 0..<n in order.
extension LlamaSequenceState {
    /// The first `count` positions (0..<count) as a kvstore context of `tokens[0..<count]`.
    public func context(tokens: [Int32], count: Int? = nil, model: GGUFModel) throws -> KVContext {
        let n = count ?? min(tokens.count, cellCount)
        guard n <= tokens.count else { throw LlamaStateError.mismatch("\(n) tokens asked of a state with \(tokens.count) tokens") }
        guard kv.shape == model.kvShape else { throw LlamaStateError.mismatch("state shape \(kv.shape), model \(model.kvShape)") }
        return try KVContext(kv: prefixKV(count: n), tokens: Array(tokens[0..<n]), metadata: ["model": model.identity])
    }

    /// The KV of positions 0..<count, in position order. Cells may sit in any order in the
    /// engine's cache; they are gathered by position.
    public func prefixKV(count n: Int) throws -> KVTensor {
        guard n > 0, n <= cellCount else { throw LlamaStateError.mismatch("\(n) positions asked of a state with \(cellCount) cells") }
        if positions.prefix(n).enumerated().allSatisfy({ Int($0.element) == $0.offset }) {
            return kv.slice(tokens: 0..<n)
        }
        var cellOf = [Int](repeating: -1, count: n)
        for (cell, p) in positions.enumerated() where p >= 0 && Int(p) < n {
            guard cellOf[Int(p)] < 0 else { throw LlamaStateError.malformed("position \(p) appears in two cells") }
            cellOf[Int(p)] = cell
        }
        if let missing = cellOf.firstIndex(of: -1) { throw LlamaStateError.mismatch("position \(missing) is not in the state") }
        return try KVTensor.concatenate(cellOf.map { kv.slice(tokens: $0..<($0 + 1)) })
    }

    /// A state holding `context` at positions 0..<n, laid out for an engine with `streamCount`
    /// streams and V transposed or not (`LlamaEngineLayout`, learnt from one of its own states).
    public init(context: KVContext, layout: LlamaEngineLayout) throws {
        guard context.kv.dtype == .f16 else {
            throw LlamaStateError.unsupported("context KV is \(context.kv.dtype.rawValue); llama.cpp's KV cache here is F16")
        }
        try self.init(streamCount: layout.streamCount, stream: 0, seqID: 0,
                      positions: (0..<Int32(context.tokens.count)).map { $0 }, vTransposed: layout.vTransposed, kv: context.kv)
    }
}

/// How an engine instance lays out its states: it must match for a restore to succeed.
public struct LlamaEngineLayout: Sendable, Equatable, CustomStringConvertible {
    public var streamCount: UInt32
    public var vTransposed: Bool

    public init(streamCount: UInt32, vTransposed: Bool) {
        self.streamCount = streamCount
        self.vTransposed = vTransposed
    }

    public init(of state: LlamaSequenceState) {
        self.init(streamCount: state.streamCount, vTransposed: state.vTransposed)
    }

    public var description: String { "\(streamCount) stream(s), V \(vTransposed ? "transposed" : "row-major")" }
}

extension LlamaSlotFile {
    /// A slot file llama-server restores as `context` (its tokens and KV at positions 0..<n).
    public init(context: KVContext, layout: LlamaEngineLayout) throws {
        self.init(tokens: context.tokens, state: try LlamaSequenceState(context: context, layout: layout))
    }
}
