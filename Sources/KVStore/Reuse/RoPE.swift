import Foundation
import KVTensor

/// Which dimensions of a head RoPE rotates together.
public enum RoPEPairs: String, Sendable, Codable, CaseIterable {
    /// (2i, 2i+1): GPT-J, llama.cpp / GGUF.
    case adjacent
    /// (i, i + rotaryDim/2): GPT-NeoX, Hugging Face llama.
    case split
}

/// A model's rotary position embedding: pair i of the first `rotaryDim` dims is rotated by
/// `position * theta^(-2i/rotaryDim)`; the remaining dims are not rotated.
public struct RoPEConfig: Hashable, Sendable, Codable {
    public var theta: Double
    public var rotaryDim: Int
    public var pairs: RoPEPairs

    public init(theta: Double, rotaryDim: Int, pairs: RoPEPairs) {
        self.theta = theta
        self.rotaryDim = rotaryDim
        self.pairs = pairs
    }

    public func validate(headDim: Int) throws {
        guard theta.isFinite, theta > 1 else { throw StoreError.invalidInput("RoPE theta \(theta) must be a finite number above 1") }
        guard rotaryDim > 0, rotaryDim % 2 == 0, rotaryDim <= headDim else {
            throw StoreError.invalidInput("RoPE rotary dim \(rotaryDim) must be even and in 2...\(headDim) (the head dim)")
        }
    }

    /// Angle per position of each pair, in float64 (as the models compute it).
    func frequencies() -> [Double] {
        (0..<rotaryDim / 2).map { pow(theta, -2.0 * Double($0) / Double(rotaryDim)) }
    }
}

/// Moving keys by `delta` positions: RoPE is a rotation per pair, so a key computed at position p
/// becomes the key at p + delta by one more rotation of `delta * freq_i`. Values carry no position.
public enum RoPE {
    /// Rotates `vectors` (contiguous vectors of `headDim` floats) in place by `delta` positions.
    /// Angles and sines are computed in float64 once, the rotation in float32.
    public static func rotate(_ vectors: inout [Float], headDim: Int, delta: Int, config: RoPEConfig) {
        guard delta != 0, !vectors.isEmpty else { return }
        let freqs = config.frequencies()
        let cos = freqs.map { Float(Foundation.cos(Double(delta) * $0)) }
        let sin = freqs.map { Float(Foundation.sin(Double(delta) * $0)) }
        let half = config.rotaryDim / 2
        let adjacent = config.pairs == .adjacent
        vectors.withUnsafeMutableBufferPointer { buf in
            var base = 0
            while base + headDim <= buf.count {
                for i in 0..<half {
                    let a = base + (adjacent ? 2 * i : i)
                    let b = base + (adjacent ? 2 * i + 1 : i + half)
                    let x0 = buf[a], x1 = buf[b]
                    buf[a] = x0 * cos[i] - x1 * sin[i]
                    buf[b] = x0 * sin[i] + x1 * cos[i]
                }
                base += headDim
            }
        }
    }

    /// `kv` with every layer's keys moved by `delta` positions and rounded back to its dtype;
    /// the values are copied byte for byte.
    public static func shift(_ kv: KVTensor, delta: Int, config: RoPEConfig) throws -> KVTensor {
        try config.validate(headDim: kv.shape.headDim)
        guard delta != 0, kv.tokens > 0 else { return kv }
        let planeElements = kv.tokens * kv.shape.rowElements
        var bytes = kv.bytes
        for layer in 0..<kv.shape.layers {
            let start = layer * 2 * planeElements   // plane (layer, keys)
            var floats = Self.decode(bytes, from: start, count: planeElements, dtype: kv.dtype)
            rotate(&floats, headDim: kv.shape.headDim, delta: delta, config: config)
            Self.encode(floats, into: &bytes, at: start, dtype: kv.dtype)
        }
        return try KVTensor(shape: kv.shape, tokens: kv.tokens, dtype: kv.dtype, bytes: bytes)
    }

    static func decode(_ bytes: [UInt8], from element: Int, count: Int, dtype: DType) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buf, n in
            bytes.withUnsafeBytes { raw in
                let w = dtype.byteWidth
                for i in 0..<count {
                    let off = (element + i) * w
                    switch dtype {
                    case .f32: buf[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt32.self)))
                    case .f16: buf[i] = HalfConversion.floatFromHalfBits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt16.self)))
                    case .bf16: buf[i] = HalfConversion.floatFromBFloatBits(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: off, as: UInt16.self)))
                    }
                }
            }
            n = count
        }
    }

    static func encode(_ floats: [Float], into bytes: inout [UInt8], at element: Int, dtype: DType) {
        bytes.withUnsafeMutableBytes { raw in
            let w = dtype.byteWidth
            for (i, f) in floats.enumerated() {
                let off = (element + i) * w
                switch dtype {
                case .f32: raw.storeBytes(of: f.bitPattern.littleEndian, toByteOffset: off, as: UInt32.self)
                case .f16: raw.storeBytes(of: HalfConversion.halfBitsFromFloat(f).littleEndian, toByteOffset: off, as: UInt16.self)
                case .bf16: raw.storeBytes(of: HalfConversion.bfloatBitsFromFloat(f).littleEndian, toByteOffset: off, as: UInt16.self)
                }
            }
        }
    }
}
