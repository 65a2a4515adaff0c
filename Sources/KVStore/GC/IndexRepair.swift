/// The consistent index a snapshot should be, given which blob files verify. fsck reports every
/// difference as a problem; `fsck --repair` writes the target. Rules, in order:
/// 1. a chunk keeps only encodings whose blob file verifies; a chunk with none left, or whose
///    parent chunk is gone, is dropped (the prefix walk could never reach it);
/// 2. a context is cut at its first dropped or missing chunk, and dropped when nothing is left;
/// 3. chunk `refs` = contexts listing the chunk; chunks no context lists are dropped;
/// 4. blob `refs` = encodings of kept chunks using the blob; unused blob records are dropped;
/// 5. `partials` lists exactly the kept chunks shorter than the chunk size;
/// 6. pins of contexts that are gone are dropped;
/// 7. a segment with a piece left without a readable encoding is dropped (its blobs count in 4).
struct IndexTarget {
    var chunks: [Hash32: ChunkRecord] = [:]
    var contexts: [Hash32: ContextRecord] = [:]
    var blobs: [Hash32: BlobRecord] = [:]
    var partials: [[UInt8]: [UInt8]] = [:]
    var pins: Set<Hash32> = []
    var segments: [Hash32: SegmentRecord] = [:]
    var problems: [String] = []

    /// `files`: verified size of every blob file checked (nil = missing or corrupt).
    init(_ s: IndexSnapshot, files: [Hash32: Int?], chunkTokens: Int) {
        for (db, key) in s.undecodable { problems.append("\(db): record \(Hash32(bytes: key)?.hex ?? "\(key)") does not decode") }

        var kept: [Hash32: ChunkRecord] = [:]
        for (h, r) in s.chunks.sorted(by: { $0.value.position < $1.value.position }) {
            var r = r
            r.levels = r.levels.filter { l in
                guard case .some(.some) = files[l.blob] else {
                    problems.append("chunk \(h.hex): level \(l.level) blob \(l.blob.hex) is missing or corrupt")
                    return false
                }
                return true
            }
            if r.levels.isEmpty { problems.append("chunk \(h.hex): no readable encoding left"); continue }
            if r.position > 0, kept[r.parent] == nil {
                problems.append("chunk \(h.hex): parent \(r.parent.hex) is gone, so the chunk is unreachable")
                continue
            }
            kept[h] = r
        }

        var refs: [Hash32: Int] = [:]
        for (id, ctx) in s.contexts {
            let cut = ctx.chain.firstIndex { kept[$0] == nil } ?? ctx.chain.count
            if cut < ctx.chain.count {
                problems.append("context \(id.hex): chunk \(cut) of \(ctx.chain.count) is gone; \(cut == 0 ? "dropping it" : "cutting it there")")
            }
            guard cut > 0 else { continue }
            var c = ctx
            c.chain = Array(ctx.chain[..<cut])
            c.tokens = c.chain.reduce(0) { $0 + kept[$1]!.tokens }
            contexts[id] = c
            for h in c.chain { refs[h, default: 0] += 1 }
        }

        var blobRefs: [Hash32: Int] = [:]
        for (h, r) in kept {
            guard let n = refs[h] else { problems.append("chunk \(h.hex): no context lists it"); continue }
            if n != r.refs { problems.append("chunk \(h.hex): refs \(r.refs), contexts listing it \(n)") }
            var r = r
            r.refs = n
            chunks[h] = r
            for l in r.levels { blobRefs[l.blob, default: 0] += 1 }
            if r.tokens < chunkTokens { partials[ChunkStore.partialKey(parent: r.parent, tokens: r.tokens, chunk: h)] = h.bytes }
        }

        for (id, seg) in s.segments {
            var seg = seg
            for i in seg.pieces.indices {
                seg.pieces[i].levels = seg.pieces[i].levels.filter { l in if case .some(.some) = files[l.blob] { true } else { false } }
            }
            guard seg.pieces.allSatisfy({ !$0.levels.isEmpty }) else {
                problems.append("segment \(id.hex): a piece has no readable encoding; dropping it")
                continue
            }
            if seg != s.segments[id] { problems.append("segment \(id.hex): an encoding is missing or corrupt") }
            segments[id] = seg
            for p in seg.pieces { for l in p.levels { blobRefs[l.blob, default: 0] += 1 } }
        }

        for (id, rec) in s.blobs where blobRefs[id] == nil {
            if case .some(.some) = files[id] { problems.append("blob \(id.hex): no chunk uses it") }
            else { problems.append("blob \(id.hex): file is missing or corrupt (\(rec.bytes) bytes indexed)") }
        }
        for (id, n) in blobRefs {
            let size = files[id]!!
            if let rec = s.blobs[id] {
                if rec.refs != n { problems.append("blob \(id.hex): refs \(rec.refs), encodings using it \(n)") }
                if rec.bytes != size { problems.append("blob \(id.hex): indexed as \(rec.bytes) bytes, file has \(size)") }
            } else {
                problems.append("blob \(id.hex): used by chunks but has no record")
            }
            blobs[id] = BlobRecord(bytes: size, refs: n)
        }

        for (key, value) in s.partials where partials[key] != value {
            problems.append("partials: entry for chunk \(Hash32(bytes: value)?.hex ?? "?") does not match a stored partial chunk")
        }
        for (key, value) in partials where s.partials[key] != value {
            problems.append("partials: chunk \(Hash32(bytes: value)!.hex) is missing from the partial-chunk list")
        }
        pins = Set(s.pins.keys.filter { contexts[$0] != nil })
    }
}
