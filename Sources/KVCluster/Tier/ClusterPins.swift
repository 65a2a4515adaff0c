import KVRESP
import KVStore

/// What a pin needs to find a context's keys in the cluster: `kvs:1:x:<context id>` holds the
/// namespace root, the token count and the chain of prefix hashes (the context id is the last).
///
///     0  root (32 bytes)   32  tokens u64 LE   40  chain: 32 bytes per chunk
///
/// The record only says which keys a pin or unpin touches; no bytes are ever read through it.
public struct ContextChainRecord: Sendable, Equatable {
    public var root: Hash32
    public var tokens: Int
    public var chain: [Hash32]

    public init(root: Hash32, tokens: Int, chain: [Hash32]) {
        self.root = root
        self.tokens = tokens
        self.chain = chain
    }

    public var id: Hash32? { chain.last }

    public func encoded() -> [UInt8] {
        var out = root.bytes
        withUnsafeBytes(of: UInt64(tokens).littleEndian) { out.append(contentsOf: $0) }
        for h in chain { out += h.bytes }
        return out
    }

    /// Nil unless the value is a root, a token count and a whole, non-empty chain ending at `id`
    /// with no more chunks than tokens.
    public static func parse(_ value: [UInt8], id: Hash32) -> ContextChainRecord? {
        guard value.count >= 72, (value.count - 40) % 32 == 0, let root = Hash32(bytes: Array(value[0..<32])) else { return nil }
        let tokens = value[32..<40].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let chain = stride(from: 40, to: value.count, by: 32).compactMap { Hash32(bytes: Array(value[$0..<($0 + 32)])) }
        guard chain.last == id, tokens >= UInt64(chain.count), tokens <= UInt64(chain.count) << 32 else { return nil }
        return ContextChainRecord(root: root, tokens: Int(tokens), chain: chain)
    }
}

extension TierKeys {
    /// A context's chain record (`ContextChainRecord`).
    public static func context(id: Hash32) -> [UInt8] { Array("\(prefix):x:\(id.hex)".utf8) }
    /// Pinned contexts: a hash from context id (hex) to "1". Never given an expiry.
    public static let pins = Array("\(prefix):pins".utf8)
}

/// Pins in the cluster tier. Capacity belongs to Redis; what kvstore controls is which keys carry
/// an expiry. With `ttlSeconds` set, every chunk, partials set and chain record is written with
/// one, so a `volatile-lru`/`volatile-lfu` policy evicts only those; `pin` makes a context's keys
/// persistent (`PERSIST`), so that policy never evicts them, and `unpin` gives them the TTL back,
/// except for keys another pinned context shares (a common prefix). Under `allkeys-*` policies
/// every key is evictable and a pin protects nothing (`policyWarnings` says so).
extension RedisChunkTier {
    /// `EXPIRE key ttl GT`: a later expiry for a key that has one; a persistent (pinned) key is left alone.
    func extendExpiry(_ key: [UInt8]) -> RedisCluster.Command {
        RedisCluster.Command("EXPIRE", key: key, [Array(String(ttlSeconds ?? 0).utf8), Array("GT".utf8)])
    }

    /// Writes the chain record (with the TTL, or a later expiry for one already stored).
    func contextRecordCommands(_ record: ContextChainRecord) -> [RedisCluster.Command] {
        guard let id = record.id else { return [] }
        let key = TierKeys.context(id: id)
        var set = RedisCluster.Command("SET", key: key, [record.encoded(), Array("NX".utf8)])
        guard let ttl = ttlSeconds else { return [set] }
        set.args += [[Array("EX".utf8)], [Array(String(ttl).utf8)]]
        return [set, extendExpiry(key)]
    }

    /// The chain record of a stored context; nil when absent (never stored through a tier that
    /// writes records, or evicted) or unreadable.
    public func contextRecord(_ id: Hash32) throws -> ContextChainRecord? {
        guard let value = try cluster.call(RedisCluster.Command("GET", key: TierKeys.context(id: id))).bytes else { return nil }
        return ContextChainRecord.parse(value, id: id)
    }

    /// Every key of a context: its chunks at each level the namespace was written at, the partials
    /// set its last chunk is listed in (when partial), and its chain record.
    func keys(of record: ContextChainRecord) throws -> [[UInt8]] {
        let levels = try storedLevels(root: record.root)
        var keys = record.chain.flatMap { h in levels.map { TierKeys.chunk(prefix: h, level: $0) } }
        if record.tokens % chunkTokens != 0 {
            keys.append(TierKeys.partials(parent: record.chain.count > 1 ? record.chain[record.chain.count - 2] : record.root))
        }
        if let id = record.id { keys.append(TierKeys.context(id: id)) }
        return keys
    }

    public struct PinReport: Sendable, Equatable, Codable {
        public var context: String
        /// Keys of the context found in the cluster (each chunk level, partials set, chain record).
        public var keysFound: Int
        /// Keys whose expiry changed (made persistent by pin; given the TTL back by unpin).
        public var keysChanged: Int
    }

    /// Pins a context in the cluster: its keys lose their expiry (`PERSIST`). Keys evicted before
    /// the pin stay gone: the pin keeps the prefix that is still whole.
    @discardableResult
    public func pin(context id: Hash32) throws -> PinReport {
        guard let record = try contextRecord(id) else { throw StoreError.notFound("no context \(id.hex) in the cluster") }
        let keys = try keys(of: record)
        let replies = try cluster.run([RedisCluster.Command("HSET", key: TierKeys.pins, [Array(id.hex.utf8), Array("1".utf8)])]
                                      + keys.flatMap { [RedisCluster.Command("EXISTS", key: $0), RedisCluster.Command("PERSIST", key: $0)] }).replies
        if let e = replies.first(where: { $0.errorMessage != nil })?.errorMessage { throw ClusterError.server(e) }
        return PinReport(context: id.hex, keysFound: count(replies.dropFirst(), every: 2, from: 0),
                         keysChanged: count(replies.dropFirst(), every: 2, from: 1))
    }

    /// Unpins a context: its keys get the TTL again (without a TTL they stay persistent), except
    /// those another pinned context also uses. Throws notFound when it was not pinned.
    @discardableResult
    public func unpin(context id: Hash32) throws -> PinReport {
        let removed = try cluster.call(RedisCluster.Command("HDEL", key: TierKeys.pins, [Array(id.hex.utf8)]))
        guard removed == .integer(1) else { throw StoreError.notFound("context \(id.hex.prefix(16)) is not pinned in the cluster") }
        guard let record = try contextRecord(id) else { return PinReport(context: id.hex, keysFound: 0, keysChanged: 0) }
        var shared = Set<[UInt8]>()
        for other in try pins() where other != id {
            if let r = try contextRecord(other) { shared.formUnion(try keys(of: r)) }
        }
        let keys = try keys(of: record).filter { !shared.contains($0) }
        guard let ttl = ttlSeconds else { return PinReport(context: id.hex, keysFound: keys.count, keysChanged: 0) }
        let replies = try cluster.run(keys.map { RedisCluster.Command("EXPIRE", key: $0, [Array(String(ttl).utf8)]) }).replies
        if let e = replies.first(where: { $0.errorMessage != nil })?.errorMessage { throw ClusterError.server(e) }
        let changed = count(replies[...], every: 1, from: 0)
        return PinReport(context: id.hex, keysFound: changed, keysChanged: changed)
    }

    /// Context ids pinned in the cluster.
    public func pins() throws -> [Hash32] {
        guard case .array(let items) = try cluster.call(RedisCluster.Command("HKEYS", key: TierKeys.pins)) else { return [] }
        return items.compactMap { $0.string.flatMap(Hash32.init(hex:)) }.sorted { $0.hex < $1.hex }
    }

    /// What the masters' `maxmemory-policy` means for expiries and pins, as warnings (empty when
    /// they fit). `CONFIG GET` may be refused by ACLs: that is said, not thrown.
    public func policyWarnings() -> [String] {
        let policies: [String: String]
        do { policies = try cluster.configGet("maxmemory-policy") } catch {
            return ["cannot read maxmemory-policy (\(error)); pins are kept only under a volatile-* policy with --cluster-ttl"]
        }
        var out: [String] = []
        for (node, policy) in policies.sorted(by: { $0.key < $1.key }) {
            switch (policy.hasPrefix("volatile-"), ttlSeconds != nil) {
            case (true, false): out.append("\(node): maxmemory-policy \(policy) evicts only keys with an expiry and kvstore writes none without --cluster-ttl: nothing it writes will be evicted")
            case (false, true) where policy.hasPrefix("allkeys-"): out.append("\(node): maxmemory-policy \(policy) evicts any key: pins cannot be protected (use volatile-lru or volatile-lfu)")
            default: break
            }
        }
        return out
    }

    private func count(_ replies: ArraySlice<RESPValue>, every stride: Int, from offset: Int) -> Int {
        var n = 0
        for (k, r) in replies.enumerated() where k % stride == offset { if r == .integer(1) { n += 1 } }
        return n
    }
}
