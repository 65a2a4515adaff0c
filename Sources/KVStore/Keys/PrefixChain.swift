import Crypto

/// The chained prefix hash: `h_0 = root`, `h_i = SHA-256(h_{i-1} || token ids of chunk i)` with ids
/// as little-endian u32. A chunk's key therefore commits to every token before it.
public enum PrefixChain {
    public static func next(_ parent: Hash32, tokens: ArraySlice<Int32>) -> Hash32 {
        var h = SHA256()
        parent.bytes.withUnsafeBytes { h.update(bufferPointer: $0) }
        tokens.withUnsafeBufferPointer { buf in
            #if _endian(little)
            h.update(bufferPointer: UnsafeRawBufferPointer(buf))
            #else
            for t in buf { withUnsafeBytes(of: UInt32(bitPattern: t).littleEndian) { h.update(bufferPointer: $0) } }
            #endif
        }
        return Hash32(digest: h.finalize())
    }

    /// Token ranges of the chunks of `count` tokens: full chunks, then a last partial one.
    public static func chunkRanges(count: Int, chunkTokens: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: chunkTokens).map { $0..<min($0 + chunkTokens, count) }
    }

    /// `h_1 ... h_n` for the chunks of `tokens`.
    public static func hashes(root: Hash32, tokens: [Int32], chunkTokens: Int) -> [Hash32] {
        var parent = root
        return chunkRanges(count: tokens.count, chunkTokens: chunkTokens).map {
            parent = next(parent, tokens: tokens[$0])
            return parent
        }
    }
}
