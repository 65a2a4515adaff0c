import KVCodec
import KVTensor

/// What `llama_state_seq_get_data` returns for one sequence: the magic, the source sequence id,
/// then one section (`LlamaSequenceState`) per KV cache of the model (`LlamaCacheLayout`): one for
/// most models; for sliding-window models the full-attention layers' cache, then the sliding
/// layers' cache holding only the positions still inside the window.
///
/// kvstore keeps the KV of every layer in model order, `[layers, 2, tokens, kv_heads, head_dim]`,
/// so a stored prefix can be cut anywhere. A state of a sliding-window model lacks the sliding
/// layers' positions before the window; `kv(count:)` says where they start, and a caller wanting
/// all of them captures the state while prefilling, a window at a time.
public struct LlamaMemoryState: Sendable, Equatable {
    public var shape: KVShape
    public var layout: LlamaCacheLayout
    /// One per cache, in the order llama.cpp writes them.
    public var sections: [LlamaSequenceState]

    /// The model's layers by cache: `layout.cacheLayers(layers:)`.
    var cacheLayers: [[Int]] { layout.cacheLayers(layers: shape.layers) }

    /// Cells of the full-attention cache: the positions the sequence holds.
    public var cellCount: Int { sections[0].cellCount }

    public var engineLayout: LlamaEngineLayout { LlamaEngineLayout(of: sections[0]) }

    init(shape: KVShape, layout: LlamaCacheLayout, sections: [LlamaSequenceState]) {
        self.shape = shape
        self.layout = layout
        self.sections = sections
    }

    /// Parses `llama_state_seq_get_data`'s bytes; every count read is checked against the bytes left.
    public init(decodingMemory bytes: [UInt8], shape: KVShape, layout: LlamaCacheLayout) throws {
        try layout.validate(layers: shape.layers)
        self.shape = shape
        self.layout = layout
        let caches = layout.cacheLayers(layers: shape.layers)
        sections = try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            try LlamaSequenceState.need(r, 8, "in-memory state prefix")
            let magic: UInt32 = r.read()
            guard magic == LlamaSequenceState.memoryMagic else {
                throw LlamaStateError.malformed("in-memory state magic 0x\(String(magic, radix: 16))")
            }
            let _: Int32 = r.read()
            let sections = try caches.map { layers in
                try LlamaSequenceState.decode(&r, shape: KVShape(layers: layers.count, kvHeads: shape.kvHeads, headDim: shape.headDim))
            }
            guard r.remaining == 0 else {
                throw LlamaStateError.unsupported("\(r.remaining) bytes follow the model's \(caches.count) KV cache(s) (hybrid or recurrent memory?)")
            }
            return sections
        }
        // The in-process path joins caches in the model's shape; quantized rows go through the sidecar's slot files only.
        if let q = sections.first(where: \.isQuantized) {
            throw LlamaStateError.unsupported("a \(LlamaSequenceState.cacheTypeName(q.cacheType)) KV cache in the in-process path (F16 or F32 only)")
        }
        for s in sections.dropFirst() where s.cellCount > 0 && sections[0].cellCount > 0 {
            guard s.kv.dtype == sections[0].kv.dtype, s.vTransposed == sections[0].vTransposed, s.streamCount == sections[0].streamCount else {
                throw LlamaStateError.malformed("the sliding-window cache is laid out unlike the full-attention cache")
            }
        }
    }

    /// The KV of positions 0..<count, every layer in model order. Sliding layers hold positions
    /// `windowStart..<count` only; their rows before it are zero and must not be stored as KV.
    public func kv(count n: Int) throws -> (kv: KVTensor, windowStart: Int) {
        let base = try sections[0].prefixKV(count: n)
        guard layout.hasSlidingLayers else { return (base, 0) }
        // The run of positions the sliding cache holds that ends at n - 1.
        let held = Set(sections[1].positions.lazy.map(Int.init).filter { $0 < n })
        var start = n
        while start > 0, held.contains(start - 1) { start -= 1 }
        let sliding = start < n ? try sections[1].kv(positions: start..<n) : nil
        let dtype = base.dtype
        let rowBytes = shape.rowElements * dtype.byteWidth
        let plane = n * rowBytes
        var out = [UInt8](repeating: 0, count: shape.layers * 2 * plane)
        out.withUnsafeMutableBytes { dst in
            for (cache, layers) in cacheLayers.enumerated() {
                let (src, from) = cache == 0 ? (base, 0) : (sliding, start)
                guard let src else { continue }
                src.bytes.withUnsafeBytes { s in
                    for (i, l) in layers.enumerated() {
                        for kv in 0..<2 {
                            (dst.baseAddress! + (2 * l + kv) * plane + from * rowBytes)
                                .copyMemory(from: s.baseAddress! + (2 * i + kv) * src.tokens * rowBytes, byteCount: src.tokens * rowBytes)
                        }
                    }
                }
            }
        }
        return (try KVTensor(shape: shape, tokens: n, dtype: dtype, bytes: out), start)
    }

    /// A state holding `kv` (every layer, model order) at positions 0..<n for an engine laid out as
    /// `engine`: the sliding layers' section keeps only the window's positions, as llama.cpp writes it.
    public init(kv: KVTensor, layout: LlamaCacheLayout, engine: LlamaEngineLayout) throws {
        try engine.validate()
        try layout.validate(layers: kv.shape.layers)
        guard kv.dtype == engine.dtype, !engine.isQuantized else {
            throw LlamaStateError.mismatch("KV is \(kv.dtype.rawValue), the engine's KV cache \(engine)")
        }
        shape = kv.shape
        self.layout = layout
        let n = kv.tokens
        let rowBytes = kv.shape.rowElements * kv.dtype.byteWidth
        sections = try layout.cacheLayers(layers: kv.shape.layers).enumerated().map { cache, layers in
            let from = cache == 0 ? 0 : layout.windowStart(count: n)
            let count = n - from
            var bytes = [UInt8](repeating: 0, count: layers.count * 2 * count * rowBytes)
            bytes.withUnsafeMutableBytes { dst in
                kv.bytes.withUnsafeBytes { src in
                    for (i, l) in layers.enumerated() {
                        for p in 0..<2 {
                            (dst.baseAddress! + (2 * i + p) * count * rowBytes)
                                .copyMemory(from: src.baseAddress! + ((2 * l + p) * n + from) * rowBytes, byteCount: count * rowBytes)
                        }
                    }
                }
            }
            let part = try KVTensor(shape: KVShape(layers: layers.count, kvHeads: kv.shape.kvHeads, headDim: kv.shape.headDim),
                                    tokens: count, dtype: kv.dtype, bytes: bytes)
            return try LlamaSequenceState(streamCount: engine.streamCount, stream: 0, seqID: 0,
                                          positions: (Int32(from)..<Int32(n)).map { $0 }, vTransposed: engine.vTransposed, kv: part)
        }
    }

    /// Bytes for `llama_state_seq_set_data`.
    public func memoryBytes(sourceSeqID: Int32 = 0) -> [UInt8] {
        var w = ByteWriter(capacity: 8 + sections.reduce(0) { $0 + $1.encodedSize })
        w.append(LlamaSequenceState.memoryMagic)
        w.append(sourceSeqID)
        for s in sections { s.append(to: &w) }
        return w.bytes
    }
}
