import KVRESP
import KVCodec
import KVStore

/// The value stored under one cluster key (schemas/cluster-tier.md): a 48-byte header, then the
/// chunk container bytes. The header names the payload's SHA-256 (its blob id); a reader checks the
/// header and the container's own checksum and treats any mismatch (torn, truncated or foreign
/// value) as a miss.
///
///     0  magic "KVTR"   4  version u8 (1)   5  level u8   6  reserved u16 (0)
///     8  payload length u64 LE   16  payload SHA-256 (32 bytes)   48  payload
public struct TierRecordHeader: Sendable, Equatable {
    public static let size = 48
    public static let magic: [UInt8] = Array("KVTR".utf8)
    public static let version: UInt8 = 1

    public var level: UInt8
    public var length: Int
    public var sha256: Hash32

    public init(level: UInt8, length: Int, sha256: Hash32) {
        self.level = level
        self.length = length
        self.sha256 = sha256
    }

    public init(payload: [UInt8], level: UInt8) {
        self.init(level: level, length: payload.count, sha256: Hash32.sha256(payload))
    }

    public func encoded() -> [UInt8] {
        var out = Self.magic
        out.append(Self.version)
        out.append(level)
        out += [0, 0]
        withUnsafeBytes(of: UInt64(length).littleEndian) { out.append(contentsOf: $0) }
        out += sha256.bytes
        return out
    }

    /// Parses the first 48 bytes; nil for anything that is not a version-1 record header
    /// (including lengths beyond `maxPayload`).
    public static func parse<C: Collection>(_ bytes: C, maxPayload: Int = 1 << 31) -> TierRecordHeader? where C.Element == UInt8 {
        let b = Array(bytes.prefix(size))
        guard b.count == size, Array(b[0..<4]) == magic, b[4] == version, b[6] == 0, b[7] == 0 else { return nil }
        let length = b[8..<16].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard length <= UInt64(maxPayload), let sha = Hash32(bytes: Array(b[16..<48])) else { return nil }
        return TierRecordHeader(level: b[5], length: Int(length), sha256: sha)
    }

    /// The payload of a whole stored value, or nil unless the header parses, its level and length
    /// match, and the payload is a chunk container whose own checksum (XXH64 over every byte,
    /// what the decoder checks) holds. The SHA-256 in the header names the blob (the embedded
    /// tier's id) and is not recomputed here: at about 0.5 GB/s on this CPU it would cap reads at
    /// half of what Redis serves, and it binds nothing a writer could not forge along with the
    /// payload, since keys are prefix hashes, not content hashes.
    public static func verifiedPayload(_ value: [UInt8], level: UInt8) -> [UInt8]? {
        guard let h = parse(value), h.level == level, value.count - size == h.length else { return nil }
        let ok = value.withUnsafeBytes { raw -> Bool in
            guard let c = try? ChunkContainer.header(of: UnsafeRawBufferPointer(rebasing: raw[size...])) else { return false }
            return c.level == level
        }
        return ok ? Array(value[size...]) : nil
    }
}

/// Key names (schemas/cluster-tier.md). No hash tags: a context's chunks spread over every master
/// by their own prefix hash, so memory and stream bandwidth scale with the shards and no long
/// context pins one node; a lookup still costs one pipelined round per master, all in parallel.
public enum TierKeys {
    public static let prefix = "kvs:1"

    /// The record of one chunk encoding: `kvs:1:c:<prefix hash>:<level>`. The prefix hash commits
    /// to the namespace root (h_0 = SHA-256 of the namespace's fields, tenant salt included), so
    /// this is a key per (namespace, prefix hash, level) and tenants are apart by construction,
    /// exactly as in the embedded index, which keys chunk records by prefix hash alone.
    public static func chunk(prefix: Hash32, level: UInt8) -> [UInt8] {
        chunkStem(prefix: prefix) + levelSuffix(level)
    }

    /// The level at the end of a chunk key, after its stem.
    static func levelSuffix(_ level: UInt8) -> [UInt8] { Array(String(level).utf8) }

    /// `kvs:1:c:<prefix hash>:`, the part of a chunk key shared by its levels.
    static func chunkStem(prefix: Hash32) -> [UInt8] { chunkStemHead + prefix.hexASCII + [UInt8(ascii: ":")] }
    private static let chunkStemHead = Array("\(prefix):c:".utf8)

    /// The lengths of stored partial (last, short) chunks after `parent`: a set of decimal strings.
    public static func partials(parent: Hash32) -> [UInt8] {
        Array("\(Self.prefix):p:\(parent.hex)".utf8)
    }

    /// The levels any chunk of a namespace was written at: a set of decimal strings, so lookups
    /// probe only those (an evicted or stale set only widens the probe to every level).
    public static func levels(root: Hash32) -> [UInt8] {
        Array("\(Self.prefix):l:\(root.hex)".utf8)
    }

    /// Every namespace with stored chunks: a hash from namespace root (hex) to its JSON, as the
    /// embedded index's `namespaces` table (readers filter by tenant salt as they do there).
    public static let namespaces = Array("\(prefix):namespaces".utf8)
}
