import Foundation

/// Every index record, decoded, as of one transaction. GC plans and fsck checks are pure
/// functions of a snapshot; records that do not decode are kept apart so fsck can report them.
struct IndexSnapshot {
    var chunks: [Hash32: ChunkRecord] = [:]
    var blobs: [Hash32: BlobRecord] = [:]
    var contexts: [Hash32: ContextRecord] = [:]
    /// `partials` entries: key (parent ‖ u32 BE tokens) → chunk hash bytes.
    var partials: [[UInt8]: [UInt8]] = [:]
    /// Context id → expiry (nil = never).
    var pins: [Hash32: Int?] = [:]
    var namespaces: Set<Hash32> = []
    /// Independently encoded segments (APE / CacheBlend reuse); they hold blob references too.
    var segments: [Hash32: SegmentRecord] = [:]
    /// Keys of records that failed to decode, per database name.
    var undecodable: [(database: String, key: [UInt8])] = []

    init() {}

    init(store: ChunkStore, txn: LMDBTransaction, blobs loadBlobs: Bool = true) throws {
        try txn.scan(store.chunkDB) { key, value in
            if let h = Hash32(bytes: key), let r = try? ChunkRecord(decoding: value) { chunks[h] = r } else { undecodable.append(("chunks", key)) }
            return true
        }
        if loadBlobs {
            try txn.scan(store.blobDB) { key, value in
                if let h = Hash32(bytes: key), let r = try? BlobRecord(decoding: value) { blobs[h] = r } else { undecodable.append(("blobs", key)) }
                return true
            }
        }
        try txn.scan(store.contextDB) { key, value in
            if let h = Hash32(bytes: key), let r = try? ContextRecord(decoding: value) { contexts[h] = r } else { undecodable.append(("contexts", key)) }
            return true
        }
        try txn.scan(store.partialDB) { key, value in
            partials[key] = value
            return true
        }
        try txn.scan(store.pinDB) { key, value in
            if let h = Hash32(bytes: key), let e = PinRecord.decode(value) { pins[h] = e } else { undecodable.append(("pins", key)) }
            return true
        }
        try txn.scan(store.segmentDB) { key, value in
            if let h = Hash32(bytes: key), let r = try? SegmentRecord(decoding: value) { segments[h] = r } else { undecodable.append(("segments", key)) }
            return true
        }
        try txn.scan(store.namespaceDB) { key, _ in
            if let h = Hash32(bytes: key) { namespaces.insert(h) }
            return true
        }
    }

    /// Every blob id a chunk encoding or a segment piece references.
    var referencedBlobs: Set<Hash32> {
        var out = Set(blobs.keys)
        for r in chunks.values { for l in r.levels { out.insert(l.blob) } }
        for r in segments.values { for p in r.pieces { for l in p.levels { out.insert(l.blob) } } }
        return out
    }

    /// Bytes of all indexed blobs: what `--max-bytes` limits.
    var blobBytes: Int { blobs.values.reduce(0) { $0 + $1.bytes } }

    /// Chunks that a live pin protects: the chains of pinned contexts, closed over parent links.
    func protectedChunks(now: Int) -> Set<Hash32> {
        var out = Set<Hash32>()
        for (id, expires) in pins where expires.map({ $0 > now }) ?? true {
            guard let ctx = contexts[id] else { continue }
            for h in ctx.chain {
                var cur: Hash32? = h
                while let c = cur, let rec = chunks[c], out.insert(c).inserted { cur = rec.parent }
            }
        }
        return out
    }
}

extension Hash32 {
    /// The bytes are a SHA-256 digest, already uniform: hashing 8 of them is enough and keeps the
    /// 100,000-entry maps of a GC pass cheap (feeding all 32 bytes byte by byte dominated it).
    public func hash(into hasher: inout Hasher) {
        hasher.combine(bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
    }
}
