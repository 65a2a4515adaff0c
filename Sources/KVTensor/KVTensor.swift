/// A KV cache tensor `[layers, 2, tokens, kvHeads, headDim]` (axis 1: 0 = keys, 1 = values),
/// held as little-endian bytes of `dtype`. The value type owns one contiguous buffer.
public struct KVTensor: Sendable, Equatable {
    public let shape: KVShape
    public let tokens: Int
    public let dtype: DType
    public private(set) var bytes: [UInt8]

    /// Largest token count accepted from any file or request.
    public static let maxTokens = 1 << 20

    public init(shape: KVShape, tokens: Int, dtype: DType, bytes: [UInt8]) throws {
        try shape.validate()
        guard tokens >= 0, tokens <= Self.maxTokens else { throw TensorError.badShape("token count \(tokens) is outside 0...\(Self.maxTokens)") }
        let expected = Self.byteCount(shape: shape, tokens: tokens, dtype: dtype)
        guard bytes.count == expected else {
            throw TensorError.mismatch("tensor holds \(bytes.count) bytes, shape \(shape) x \(tokens) tokens of \(dtype.rawValue) needs \(expected)")
        }
        self.shape = shape
        self.tokens = tokens
        self.dtype = dtype
        self.bytes = bytes
    }

    public static func byteCount(shape: KVShape, tokens: Int, dtype: DType) -> Int {
        shape.elementsPerToken * tokens * dtype.byteWidth
    }

    public var elementCount: Int { shape.elementsPerToken * tokens }

    /// Bytes of one token row (one layer, K or V, all heads).
    @inline(__always) var rowBytes: Int { shape.rowElements * dtype.byteWidth }

    /// Tokens `range` of every layer's keys and values, as a new tensor.
    public func slice(tokens range: Range<Int>) -> KVTensor {
        precondition(range.lowerBound >= 0 && range.upperBound <= tokens, "slice \(range) outside 0..<\(tokens)")
        let rb = rowBytes
        let planes = shape.layers * 2
        let n = range.count
        var out = [UInt8](repeating: 0, count: planes * n * rb)
        bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in
                for p in 0..<planes {
                    let from = src.baseAddress! + (p * tokens + range.lowerBound) * rb
                    (dst.baseAddress! + p * n * rb).copyMemory(from: from, byteCount: n * rb)
                }
            }
        }
        return try! KVTensor(shape: shape, tokens: n, dtype: dtype, bytes: out)
    }

    /// Tensors of the same shape and dtype joined along the token axis.
    public static func concatenate(_ parts: [KVTensor]) throws -> KVTensor {
        guard let first = parts.first else { throw TensorError.badShape("nothing to concatenate") }
        for p in parts where p.shape != first.shape || p.dtype != first.dtype {
            throw TensorError.mismatch("cannot join \(p.shape) \(p.dtype.rawValue) to \(first.shape) \(first.dtype.rawValue)")
        }
        let total = parts.reduce(0) { $0 + $1.tokens }
        let rb = first.rowBytes
        let planes = first.shape.layers * 2
        var out = [UInt8](repeating: 0, count: planes * total * rb)
        out.withUnsafeMutableBytes { dst in
            var offset = 0
            for part in parts {
                part.bytes.withUnsafeBytes { src in
                    for p in 0..<planes {
                        (dst.baseAddress! + (p * total + offset) * rb)
                            .copyMemory(from: src.baseAddress! + p * part.tokens * rb, byteCount: part.tokens * rb)
                    }
                }
                offset += part.tokens
            }
        }
        return try KVTensor(shape: first.shape, tokens: total, dtype: first.dtype, bytes: out)
    }

    /// All elements widened to Float, in layout order.
    public func floats() -> [Float] {
        let n = elementCount
        return [Float](unsafeUninitializedCapacity: n) { buf, count in
            bytes.withUnsafeBytes { raw in
                switch dtype {
                case .f32:
                    for i in 0..<n { buf[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self))) }
                case .f16:
                    for i in 0..<n { buf[i] = HalfConversion.floatFromHalfBits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
                case .bf16:
                    for i in 0..<n { buf[i] = HalfConversion.floatFromBFloatBits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))) }
                }
            }
            count = n
        }
    }

    /// A tensor of `dtype` from Float values in layout order, rounding to nearest even.
    public init(shape: KVShape, tokens: Int, dtype: DType, floats: [Float]) throws {
        guard floats.count == shape.elementsPerToken * tokens else {
            throw TensorError.mismatch("\(floats.count) values for shape \(shape) x \(tokens) tokens")
        }
        let w = dtype.byteWidth
        let bytes = [UInt8](unsafeUninitializedCapacity: floats.count * w) { buf, count in
            let raw = UnsafeMutableRawBufferPointer(buf)
            for (i, f) in floats.enumerated() {
                switch dtype {
                case .f32: raw.storeBytes(of: f.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
                case .f16: raw.storeBytes(of: HalfConversion.halfBitsFromFloat(f).littleEndian, toByteOffset: i * 2, as: UInt16.self)
                case .bf16: raw.storeBytes(of: HalfConversion.bfloatBitsFromFloat(f).littleEndian, toByteOffset: i * 2, as: UInt16.self)
                }
            }
            count = floats.count * w
        }
        try self.init(shape: shape, tokens: tokens, dtype: dtype, bytes: bytes)
    }
}

/// A stored context: the KV of `tokens`, plus free-form metadata (e.g. `model`).
public struct KVContext: Sendable, Equatable {
    public var kv: KVTensor
    public var tokens: [Int32]
    public var metadata: [String: String]

    public init(kv: KVTensor, tokens: [Int32], metadata: [String: String] = [:]) throws {
        guard kv.tokens == tokens.count else {
            throw TensorError.mismatch("kv holds \(kv.tokens) tokens but tokens tensor holds \(tokens.count)")
        }
        self.kv = kv
        self.tokens = tokens
        self.metadata = metadata
    }
}
