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
                if width == 2, isLittleEndian {
                    split2(UnsafeRawPointer(src.baseAddress!), n, out.baseAddress!)
                    count = bytes.count
                    return
                }
                if width == 4, isLittleEndian {
                    split4(UnsafeRawPointer(src.baseAddress!), n, out.baseAddress!)
                    count = bytes.count
                    return
                }
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
                if width == 2, isLittleEndian {
                    join2(src.baseAddress!, n, UnsafeMutableRawPointer(out.baseAddress!))
                    count = planes.count
                    return
                }
                if width == 4, isLittleEndian {
                    join4(src.baseAddress!, n, UnsafeMutableRawPointer(out.baseAddress!))
                    count = planes.count
                    return
                }
                for b in 0..<width {
                    let plane = src.baseAddress! + b * n
                    for i in 0..<n { out[i * width + b] = plane[i] }
                }
            }
            count = planes.count
        }
    }

    #if _endian(little)
    static let isLittleEndian = true
    #else
    static let isLittleEndian = false
    #endif

    // 16-bit elements (f16, bf16: the hot case) 16 at a time (lanes are little-endian u16, hence the endianness guard): the strided byte loops above run at a
    // fraction of memory speed and cost level 0 a quarter of its decode time.
    static func split2(_ src: UnsafeRawPointer, _ n: Int, _ out: UnsafeMutablePointer<UInt8>) {
        let lo = UnsafeMutableRawPointer(out), hi = UnsafeMutableRawPointer(out + n)
        var i = 0
        while i &+ 16 <= n {
            let v = src.loadUnaligned(fromByteOffset: 2 &* i, as: SIMD16<UInt16>.self)
            lo.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v), toByteOffset: i, as: SIMD16<UInt8>.self)
            hi.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> UInt16(8)), toByteOffset: i, as: SIMD16<UInt8>.self)
            i &+= 16
        }
        while i < n {
            out[i] = src.load(fromByteOffset: 2 &* i, as: UInt8.self)
            out[n &+ i] = src.load(fromByteOffset: 2 &* i &+ 1, as: UInt8.self)
            i &+= 1
        }
    }

    static func join2(_ src: UnsafePointer<UInt8>, _ n: Int, _ out: UnsafeMutableRawPointer) {
        let lo = UnsafeRawPointer(src), hi = UnsafeRawPointer(src + n)
        var i = 0
        while i &+ 16 <= n {
            let l = SIMD16<UInt16>(truncatingIfNeeded: lo.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self))
            let h = SIMD16<UInt16>(truncatingIfNeeded: hi.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self))
            out.storeBytes(of: l | h &<< UInt16(8), toByteOffset: 2 &* i, as: SIMD16<UInt16>.self)
            i &+= 16
        }
        while i < n {
            out.storeBytes(of: src[i], toByteOffset: 2 &* i, as: UInt8.self)
            out.storeBytes(of: src[n &+ i], toByteOffset: 2 &* i &+ 1, as: UInt8.self)
            i &+= 1
        }
    }

    // 32-bit elements (f32, what vLLM's CPU build keeps) the same way, 16 at a time.
    static func split4(_ src: UnsafeRawPointer, _ n: Int, _ out: UnsafeMutablePointer<UInt8>) {
        let p0 = UnsafeMutableRawPointer(out), p1 = p0 + n, p2 = p0 + 2 &* n, p3 = p0 + 3 &* n
        var i = 0
        while i &+ 16 <= n {
            let v = src.loadUnaligned(fromByteOffset: 4 &* i, as: SIMD16<UInt32>.self)
            p0.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v), toByteOffset: i, as: SIMD16<UInt8>.self)
            p1.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> UInt32(8)), toByteOffset: i, as: SIMD16<UInt8>.self)
            p2.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> UInt32(16)), toByteOffset: i, as: SIMD16<UInt8>.self)
            p3.storeBytes(of: SIMD16<UInt8>(truncatingIfNeeded: v &>> UInt32(24)), toByteOffset: i, as: SIMD16<UInt8>.self)
            i &+= 16
        }
        while i < n {
            for b in 0..<4 { out[b &* n &+ i] = src.load(fromByteOffset: 4 &* i &+ b, as: UInt8.self) }
            i &+= 1
        }
    }

    static func join4(_ src: UnsafePointer<UInt8>, _ n: Int, _ out: UnsafeMutableRawPointer) {
        let p0 = UnsafeRawPointer(src), p1 = p0 + n, p2 = p0 + 2 &* n, p3 = p0 + 3 &* n
        var i = 0
        while i &+ 16 <= n {
            let b0 = SIMD16<UInt32>(truncatingIfNeeded: p0.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self))
            let b1 = SIMD16<UInt32>(truncatingIfNeeded: p1.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self))
            let b2 = SIMD16<UInt32>(truncatingIfNeeded: p2.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self))
            let b3 = SIMD16<UInt32>(truncatingIfNeeded: p3.loadUnaligned(fromByteOffset: i, as: SIMD16<UInt8>.self))
            out.storeBytes(of: b0 | b1 &<< UInt32(8) | b2 &<< UInt32(16) | b3 &<< UInt32(24), toByteOffset: 4 &* i, as: SIMD16<UInt32>.self)
            i &+= 16
        }
        while i < n {
            for b in 0..<4 { out.storeBytes(of: src[b &* n &+ i], toByteOffset: 4 &* i &+ b, as: UInt8.self) }
            i &+= 1
        }
    }
}
