/// What GC should remove; composable policies over one index snapshot.
public struct GCPolicy: Sendable, Equatable {
    /// Evict least-recently-used chunks until indexed blob bytes are at most this.
    public var maxBytes: Int?
    /// Evict chunks whose subtree was not accessed for this many seconds.
    public var ttl: Int?
    /// Orphan blobs and temp files younger than this (seconds) belong to puts in flight.
    public var grace: Int
    public var dryRun: Bool

    public static let defaultGrace = 600

    public init(maxBytes: Int? = nil, ttl: Int? = nil, grace: Int = GCPolicy.defaultGrace, dryRun: Bool = false) {
        self.maxBytes = maxBytes
        self.ttl = ttl
        self.grace = grace
        self.dryRun = dryRun
    }
}

/// The index changes one GC pass makes.
struct EvictionPlan {
    /// Chunks to delete, each after everything below it (tail-first).
    var victims: [Hash32] = []
    /// Contexts cut short at their first evicted (or already missing) chunk.
    var truncated: [Hash32: ContextRecord] = [:]
    var dropped: [Hash32] = []
    /// Segments evicted (by their own last access; they have no chain).
    var segments: [Hash32] = []
    /// Surviving chunks listed after a cut by a truncated context: each loses one reference per
    /// such context. Only an inconsistent index has any (a consistent one evicts them as victims).
    var released: [Hash32: Int] = [:]
    var bytesBefore = 0
    var bytesAfter = 0
    var blobsFreed = 0
    var protectedChunks = 0
}

/// Decides evictions. A chunk's recency is the latest access in its subtree (itself and every
/// chunk after it in any chain), because evicting it makes that whole subtree unreachable: the
/// longest-prefix walk stops at the first gap. Chunks are taken in order of that recency, oldest
/// first and deepest first among equals, so each victim is a leaf when it goes and a context is
/// only ever shortened from its tail.
enum EvictionPlanner {
    static func plan(_ s: IndexSnapshot, policy: GCPolicy, now: Int) -> EvictionPlan {
        var plan = EvictionPlan()
        let protected = s.protectedChunks(now: now)
        plan.protectedChunks = protected.count

        let hashes = Array(s.chunks.keys)
        var index = [Hash32: Int](minimumCapacity: hashes.count)
        for (i, h) in hashes.enumerated() { index[h] = i }
        let records = hashes.map { s.chunks[$0]! }
        let parent = records.map { index[$0.parent] }
        var children = [Int: [Int]]()
        for (i, p) in parent.enumerated() { if let p { children[p, default: []].append(i) } }

        // Subtree recency, pushed up from the deepest chunks.
        var recency = records.map(\.lastAccess)
        for i in hashes.indices.sorted(by: { records[$0].position > records[$1].position }) {
            if let p = parent[i], recency[i] > recency[p] { recency[p] = recency[i] }
        }
        // Segments compete with chunks by their own last access.
        enum Item { case chunk(Int), segment(Hash32) }
        var items = hashes.indices.map { (recency: recency[$0], depth: records[$0].position, item: Item.chunk($0)) }
        items += s.segments.map { (recency: $0.value.lastAccess, depth: -1, item: Item.segment($0.key)) }
        items.sort { $0.recency != $1.recency ? $0.recency < $1.recency : $0.depth > $1.depth }

        var blobRefs = s.blobs.mapValues(\.refs)
        var used = s.blobBytes
        plan.bytesBefore = used
        var evicted = [Bool](repeating: false, count: hashes.count)

        func release(_ levels: [LevelBlob]) {
            for level in levels {
                guard let refs = blobRefs[level.blob] else { continue }
                blobRefs[level.blob] = refs - 1
                if refs == 1 {
                    used -= s.blobs[level.blob]!.bytes
                    plan.blobsFreed += 1
                }
            }
        }
        func evict(_ i: Int) {
            guard !evicted[i] else { return }
            evicted[i] = true
            for c in children[i] ?? [] { evict(c) }   // none left in a consistent index
            plan.victims.append(hashes[i])
            release(records[i].levels)
        }

        let cutoff = policy.ttl.map { now - $0 }
        for entry in items {
            if case .chunk(let i) = entry.item, evicted[i] || protected.contains(hashes[i]) { continue }
            let byTTL = cutoff.map { entry.recency < $0 } ?? false
            let byBytes = policy.maxBytes.map { used > $0 } ?? false
            guard byTTL || byBytes else { break }
            switch entry.item {
            case .chunk(let i): evict(i)
            case .segment(let id):
                plan.segments.append(id)
                release(s.segments[id]!.pieces.flatMap(\.levels))
            }
        }
        plan.bytesAfter = used

        for (id, ctx) in s.contexts {
            guard let cut = ctx.chain.firstIndex(where: { h in index[h].map { evicted[$0] } ?? true }) else { continue }
            for h in ctx.chain[cut...] {
                if let i = index[h], !evicted[i] { plan.released[h, default: 0] += 1 }
            }
            if cut == 0 {
                plan.dropped.append(id)
            } else {
                var short = ctx
                short.chain = Array(ctx.chain[..<cut])
                short.tokens = short.chain.reduce(0) { $0 + s.chunks[$1]!.tokens }
                plan.truncated[id] = short
            }
        }
        return plan
    }
}
