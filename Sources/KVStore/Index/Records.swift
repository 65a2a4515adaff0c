import KVCodec

/// One stored encoding of a chunk.
public struct LevelBlob: Sendable, Equatable {
    public var level: UInt8
    public var blob: Hash32
    public var bytes: Int
}

/// Index value for a prefix hash: where the chunk's encodings are and how it is used.
public struct ChunkRecord: Sendable, Equatable {
    public var parent: Hash32
    /// Index of the chunk in its chain (0 = first).
    public var position: Int
    public var tokens: Int
    public var created: Int
    public var lastAccess: Int
    /// Contexts whose chain includes this chunk.
    public var refs: Int
    public var levels: [LevelBlob]

    public var storedBytes: Int { levels.reduce(0) { $0 + $1.bytes } }

    public func blob(level: UInt8) -> LevelBlob? { levels.first { $0.level == level } }
    /// The highest-quality encoding stored (lowest level number).
    public var best: LevelBlob? { levels.min { $0.level < $1.level } }

    static let version: UInt8 = 1

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 72 + levels.count * 41)
        w.append(Self.version)
        w.append(parent.bytes)
        w.append(UInt32(position))
        w.append(UInt32(tokens))
        w.append(UInt64(created))
        w.append(UInt64(lastAccess))
        w.append(UInt32(refs))
        w.append(UInt8(levels.count))
        for l in levels {
            w.append(l.level)
            w.append(l.blob.bytes)
            w.append(UInt64(l.bytes))
        }
        return w.bytes
    }

    init(parent: Hash32, position: Int, tokens: Int, created: Int, lastAccess: Int, refs: Int, levels: [LevelBlob]) {
        self.parent = parent
        self.position = position
        self.tokens = tokens
        self.created = created
        self.lastAccess = lastAccess
        self.refs = refs
        self.levels = levels
    }

    init(decoding bytes: [UInt8]) throws {
        guard bytes.count >= 62, bytes[0] == Self.version else { throw StoreError.index("unreadable chunk record") }
        var r = RecordReader(bytes)
        r.skip(1)
        parent = r.hash()
        position = Int(r.u32()); tokens = Int(r.u32())
        created = Int(r.u64()); lastAccess = Int(r.u64())
        refs = Int(r.u32())
        let n = Int(r.u8())
        guard r.remaining == n * 41 else { throw StoreError.index("chunk record of \(bytes.count) bytes lists \(n) levels") }
        levels = (0..<n).map { _ in LevelBlob(level: r.u8(), blob: r.hash(), bytes: Int(r.u64())) }
    }
}

/// Index value for a blob id.
struct BlobRecord: Equatable {
    var bytes: Int
    var refs: Int

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 12)
        w.append(UInt64(bytes))
        w.append(UInt32(refs))
        return w.bytes
    }

    init(bytes: Int, refs: Int) {
        self.bytes = bytes
        self.refs = refs
    }

    init(decoding raw: [UInt8]) throws {
        guard raw.count == 12 else { throw StoreError.index("unreadable blob record") }
        var r = RecordReader(raw)
        bytes = Int(r.u64())
        refs = Int(r.u32())
    }
}

/// Index value for a stored context (one `put`).
public struct ContextRecord: Sendable, Equatable {
    public var namespace: Hash32
    public var tokens: Int
    public var created: Int
    public var name: String
    public var chain: [Hash32]

    static let version: UInt8 = 1

    func encoded() -> [UInt8] {
        var w = ByteWriter(capacity: 64 + chain.count * 32)
        w.append(Self.version)
        w.append(namespace.bytes)
        w.append(UInt32(tokens))
        w.append(UInt64(created))
        let n = Array(name.utf8)
        w.append(UInt16(n.count))
        w.append(n)
        w.append(UInt32(chain.count))
        for h in chain { w.append(h.bytes) }
        return w.bytes
    }

    init(namespace: Hash32, tokens: Int, created: Int, name: String, chain: [Hash32]) {
        self.namespace = namespace
        self.tokens = tokens
        self.created = created
        self.name = name
        self.chain = chain
    }

    init(decoding bytes: [UInt8]) throws {
        guard bytes.count >= 51, bytes[0] == Self.version else { throw StoreError.index("unreadable context record") }
        var r = RecordReader(bytes)
        r.skip(1)
        namespace = r.hash()
        tokens = Int(r.u32())
        created = Int(r.u64())
        let nameLength = Int(r.u16())
        guard r.remaining >= nameLength + 4 else { throw StoreError.index("truncated context record") }
        name = String(decoding: r.take(nameLength), as: UTF8.self)
        let count = Int(r.u32())
        guard r.remaining == count * 32 else { throw StoreError.index("context record chain length mismatch") }
        chain = (0..<count).map { _ in r.hash() }
    }
}

/// Reads records whose total length the caller has checked.
struct RecordReader {
    let bytes: [UInt8]
    var offset = 0
    init(_ b: [UInt8]) { bytes = b }
    var remaining: Int { bytes.count - offset }
    mutating func skip(_ n: Int) { offset += n }
    mutating func take(_ n: Int) -> ArraySlice<UInt8> { defer { offset += n }; return bytes[offset..<offset + n] }
    mutating func int<T: FixedWidthInteger>(_: T.Type) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v |= T(bytes[offset + i]) << (8 * i) }
        offset += MemoryLayout<T>.size
        return v
    }
    mutating func u8() -> UInt8 { int(UInt8.self) }
    mutating func u16() -> UInt16 { int(UInt16.self) }
    mutating func u32() -> UInt32 { int(UInt32.self) }
    mutating func u64() -> UInt64 { int(UInt64.self) }
    mutating func hash() -> Hash32 { Hash32(bytes: Array(take(32)))! }
}
