import Foundation
import KVCodec
import KVRESP
import KVStore
import KVTensor
import Synchronization

/// The Redis Cluster tier (schemas/cluster-tier.md): one key per (namespace, prefix hash, level)
/// holding a record header and the container bytes, written with `SET … NX`. Capacity and
/// eviction belong to Redis (`maxmemory` + an LRU/LFU policy); a chunk evicted from the middle of
/// a chain shortens later matches and never mixes data, since each key commits to its whole prefix.
public final class RedisChunkTier: ChunkTier, Sendable {
    public let cluster: RedisCluster
    public let chunkTokens: Int
    /// After a write, `WAIT` for this many replicas per master (0: do not wait).
    public let waitReplicas: Int
    public let waitTimeoutMs: Int
    /// Levels a lookup probes for each chunk.
    public let probeLevels: [UInt8]
    /// Expiry of unpinned keys (`--cluster-ttl`), so `volatile-*` eviction policies evict only
    /// them and pinned contexts (keys made persistent by `pin`) stay; nil: keys never expire.
    /// Writes and reads push an expiry further out (`EXPIRE … GT`, which never touches a
    /// persistent key); see ClusterPins.swift.
    public let ttlSeconds: Int?

    public struct Counters: Sendable, Equatable {
        public var keysWritten = 0
        public var keysAlreadyStored = 0
        /// Writes Redis refused with OOM (maxmemory reached, policy noeviction): skipped, not failed.
        public var writesSkippedFull = 0
        /// Writes acknowledged by fewer replicas than `waitReplicas` within the timeout.
        public var writesUnderReplicated = 0
        public var chunkHits = 0
        public var chunkMisses = 0
        /// Values whose record header or container checksum did not match: treated as misses.
        public var corruptValues = 0
    }
    private let counters = Mutex(Counters())
    private let namespaceCache = Mutex<(at: ContinuousClock.Instant, list: [Namespace])?>(nil)
    /// Levels written per namespace root, as last read (at most a second old).
    private let levelCache = Mutex<[Hash32: (at: ContinuousClock.Instant, levels: [UInt8])]>([:])

    public init(cluster: RedisCluster, chunkTokens: Int, waitReplicas: Int = 0, waitTimeoutMs: Int = 1000,
                probeLevels: [UInt8] = Array(CodecLevel.all), ttlSeconds: Int? = nil) {
        self.cluster = cluster
        self.ttlSeconds = ttlSeconds
        self.chunkTokens = chunkTokens
        self.waitReplicas = waitReplicas
        self.waitTimeoutMs = waitTimeoutMs
        self.probeLevels = probeLevels
    }

    public var stats: Counters { counters.withLock { $0 } }

    // MARK: write

    public func storeContext(_ encoded: EncodedContext, name: String) throws -> PutReport {
        try commit(namespace: encoded.namespace, tokens: encoded.context.tokens, levels: encoded.levels,
                   inputBytes: encoded.context.kv.bytes.count) { _, range, level in try encoded.encode(tokens: range, level: level) }.report
    }

    /// What `commit` did: the put report, and the chunk encodings `bytes` could not give (skipped).
    public struct Commit: Sendable {
        public var report: PutReport
        public var unavailable: Int
    }

    /// Stores a context's chunks at `levels`, their container bytes given by `bytes(index, token
    /// range, level)` (nil: not available, skipped and counted in `unavailable`; lookups then stop
    /// before that chunk). One round first sees what is stored, so only missing keys are asked for
    /// and sent. Chunk bytes come from an `EncodedContext` (a put) or a local store's blob files
    /// (cache mode), never from an encoding of this tier's own.
    public func commit(namespace: Namespace, tokens: [Int32], levels: [UInt8], inputBytes: Int,
                       bytes: (Int, Range<Int>, UInt8) throws -> [UInt8]?) throws -> Commit {
        guard !tokens.isEmpty else { throw StoreError.invalidInput("context holds no tokens") }
        guard namespace.chunkTokens == chunkTokens, namespace.adapter == nil else {
            throw StoreError.invalidInput("the cluster tier stores plain \(chunkTokens)-token namespaces (no adapters)")
        }
        let levels = Array(Set(levels)).sorted()
        guard !levels.isEmpty else { throw StoreError.invalidInput("no levels requested") }

        let root = namespace.root
        let ranges = PrefixChain.chunkRanges(count: tokens.count, chunkTokens: chunkTokens)
        let chain = PrefixChain.hashes(root: root, tokens: tokens, chunkTokens: chunkTokens)
        let keys = chain.indices.flatMap { i in levels.map { TierKeys.chunk(prefix: chain[i], level: $0) } }
        let present = try cluster.run(keys.map { RedisCluster.Command("STRLEN", key: $0) }).replies.map {
            if case .integer(let n) = $0 { return Int(n) }
            return 0
        }

        var encoded: [EncodedChunk] = []
        var byLevel: [String: Int] = [:]
        var storedBytes = 0
        var deduplicated = 0
        var unavailable = 0
        var refresh: [[UInt8]] = []
        for i in chain.indices {
            var missingAny = false
            for (j, level) in levels.enumerated() {
                let n = present[i * levels.count + j] - TierRecordHeader.size
                if n > 0 {
                    if ttlSeconds != nil { refresh.append(keys[i * levels.count + j]) }
                    storedBytes += n
                    byLevel[String(level), default: 0] += n
                    continue
                }
                missingAny = true
                guard let b = try bytes(i, ranges[i], level) else { unavailable += 1; continue }
                encoded.append(EncodedChunk(prefix: chain[i], level: level, bytes: b))
                storedBytes += b.count
                byLevel[String(level), default: 0] += b.count
            }
            if !missingAny { deduplicated += 1 }
        }
        var extra = refresh.map(extendExpiry)
        if let last = ranges.last, last.count < chunkTokens {
            let parent = chain.count > 1 ? chain[chain.count - 2] : root
            let key = TierKeys.partials(parent: parent)
            extra.append(RedisCluster.Command("SADD", key: key, [Array(String(last.count).utf8)]))
            if let ttl = ttlSeconds {
                // A new set gets the expiry (NX), an old one a later expiry (GT). NX also sets it on a
                // set a pin made persistent: a pinned context's partial last chunk can then be
                // evicted (a shorter match) when another context ends mid-chunk after the same parent.
                extra.append(RedisCluster.Command("EXPIRE", key: key, [Array(String(ttl).utf8), Array("NX".utf8)]))
                extra.append(extendExpiry(key))
            }
        }
        extra += contextRecordCommands(ContextChainRecord(root: root, tokens: tokens.count, chain: chain))
        let json = Array(try JSONEncoder().encode(namespace))
        extra.append(RedisCluster.Command("HSETNX", key: TierKeys.namespaces, [Array(root.hex.utf8), json]))
        extra.append(RedisCluster.Command("SADD", key: TierKeys.levels(root: root), levels.map { Array(String($0).utf8) }))
        let outcome = try writeChunks(encoded, extra: extra)
        namespaceCache.withLock { $0 = nil }
        levelCache.withLock { _ = $0.removeValue(forKey: root) }
        let report = PutReport(tierContextID: chain.last!.hex, tokens: tokens.count, chunks: chain.count,
                               deduplicatedChunks: deduplicated, blobsWritten: outcome.written, bytesWritten: outcome.bytesWritten,
                               storedBytes: storedBytes, storedBytesByLevel: byLevel, inputBytes: inputBytes,
                               alreadyStored: deduplicated == chain.count)
        return Commit(report: report, unavailable: unavailable)
    }

    /// One chunk encoding for `writeChunks`.
    public struct EncodedChunk: Sendable {
        public var prefix: Hash32
        public var level: UInt8
        public var bytes: [UInt8]
        public init(prefix: Hash32, level: UInt8, bytes: [UInt8]) { self.prefix = prefix; self.level = level; self.bytes = bytes }
    }

    public struct WriteOutcome: Sendable, Equatable {
        public var written = 0
        public var bytesWritten = 0
        public var alreadyStored = 0
        public var skippedFull = 0
    }

    /// Stores container bytes under (prefix hash, level) with `SET … NX` (idempotent), plus the
    /// `extra` bookkeeping commands, in pipelined rounds of about 64 MiB (one batch per master
    /// each, in parallel), each followed by `WAIT` when `waitReplicas` is set. OOM ("tier full")
    /// skips the write and counts it; any other server error is thrown after the round.
    public func writeChunks(_ chunks: [EncodedChunk], extra: [RedisCluster.Command] = []) throws -> WriteOutcome {
        var commands: [RedisCluster.Command] = []
        let expiryArgs: [[[UInt8]]] = ttlSeconds.map { [[Array("EX".utf8)], [Array(String($0).utf8)]] } ?? []
        var sizes: [Int] = []
        for c in chunks {
            let key = TierKeys.chunk(prefix: c.prefix, level: c.level)
            let header = TierRecordHeader(payload: c.bytes, level: c.level).encoded()
            commands.append(RedisCluster.Command(key: key, args: [[Array("SET".utf8)], [key], [header, c.bytes], [Array("NX".utf8)]] + expiryArgs))
            sizes.append(c.bytes.count)
        }
        commands += extra
        sizes += Array(repeating: -1, count: extra.count)
        let wait: [[UInt8]] = waitReplicas > 0 ? [Array("WAIT".utf8), Array(String(waitReplicas).utf8), Array(String(waitTimeoutMs).utf8)] : []
        var out = WriteOutcome()
        var under = 0
        var firstError: String?
        var start = 0
        while start < commands.count {
            var end = start, batchBytes = 0
            while end < commands.count, end == start || batchBytes < 64 << 20 { batchBytes += max(0, sizes[end]); end += 1 }
            let (replies, tails) = try cluster.run(Array(commands[start..<end]), perNodeTail: wait.isEmpty ? [] : [wait])
            for (k, reply) in replies.enumerated() {
                let size = sizes[start + k]
                switch reply {
                case .simple where size >= 0: out.written += 1; out.bytesWritten += size
                case .null where size >= 0: out.alreadyStored += 1
                case .error(let e) where e.hasPrefix("OOM"): if size >= 0 { out.skippedFull += 1 }
                case .error(let e): firstError = firstError ?? e
                default: break
                }
            }
            for reply in tails.values { if case .integer(let n) = reply.last, n < waitReplicas { under += 1 } }
            start = end
        }
        counters.withLock {
            $0.keysWritten += out.written; $0.keysAlreadyStored += out.alreadyStored
            $0.writesSkippedFull += out.skippedFull; $0.writesUnderReplicated += under
        }
        if let firstError { throw ClusterError.server(firstError) }
        return out
    }

    // MARK: read

    public func namespaces() throws -> [Namespace] {
        if let c = namespaceCache.withLock({ $0 }), ContinuousClock.now - c.at < .seconds(1) { return c.list }
        let reply = try cluster.call(RedisCluster.Command("HGETALL", key: TierKeys.namespaces))
        guard case .array(let items) = reply else { throw ClusterError.badReply("HGETALL: \(reply)") }
        var list: [Namespace] = []
        for pair in stride(from: 1, to: items.count, by: 2) {
            // An unreadable entry is skipped: it can only hide a namespace, never show a wrong one.
            if let b = items[pair].bytes, let n = try? JSONDecoder().decode(Namespace.self, from: Data(b)),
               items[pair - 1].string == n.root.hex { list.append(n) }
        }
        namespaceCache.withLock { $0 = (ContinuousClock.now, list) }
        return list
    }

    /// One pipelined round (one batch per master, all in parallel) reads the record headers of
    /// every chunk of the query at every level the namespace was written at; the match ends at the
    /// first chunk with none. The same round asks for the stored partial lengths after the last
    /// chunk's parent (the usual miss: a stored prefix plus new tokens), so only a miss elsewhere,
    /// or a stored partial to check, costs another round.
    public func longestPrefix(_ tokens: [Int32], namespace: Namespace) throws -> PrefixMatch {
        guard !tokens.isEmpty, namespace.chunkTokens == chunkTokens else { return .none }
        let root = namespace.root
        let ranges = PrefixChain.chunkRanges(count: tokens.count, chunkTokens: chunkTokens)
        let chain = PrefixChain.hashes(root: root, tokens: tokens, chunkTokens: chunkTokens)
        let levels = try storedLevels(root: root)
        let lastParent = chain.count > 1 ? chain[chain.count - 2] : root
        let (headers, extra) = try probe(chain, levels: levels,
                                         extra: [RedisCluster.Command("SMEMBERS", key: TierKeys.partials(parent: lastParent))])
        var chunks: [MatchedChunk] = []
        for i in chain.indices {
            guard !headers[i].isEmpty else { break }
            let parent = i == 0 ? root : chain[i - 1]
            chunks.append(MatchedChunk(tierHash: chain[i], record: ChunkRecord(tierChunk: parent, position: i, tokens: ranges[i].count, levels: headers[i]), range: ranges[i]))
        }
        if chunks.count < chain.count {
            let i = chunks.count
            let parent = i == 0 ? root : chain[i - 1]
            let lengths = i == chain.count - 1 ? extra[0] : try cluster.call(RedisCluster.Command("SMEMBERS", key: TierKeys.partials(parent: parent)))
            if let partial = try bestPartial(tokens: tokens, parent: parent, position: ranges[i].lowerBound, below: ranges[i].count,
                                             levels: levels, stored: lengths) {
                chunks.append(partial)
            }
        }
        counters.withLock { $0.chunkHits += chunks.count; $0.chunkMisses += chunks.count < chain.count ? 1 : 0 }
        return PrefixMatch(chunks: chunks)
    }

    /// The probed levels a namespace was ever written at (`SMEMBERS`, cached for a second); every
    /// probed level when the set is absent (evicted, or written before the set existed).
    func storedLevels(root: Hash32) throws -> [UInt8] {
        if let c = levelCache.withLock({ $0[root] }), ContinuousClock.now - c.at < .seconds(1) { return c.levels }
        let reply = try cluster.call(RedisCluster.Command("SMEMBERS", key: TierKeys.levels(root: root)))
        var levels = probeLevels
        if case .array(let items) = reply {
            let written = Set(items.compactMap { $0.string.flatMap { UInt8($0) } })
            if !written.isEmpty { levels = probeLevels.filter(written.contains) }
        }
        levelCache.withLock { [levels] cache in
            if cache.count >= 4096 { cache.removeAll() }   // namespaces are few; a flood of them is not kept
            cache[root] = (ContinuousClock.now, levels)
        }
        return levels
    }

    /// Stored levels of each (namespace, prefix hash), from the record headers (`GETRANGE 0 47`),
    /// and the replies of `extra` commands sent in the same round.
    func probe(_ keys: [Hash32], levels: [UInt8], extra: [RedisCluster.Command] = []) throws -> (headers: [[LevelBlob]], extra: [RESPValue]) {
        let name = Array("GETRANGE".utf8), zero = Array("0".utf8), last = Array(String(TierRecordHeader.size - 1).utf8)
        let suffixes = levels.map(TierKeys.levelSuffix)
        var commands: [RedisCluster.Command] = []
        commands.reserveCapacity(keys.count * levels.count + extra.count)
        for h in keys {
            let stem = TierKeys.chunkStem(prefix: h)
            for suffix in suffixes {
                let key = stem + suffix
                commands.append(RedisCluster.Command(key: key, args: [[name], [key], [zero], [last]]))
            }
        }
        let replies = try cluster.run(commands + extra).replies
        let headers: [[LevelBlob]] = keys.indices.map { i in
            levels.enumerated().compactMap { j, level -> LevelBlob? in
                guard let b = replies[i * levels.count + j].bytes, !b.isEmpty else { return nil }
                guard let h = TierRecordHeader.parse(b), h.level == level else {
                    counters.withLock { $0.corruptValues += 1 }
                    return nil
                }
                return LevelBlob(level: level, blob: h.sha256, byteCount: h.length)
            }
        }
        return (headers, Array(replies[(keys.count * levels.count)...]))
    }

    /// The longest stored partial chunk after `parent` shorter than `limit`, given the partial
    /// lengths stored there (`SMEMBERS` of its partials set).
    func bestPartial(tokens: [Int32], parent: Hash32, position: Int, below limit: Int, levels: [UInt8],
                     stored reply: RESPValue) throws -> MatchedChunk? {
        guard case .array(let items) = reply else { return nil }
        let lengths = Set(items.compactMap { $0.string.flatMap(Int.init) }).filter { $0 > 0 && $0 < limit && $0 < chunkTokens }.sorted(by: >)
        guard !lengths.isEmpty else { return nil }
        let hashes = lengths.map { PrefixChain.next(parent, tokens: tokens[position..<(position + $0)]) }
        let headers = try probe(hashes, levels: levels).headers
        for (k, n) in lengths.enumerated() where !headers[k].isEmpty {
            let position = position / chunkTokens
            return MatchedChunk(tierHash: hashes[k], record: ChunkRecord(tierChunk: parent, position: position, tokens: n, levels: headers[k]),
                                range: (position * chunkTokens)..<(position * chunkTokens + n))
        }
        return nil
    }

    public func streamBytes(_ chunk: MatchedChunk, level: UInt8) throws -> [UInt8]? {
        guard chunk.record.blob(level: level) != nil else { return nil }
        guard let payload = try fetch(prefix: chunk.hash, level: level) else { return nil }
        guard let header = try? payload.withUnsafeBytes({ try ChunkHeader.parse($0, available: payload.count - ChunkHeader.size) }),
              header.level == level, header.tokens == chunk.range.count else {
            counters.withLock { $0.corruptValues += 1 }
            return nil
        }
        return payload
    }

    /// The verified container bytes stored under (prefix hash, level); nil when absent, or when
    /// the value fails its header or container checksum check (counted: a miss, never wrong bytes).
    public func fetch(prefix: Hash32, level: UInt8) throws -> [UInt8]? {
        let key = TierKeys.chunk(prefix: prefix, level: level)
        // With a TTL, a read pushes the key's expiry out in the same round (GT: never on a pinned key).
        let replies = try cluster.run([RedisCluster.Command("GET", key: key)] + (ttlSeconds == nil ? [] : [extendExpiry(key)])).replies
        if let e = replies[0].errorMessage { throw ClusterError.server(e) }
        let reply = replies[0]
        guard let value = reply.bytes else {
            counters.withLock { $0.chunkMisses += 1 }
            return nil
        }
        guard let payload = TierRecordHeader.verifiedPayload(value, level: level) else {
            counters.withLock { $0.corruptValues += 1 }
            return nil
        }
        return payload
    }

    public func recordAccess(_ match: PrefixMatch) {}   // Redis keeps its own LRU/LFU clock per key.

    public var health: TierHealth? { TierHealth(tier: RedisCluster.tierName, outage: cluster.outage?.cause, servesLocally: false) }
}

extension RedisChunkTier {
    public var metricsText: String {
        let c = stats, k = cluster.counters
        return TierMetrics.render([
            ("kvstore_cluster_keys_written_total", "Chunk records written to the cluster (SET NX stored).", c.keysWritten),
            ("kvstore_cluster_keys_already_stored_total", "Chunk records found already stored (SET NX no-op).", c.keysAlreadyStored),
            ("kvstore_cluster_writes_skipped_full_total", "Chunk writes skipped because the cluster was full (OOM).", c.writesSkippedFull),
            ("kvstore_cluster_writes_under_replicated_total", "Write rounds acknowledged by fewer replicas than --cluster-wait-replicas.", c.writesUnderReplicated),
            ("kvstore_cluster_chunk_hits_total", "Chunks matched in the cluster by lookups.", c.chunkHits),
            ("kvstore_cluster_chunk_misses_total", "Cluster lookups that stopped before the query's end, and reads of evicted chunks.", c.chunkMisses),
            ("kvstore_cluster_corrupt_values_total", "Cluster values whose header or container checksum did not match (served as misses).", c.corruptValues),
            ("kvstore_cluster_redirects_total", "MOVED/ASK redirects followed.", k.redirects),
            ("kvstore_cluster_retries_total", "Retry rounds while nodes were down or the cluster failing over.", k.retries),
            ("kvstore_cluster_map_refreshes_total", "Slot map refreshes (CLUSTER SHARDS, or SLOTS before Redis 7).", k.mapRefreshes),
            ("kvstore_cluster_unavailable_total", "Cluster calls that gave up, or failed at once during an outage (answered 503 on request paths).", k.unavailable),
            ("kvstore_cluster_outages_total", "Outages begun: a call spent its retry window (--cluster-retry-ms).", k.outages),
        ]) + TierMetrics.gauge("kvstore_tier_up", "1 while the tier answers, 0 during an outage (see /healthz).",
                               labels: "tier=\"\(RedisCluster.tierName)\"", cluster.outage == nil ? 1 : 0)
    }
}

/// Prometheus counter lines.
enum TierMetrics {
    static func render(_ counters: [(String, String, Int)]) -> String {
        counters.map { "# HELP \($0.0) \($0.1)\n# TYPE \($0.0) counter\n\($0.0) \($0.2)\n" }.joined()
    }

    static func gauge(_ name: String, _ help: String, labels: String, _ value: Int) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name)\(labels.isEmpty ? "" : "{\(labels)}") \(value)\n"
    }
}
