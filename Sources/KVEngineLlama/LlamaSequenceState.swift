import KVCodec
import KVTensor

/// One sequence's cells of one llama.cpp KV cache as it writes them (`llama_kv_cache::state_write`
/// with a sequence id, at the commit pinned in scripts/build_llama.sh), held in kvstore's tensor
/// layout. A model with sliding-window layers has two caches, each written so
/// (`LlamaMemoryState`).
///
/// Bytes, all little-endian:
///   u32 n_stream; per stream: u32 cell_count, and when non-zero:
///     per cell: i32 pos, u32 n_seq_id (= 1), i32 seq_id
///     u32 v_trans, u32 n_layer
///     per layer K: i32 ggml type, u64 row bytes, cell_count rows of [kv_head][head_dim]
///     per layer V: the same when v_trans = 0; when v_trans = 1: i32 type, u32 element bytes,
///                  u32 n_embd_v_gqa, then for each of those elements one value per cell
/// K and V are F16 (llama.cpp's default cache type) or F32 (`-ctk f32 -ctv f32`, the float oracle),
/// or one quantized type (`-ctk q8_0 -ctv q8_0`, …; V row-major, as llama.cpp quantizes V only with
/// flash attention), the same for every layer. Quantized rows are kept as they are: `kv` then holds
/// each row's bytes as F16 pairs in the storage shape `[layers, 2, cells, 1, row bytes / 2]`
/// (`storageShape`), so they are stored and restored bit for bit. Models with per-cell extensions
/// (M-RoPE, PLE) are refused: their cell records carry more bytes, which the size checks reject.
public struct LlamaSequenceState: Sendable, Equatable {
    /// `n_stream` of the context that wrote it; a restore needs the same count.
    public var streamCount: UInt32
    /// The stream holding the cells (a restore places them in its own sequence's stream).
    public var stream: Int
    /// The sequence id written in every cell (llama.cpp ignores it on restore).
    public var seqID: Int32
    /// Each cell's position, in cell order.
    public var positions: [Int32]
    /// Whether V is stored transposed (llama.cpp does so when flash attention is off).
    public var vTransposed: Bool
    /// Keys and values of the cells, `[layers, 2, cells, kv_heads, head_dim]`, F16 or F32; for a
    /// quantized cache the rows' bytes in the storage shape.
    public var kv: KVTensor
    /// The cache's ggml type (F16 = 1, F32 = 0, Q8_0 = 8, …).
    public var cacheType: Int32

    public init(streamCount: UInt32 = 1, stream: Int = 0, seqID: Int32 = 0, positions: [Int32], vTransposed: Bool, kv: KVTensor,
                cacheType: Int32? = nil) throws {
        let type = cacheType ?? GGMLType.of(kv.dtype) ?? -1
        if GGMLType.isQuantized(type) {
            guard kv.dtype == .f16, kv.shape.kvHeads == 1 else {
                throw LlamaStateError.mismatch("\(GGMLType.name(type)) rows are held as F16 pairs of shape [layers, 2, cells, 1, row bytes / 2], not \(kv.shape) \(kv.dtype.rawValue)")
            }
            guard !vTransposed else { throw LlamaStateError.unsupported("a transposed V of \(GGMLType.name(type)) (llama.cpp quantizes V only with flash attention)") }
        } else {
            guard let own = GGMLType.of(kv.dtype), own == type else {
                throw LlamaStateError.unsupported("KV of \(kv.dtype.rawValue) as \(GGMLType.name(type)); llama.cpp states are written here with F16, F32 or quantized KV only")
            }
        }
        self.cacheType = type
        guard positions.count == kv.tokens else { throw LlamaStateError.mismatch("\(positions.count) positions for \(kv.tokens) cells") }
        guard streamCount >= 1, streamCount <= LlamaEngineLayout.maxStreamCount, stream >= 0, stream < Int(streamCount) else {
            throw LlamaStateError.mismatch("stream \(stream) of \(streamCount) (at most \(LlamaEngineLayout.maxStreamCount) streams)")
        }
        self.streamCount = streamCount
        self.stream = stream
        self.seqID = seqID
        self.positions = positions
        self.vTransposed = vTransposed
        self.kv = kv
    }

    public var cellCount: Int { positions.count }

    /// Whether the cache holds quantized rows (kept as bytes in the storage shape).
    public var isQuantized: Bool { GGMLType.isQuantized(cacheType) }

    /// The shape `kv` has for a model of KV shape `shape` and cache type `cacheType`: the model's
    /// own for F16 and F32, `[layers, 2, cells, 1, row bytes / 2]` for a quantized type; nil for a
    /// type or row length this reader does not know.
    public static func storageShape(_ shape: KVShape, cacheType: Int32) -> KVShape? {
        if GGMLType.dtype(cacheType) != nil { return shape }
        guard let bytes = GGMLType.quantizedRowBytes(cacheType, elements: shape.rowElements), bytes % 2 == 0 else { return nil }
        return KVShape(layers: shape.layers, kvHeads: 1, headDim: bytes / 2)
    }

    /// The name of a ggml cache type (`Q8_0`, …).
    public static func cacheTypeName(_ type: Int32) -> String { GGMLType.name(type) }

    /// Whether the cells hold positions 0, 1, … in order: a prefix kvstore can store by tokens.
    public var isContiguousPrefix: Bool {
        positions.enumerated().allSatisfy { Int($0.element) == $0.offset }
    }
}

// MARK: - Decoding

extension LlamaSequenceState {
    /// Parses state bytes (without any file or in-memory prefix). `shape` comes from the model
    /// (`GGUFModel.kvShape`); every count read is checked against the bytes that remain.
    public init(decoding bytes: UnsafeRawBufferPointer, shape: KVShape) throws {
        var r = ByteReader(bytes)
        self = try Self.decode(&r, shape: shape)
        guard r.remaining == 0 else {
            throw LlamaStateError.unsupported("\(r.remaining) bytes follow the KV cache (a second cache: iSWA or hybrid memory?)")
        }
    }

    public init(decoding bytes: [UInt8], shape: KVShape) throws {
        self = try bytes.withUnsafeBytes { try Self(decoding: $0, shape: shape) }
    }

    static func need(_ r: ByteReader, _ n: Int, _ what: String) throws {
        guard n >= 0, r.remaining >= n else { throw LlamaStateError.truncated("\(what) needs \(n) bytes, \(r.remaining) remain") }
    }

    static func decode(_ r: inout ByteReader, shape: KVShape) throws -> LlamaSequenceState {
        try need(r, 4, "stream count")
        let streamCount: UInt32 = r.read()
        guard streamCount >= 1, streamCount <= LlamaEngineLayout.maxStreamCount else { throw LlamaStateError.malformed("stream count \(streamCount)") }
        var found: (stream: Int, state: LlamaSequenceState)?
        var empty = true
        for s in 0..<Int(streamCount) {
            try need(r, 4, "cell count of stream \(s)")
            let cells = Int(r.read() as UInt32)
            if cells == 0 { continue }
            guard empty else { throw LlamaStateError.unsupported("cells in more than one stream (a whole-context state, not one sequence)") }
            empty = false
            found = (s, try decodeStream(&r, cells: cells, shape: shape, streamCount: streamCount, stream: s))
        }
        if let found { return found.state }
        let kv = try KVTensor(shape: shape, tokens: 0, dtype: .f16, bytes: [])
        return try LlamaSequenceState(streamCount: streamCount, stream: 0, positions: [], vTransposed: false, kv: kv)
    }

    static func decodeStream(_ r: inout ByteReader, cells: Int, shape: KVShape, streamCount: UInt32, stream: Int) throws -> LlamaSequenceState {
        // A cell record is 12 bytes; checking here bounds every allocation below by the input size.
        try need(r, cells * 12, "\(cells) cell records")
        guard cells <= KVTensor.maxTokens else { throw LlamaStateError.malformed("\(cells) cells") }
        var positions = [Int32](repeating: 0, count: cells)
        var seqID: Int32 = 0
        for i in 0..<cells {
            positions[i] = r.read()
            let nSeq: UInt32 = r.read()
            guard nSeq == 1 else {
                throw LlamaStateError.unsupported("cell \(i) belongs to \(nSeq) sequences (a whole-context state, or a model with per-cell extensions)")
            }
            let id: Int32 = r.read()
            if i == 0 { seqID = id } else if id != seqID { throw LlamaStateError.malformed("cell \(i) has sequence \(id), cell 0 has \(seqID)") }
        }
        try need(r, 8, "v_trans and layer count")
        let vTrans: UInt32 = r.read()
        let layers = Int(r.read() as UInt32)
        guard vTrans <= 1 else { throw LlamaStateError.malformed("v_trans = \(vTrans)") }
        guard layers == shape.layers else { throw LlamaStateError.mismatch("the state has \(layers) layers, the model \(shape.layers)") }

        // The first layer's K type decides the element type; every other layer must match it.
        try need(r, 4, "type of K of layer 0")
        var peek = r
        let type: Int32 = peek.read()
        guard let storage = storageShape(shape, cacheType: type) else {
            throw LlamaStateError.unsupported("K of layer 0 is \(GGMLType.name(type)); supported: F16, F32, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL")
        }
        let dtype = GGMLType.dtype(type) ?? .f16   // quantized rows: their bytes as F16 pairs
        let row = shape.rowElements
        let element = dtype.byteWidth
        let rowBytes = storage.rowElements * element
        let planeBytes = cells * rowBytes
        try need(r, layers * 2 * planeBytes, "the KV of \(cells) cells")   // bounds the allocation by the input
        var out = [UInt8](repeating: 0, count: layers * 2 * planeBytes)
        try out.withUnsafeMutableBytes { dst in
            for l in 0..<layers {
                try readRows(&r, into: dst.baseAddress! + (2 * l) * planeBytes, cells: cells, type: type, rowBytes: rowBytes, what: "K of layer \(l)")
            }
            for l in 0..<layers {
                let plane = dst.baseAddress! + (2 * l + 1) * planeBytes
                if vTrans == 0 {
                    try readRows(&r, into: plane, cells: cells, type: type, rowBytes: rowBytes, what: "V of layer \(l)")
                    continue
                }
                try need(r, 12, "V header of layer \(l)")
                let vType: Int32 = r.read()
                let elementBytes: UInt32 = r.read()
                let elements: UInt32 = r.read()
                guard vType == type, elementBytes == UInt32(element), !GGMLType.isQuantized(type) else {
                    throw LlamaStateError.unsupported("V of layer \(l) is \(GGMLType.name(vType)) (\(elementBytes)-byte elements), K is \(GGMLType.name(type))")
                }
                guard Int(elements) == row else { throw LlamaStateError.mismatch("V of layer \(l) has \(elements) elements per cell, the model \(row)") }
                try need(r, cells * rowBytes, "transposed V of layer \(l)")
                // File: element j of every cell, then j + 1. Tensor: every element of cell c, then c + 1.
                transpose(UnsafeRawPointer(r.slice(cells * rowBytes).baseAddress!), into: plane, rows: row, columns: cells, element: element)
            }
        }
        let kv = try KVTensor(shape: storage, tokens: cells, dtype: dtype, bytes: out)
        return try LlamaSequenceState(streamCount: streamCount, stream: stream, seqID: seqID, positions: positions,
                                      vTransposed: vTrans == 1, kv: kv, cacheType: type)
    }

    /// One layer's K (or untransposed V): type, row size, then the rows as they are.
    static func readRows(_ r: inout ByteReader, into plane: UnsafeMutableRawPointer, cells: Int, type expected: Int32,
                         rowBytes: Int, what: String) throws {
        try need(r, 12, "header of \(what)")
        let type: Int32 = r.read()
        let size: UInt64 = r.read()
        guard type == expected else {
            throw LlamaStateError.unsupported("\(what) is \(GGMLType.name(type)), layer 0's K \(GGMLType.name(expected))")
        }
        guard size == UInt64(rowBytes) else {
            throw LlamaStateError.mismatch("\(what) has \(size)-byte rows of \(GGMLType.name(type)), the model \(rowBytes)")
        }
        try need(r, cells * rowBytes, what)
        plane.copyMemory(from: r.slice(cells * rowBytes).baseAddress!, byteCount: cells * rowBytes)
    }

    /// A row-major `rows` × `columns` matrix of `element`-byte values into its transpose.
    static func transpose(_ src: UnsafeRawPointer, into dst: UnsafeMutableRawPointer, rows: Int, columns: Int, element: Int) {
        func run<T>(_: T.Type) {
            for j in 0..<rows {
                for c in 0..<columns {
                    dst.storeBytes(of: src.loadUnaligned(fromByteOffset: (j * columns + c) * element, as: T.self),
                                   toByteOffset: (c * rows + j) * element, as: T.self)
                }
            }
        }
        element == 4 ? run(UInt32.self) : run(UInt16.self)
    }
}

// MARK: - Encoding

extension LlamaSequenceState {
    /// The state bytes, exactly as llama.cpp writes them for these cells.
    public func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: encodedSize)
        append(to: &w)
        return w.bytes
    }

    public var encodedSize: Int {
        4 + Int(streamCount) * 4 + (cellCount == 0 ? 0 : cellCount * 12 + 8 + kv.shape.layers * 2 * 12 + kv.bytes.count)
    }

    func append(to w: inout ByteWriter) {
        w.append(streamCount)
        for s in 0..<Int(streamCount) {
            guard s == stream, cellCount > 0 else { w.append(UInt32(0)); continue }
            w.append(UInt32(cellCount))
            for p in positions {
                w.append(p)
                w.append(UInt32(1))
                w.append(seqID)
            }
            let layers = kv.shape.layers
            let row = kv.shape.rowElements
            let element = kv.dtype.byteWidth
            let type = cacheType
            let rowBytes = row * element
            let planeBytes = cellCount * rowBytes
            w.append(UInt32(vTransposed ? 1 : 0))
            w.append(UInt32(layers))
            kv.bytes.withUnsafeBytes { src in
                for l in 0..<layers {
                    w.append(type)
                    w.append(UInt64(rowBytes))
                    w.append(UnsafeRawBufferPointer(rebasing: src[(2 * l * planeBytes)..<((2 * l + 1) * planeBytes)]))
                }
                for l in 0..<layers {
                    let plane = UnsafeRawBufferPointer(rebasing: src[((2 * l + 1) * planeBytes)..<((2 * l + 2) * planeBytes)])
                    w.append(type)
                    if !vTransposed {
                        w.append(UInt64(rowBytes))
                        w.append(plane)
                        continue
                    }
                    w.append(UInt32(element))
                    w.append(UInt32(row))
                    let transposed = [UInt8](unsafeUninitializedCapacity: planeBytes) { buf, count in
                        Self.transpose(plane.baseAddress!, into: UnsafeMutableRawPointer(buf.baseAddress!), rows: cellCount, columns: row, element: element)
                        count = planeBytes
                    }
                    w.append(transposed)
                }
            }
        }
    }
}

// MARK: - In-memory form (llama_state_seq_get_data / set_data)

extension LlamaSequenceState {
    /// Magic in front of `llama_state_seq_get_data`'s bytes (`io_magic` in llama-context.cpp).
    public static let memoryMagic: UInt32 = 0xaf14_3cd8

    /// Parses what `llama_state_seq_get_data` returns for a model with one KV cache
    /// (`LlamaMemoryState` reads the prefix and every cache).
    public init(decodingMemory bytes: [UInt8], shape: KVShape) throws {
        self = try LlamaMemoryState(decodingMemory: bytes, shape: shape, layout: .single).sections[0]
    }

    /// Bytes for `llama_state_seq_set_data` (which ignores `sourceSeqID` and restores into the sequence it is given).
    public func memoryBytes(sourceSeqID: Int32 = 0) -> [UInt8] {
        LlamaMemoryState(shape: kv.shape, layout: .single, sections: [self]).memoryBytes(sourceSeqID: sourceSeqID)
    }
}
