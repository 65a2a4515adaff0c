import Crypto
import KVCodec

/// One stored piece of a segment (segments are kept in `chunkTokens`-token pieces, like contexts).
public struct SegmentPiece: Sendable, Equatable {
    public var tokens: Int
    public var levels: [LevelBlob]
    public var best: LevelBlob? { levels.min { $0.level < $1.level } }
}

/// Index value of an independently encoded segment (APE / CacheBlend reuse): where its KV is, the
/// position it was encoded at and the RoPE configuration needed to move it elsewhere.
public struct SegmentRecord: Sendable, Equatable {
    public var namespace: Hash32
    /// Chain hash of the shared prefix the segment was encoded after, nil when encoded alone.
    public var prefix: Hash32?
    /// Position of the segment's first token when it was encoded.
    public var start: Int
    public var tokens: Int
    public var rope: RoPEConfig
    public var created: Int
    public var lastAccess: Int
    public var pieces: [SegmentPiece]

    public var storedBytes: Int { pieces.reduce(0) { $0 + $1.levels.reduce(0) { $0 + $1.bytes } } }

    static let version: UInt8 = 1

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 128 + pieces.count * 48)
        w.append(Self.version)
        w.append(namespace.bytes)
        w.append(UInt8(prefix == nil ? 0 : 1))
        w.append(prefix?.bytes ?? [UInt8](repeating: 0, count: 32))
        w.append(UInt32(start))
        w.append(UInt32(tokens))
        w.append(rope.theta.bitPattern)
        w.append(UInt32(rope.rotaryDim))
        w.append(UInt8(rope.pairs == .adjacent ? 0 : 1))
        w.append(UInt64(created))
        w.append(UInt64(lastAccess))
        w.append(UInt32(pieces.count))
        for p in pieces {
            w.append(UInt32(p.tokens))
            w.append(UInt8(p.levels.count))
            for l in p.levels {
                w.append(l.level)
                w.append(l.blob.bytes)
                w.append(UInt64(l.bytes))
            }
        }
        return w.bytes
    }

    init(namespace: Hash32, prefix: Hash32?, start: Int, tokens: Int, rope: RoPEConfig, created: Int, lastAccess: Int, pieces: [SegmentPiece]) {
        self.namespace = namespace
        self.prefix = prefix
        self.start = start
        self.tokens = tokens
        self.rope = rope
        self.created = created
        self.lastAccess = lastAccess
        self.pieces = pieces
    }

    static let fixedBytes = 1 + 32 + 1 + 32 + 4 + 4 + 8 + 4 + 1 + 8 + 8 + 4

    init(decoding bytes: [UInt8]) throws {
        guard bytes.count >= Self.fixedBytes, bytes[0] == Self.version else { throw StoreError.index("unreadable segment record") }
        var r = RecordReader(bytes)
        r.skip(1)
        namespace = r.hash()
        let hasPrefix = r.u8() == 1
        let p = r.hash()
        prefix = hasPrefix ? p : nil
        start = Int(r.u32())
        tokens = Int(r.u32())
        let theta = Double(bitPattern: r.u64())
        let rotaryDim = Int(r.u32())
        let pairs: RoPEPairs = r.u8() == 0 ? .adjacent : .split
        rope = RoPEConfig(theta: theta, rotaryDim: rotaryDim, pairs: pairs)
        created = Int(r.u64())
        lastAccess = Int(r.u64())
        let count = Int(r.u32())
        var pieces: [SegmentPiece] = []
        for _ in 0..<count {
            guard r.remaining >= 5 else { throw StoreError.index("truncated segment record") }
            let n = Int(r.u32())
            let levels = Int(r.u8())
            guard r.remaining >= levels * 41 else { throw StoreError.index("truncated segment record") }
            pieces.append(SegmentPiece(tokens: n, levels: (0..<levels).map { _ in LevelBlob(level: r.u8(), blob: r.hash(), bytes: Int(r.u64())) }))
        }
        guard r.remaining == 0, pieces.reduce(0, { $0 + $1.tokens }) == tokens else {
            throw StoreError.index("segment record pieces do not add up to its \(tokens) tokens")
        }
        self.pieces = pieces
    }
}

/// Keys of independently encoded segments: the content and the context they were encoded in
/// (namespace and shared prefix), never the position, so a segment is found wherever it is reused.
/// `SHA-256("kvstore-segment-v1" || namespace root || 0 | 1 || prefix hash || u32le count || tokens as u32le)`.
public enum SegmentKey {
    static let tag = Array("kvstore-segment-v1".utf8)

    public static func make(namespace: Namespace, prefix: Hash32?, tokens: [Int32]) -> Hash32 {
        var h = SHA256()
        h.update(data: tag)
        h.update(data: namespace.root.bytes)
        h.update(data: [prefix == nil ? 0 : 1])
        if let prefix { h.update(data: prefix.bytes) }
        withUnsafeBytes(of: UInt32(tokens.count).littleEndian) { h.update(bufferPointer: $0) }
        for t in tokens { withUnsafeBytes(of: UInt32(bitPattern: t).littleEndian) { h.update(bufferPointer: $0) } }
        return Hash32(digest: h.finalize())
    }

    /// The chain hash of a shared prefix (equal to its context id when stored), nil for none.
    public static func prefixHash(_ tokens: [Int32], namespace: Namespace) -> Hash32? {
        tokens.isEmpty ? nil : PrefixChain.hashes(root: namespace.root, tokens: tokens, chunkTokens: namespace.chunkTokens).last
    }
}
