import CZstd

/// One-shot libzstd calls. The caller always knows the decompressed size (it follows from a checked
/// shape), so decompression never allocates by a size read from the frame.
public enum Zstd {
    public static func compress(_ src: UnsafeRawBufferPointer, level: Int32) throws -> [UInt8] {
        let bound = ZSTD_compressBound(src.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { dst in
            ZSTD_compress(dst.baseAddress, bound, src.baseAddress, src.count, level)
        }
        if ZSTD_isError(n) != 0 { throw CodecError.compression(String(cString: ZSTD_getErrorName(n))) }
        out.removeSubrange(n...)
        return out
    }

    public static func compress(_ src: [UInt8], level: Int32) throws -> [UInt8] {
        try src.withUnsafeBytes { (b) throws in try compress(b, level: level) }
    }

    /// Decompresses one frame into exactly `size` bytes written at `dst`.
    public static func decompress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws {
        let declared = ZSTD_getFrameContentSize(src.baseAddress, src.count)
        guard declared == UInt64(dst.count) else {
            throw CodecError.corrupt("zstd frame declares \(declared) bytes, expected \(dst.count)")
        }
        let n = ZSTD_decompress(dst.baseAddress, dst.count, src.baseAddress, src.count)
        if ZSTD_isError(n) != 0 { throw CodecError.corrupt("zstd: \(String(cString: ZSTD_getErrorName(n)))") }
        guard n == dst.count else { throw CodecError.corrupt("zstd produced \(n) bytes, expected \(dst.count)") }
    }

    public static func decompress(_ src: UnsafeRawBufferPointer, size: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: size)
        try out.withUnsafeMutableBytes { (d) throws in try decompress(src, into: d) }
        return out
    }
}
