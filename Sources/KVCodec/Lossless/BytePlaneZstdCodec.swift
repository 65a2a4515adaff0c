import KVTensor

/// Lossless: splits each element into byte planes (all low bytes, then all high bytes) and compresses
/// with zstd. The exponent-carrying high bytes are far more predictable than the mantissa bytes, and
/// separating them lets zstd's entropy stage see that.
public struct BytePlaneZstdCodec: ChunkCodec {
    public var zstdLevel: Int32
    public init(zstdLevel: Int32 = 3) { self.zstdLevel = zstdLevel }
    public var id: CodecID { .bytePlaneZstd }

    public func encode(_ tensor: KVTensor, level: UInt8) throws -> [UInt8] {
        let planes = BytePlanes.split(tensor.bytes, width: tensor.dtype.byteWidth)
        return try Zstd.compress(planes, level: zstdLevel)
    }

    public func decode(_ payload: UnsafeRawBufferPointer, header: ChunkHeader) throws -> KVTensor {
        let planes = try Zstd.decompress(payload, size: header.rawByteCount)
        let bytes = BytePlanes.join(planes, width: header.dtype.byteWidth)
        do { return try KVTensor(shape: header.shape, tokens: header.tokens, dtype: header.dtype, bytes: bytes) }
        catch { throw CodecError.corrupt("\(error)") }
    }
}

/// Byte-plane transposition: element i's byte b goes to plane b at position i.
public enum BytePlanes {
    public static func split(_ bytes: [UInt8], width: Int) -> [UInt8] {
        let n = bytes.count / width
        return [UInt8](unsafeUninitializedCapacity: bytes.count) { out, count in
            bytes.withUnsafeBufferPointer { src in
                for b in 0..<width {
                    let plane = out.baseAddress! + b * n
                    for i in 0..<n { plane[i] = src[i * width + b] }
                }
            }
            count = bytes.count
        }
    }

    public static func join(_ planes: [UInt8], width: Int) -> [UInt8] {
        let n = planes.count / width
        return [UInt8](unsafeUninitializedCapacity: planes.count) { out, count in
            planes.withUnsafeBufferPointer { src in
                for b in 0..<width {
                    let plane = src.baseAddress! + b * n
                    for i in 0..<n { out[i * width + b] = plane[i] }
                }
            }
            count = planes.count
        }
    }
}
