import Foundation
import Testing
import KVCodec
import KVStore
import KVTensor
import TestSupport

/// A settable clock for time-based policies.
final class FakeClock: @unchecked Sendable {
    private let lock = NSLock()
    private var t = 1_700_000_000
    var now: Int { lock.withLock { t } }
    func advance(_ s: Int) { lock.withLock { t += s } }
}

@Suite struct GCTests {
    let dir = TestSupport.scratchDirectory("gc")
    let clock = FakeClock()

    func open() throws -> ChunkStore {
        let s = try ChunkStore(root: dir, chunkTokens: 16)
        let c = clock
        s.clock = { c.now }
        return s
    }

    /// The real KV under other token ids, rotated by `rotate` tokens so its chunks (and blobs) differ.
    func variant(_ i: Int, rotate: Int = 0) throws -> KVContext {
        let base = try TestSupport.realContext()
        let kv = rotate == 0 ? base.kv : try KVTensor.concatenate([base.kv.slice(tokens: rotate..<96), base.kv.slice(tokens: 0..<rotate)])
        return try KVContext(kv: kv, tokens: base.tokens.map { $0 &+ Int32(i * 100_000) }, metadata: base.metadata)
    }

    func ns(_ s: ChunkStore, _ c: KVContext) -> Namespace { s.namespace(for: c, model: "SmolLM2-135M-Instruct") }

    func matched(_ s: ChunkStore, _ c: KVContext) throws -> Int {
        guard let got = try s.get(c.tokens, namespace: ns(s, c)) else { return 0 }
        #expect(got.context.kv == c.kv.slice(tokens: 0..<got.match.tokens), "returned KV differs from what was stored")
        return got.match.tokens
    }

    func expectConsistent(_ s: ChunkStore, _ note: String = "") throws {
        let r = try s.fsck()
        #expect(r.problems.isEmpty, "\(note): \(r.problems)")
    }

    @Test func sizesAndDurationsParseStrictly() throws {
        #expect(try ByteSize.parse("500M") == 500 << 20)
        #expect(try ByteSize.parse("10G") == 10 << 30)
        #expect(try ByteSize.parse("1.5GiB") == 3 << 29)
        #expect(try ByteSize.parse("2KB") == 2000)
        #expect(try ByteSize.parse("4096") == 4096)
        #expect(try DurationText.parse("7d") == 7 * 86400)
        #expect(try DurationText.parse("1h30m") == 5400)
        #expect(try DurationText.parse("45s") == 45)
        let badSizes = [("", "is not a number"), ("G", "is not a number"), ("1.2.3G", "is not a number"),
                        ("12Q", "unknown unit \"q\""), ("-5M", "is not a number"), ("1e30T", "unknown unit"),
                        ("99999999999T", "too large")]
        for (text, message) in badSizes {
            #expect { try ByteSize.parse(text) } throws: { "\($0)".contains(message) }
        }
        let badDurations = [("", "empty duration"), ("7", "needs a unit"), ("5x", "unknown unit \"x\""),
                            ("h", "is not whole numbers"), ("1.5h", "unknown unit \".\""), ("99999999w", "longer than 100 years")]
        for (text, message) in badDurations {
            #expect { try DurationText.parse(text) } throws: { "\($0)".contains(message) }
        }
    }

    @Test func leastRecentlyUsedContextGoesFirstAndPinsAreKept() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        let ctxs = try (0..<3).map { try variant($0, rotate: 4 * $0) }
        var bytes: [Int] = []
        for c in ctxs {
            bytes.append(try s.put(c, namespace: ns(s, c)).storedBytes)
            clock.advance(3600)
        }
        // Read the oldest: now the middle one is least recently used.
        #expect(try matched(s, ctxs[0]) == 96)
        let total = try s.usedBytes()
        let r = try s.collectGarbage(GCPolicy(maxBytes: total - bytes[1] / 2))
        #expect(r.contextsTruncated + r.contextsDropped == 1)
        let usedNow = try s.usedBytes()
        #expect(r.bytesAfter <= total - bytes[1] / 2 && r.bytesAfter == usedNow)
        #expect(try matched(s, ctxs[0]) == 96)
        #expect(try matched(s, ctxs[1]) < 96)
        #expect(try matched(s, ctxs[2]) == 96)
        try expectConsistent(s)

        // A pinned context survives even a limit of zero; the others go entirely.
        try s.pin(context: s.resolveContext(s.contexts()[2].id))
        let all = try s.collectGarbage(GCPolicy(maxBytes: 0))
        #expect(all.pinnedChunks == 6)
        #expect(try s.contexts().count == 1)
        #expect(try matched(s, ctxs[2]) == 96)
        #expect(try matched(s, ctxs[0]) == 0)
        try expectConsistent(s)
    }

    @Test func evictingAChunkTakesTheRestOfItsChainAndKeepsSharedPrefixes() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        let long = try variant(0)
        let short = try KVContext(kv: long.kv.slice(tokens: 0..<40), tokens: Array(long.tokens.prefix(40)), metadata: long.metadata)
        _ = try s.put(long, namespace: ns(s, long))
        clock.advance(7200)
        _ = try s.put(short, namespace: ns(s, short))  // shares chunks 0 and 1 (a partial chunk 2 of its own)
        // The long context's tail was never read since the put, the short one is newer.
        let r = try s.collectGarbage(GCPolicy(ttl: 3600))
        #expect(r.chunksEvicted == 4)   // chunks 2...5 of the long chain
        #expect(r.contextsTruncated == 1 && r.contextsDropped == 0)
        #expect(try matched(s, long) == 40)   // chunks 0, 1 and the short context's partial chunk
        #expect(try matched(s, short) == 40)
        try expectConsistent(s)
        let listed = try s.contexts().map { ($0.tokens, $0.chunks) }.sorted { $0.0 < $1.0 }
        #expect(listed.map(\.0) == [32, 40] && listed.map(\.1) == [2, 3])
    }

    /// The refcount pitfall: re-putting a shortened context and removing it must leave nothing behind.
    @Test func reputOfAShortenedContextThenRemoveLeavesAnEmptyConsistentStore() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        let c = try variant(1)
        _ = try s.put(c, namespace: ns(s, c), name: "doc")
        let total = try s.usedBytes()
        try s.collectGarbage(GCPolicy(maxBytes: total / 2))
        #expect(try matched(s, c) < 96)
        let again = try s.put(c, namespace: ns(s, c))
        #expect(!again.alreadyStored)
        #expect(try matched(s, c) == 96)
        #expect(try s.contexts().first?.name == "doc")
        try expectConsistent(s, "after re-put")
        _ = try s.remove(context: s.resolveContext("doc"))
        let st = try s.stats()
        #expect(st.chunks == 0 && st.blobs == 0 && st.contexts == 0)
        #expect(s.blobs.allIDs().isEmpty)
    }

    @Test func ttlKeepsWhatWasReadAndExpiredPinsStopProtecting() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        let a = try variant(0), b = try variant(1, rotate: 8)
        _ = try s.put(a, namespace: ns(s, a))
        _ = try s.put(b, namespace: ns(s, b))
        try s.pin(context: s.resolveContext(s.contexts().first { $0.tokens == 96 && $0.id != "" }!.id), duration: 3600)
        clock.advance(2 * 86400)
        #expect(try matched(s, a) == 96)     // refreshes a's access times
        let dry = try s.collectGarbage(GCPolicy(ttl: 86400, dryRun: true))
        #expect(dry.chunksEvicted == 6 && dry.expiredPins == 1)
        #expect(try s.contexts().count == 2 && s.pins().count == 1)
        let r = try s.collectGarbage(GCPolicy(ttl: 86400))
        #expect(r.chunksEvicted == 6 && r.contextsDropped == 1 && r.expiredPins == 1)
        #expect(try matched(s, a) == 96 && matched(s, b) == 0)
        #expect(try s.pins().isEmpty)
        try expectConsistent(s)
    }

    @Test func watermarksEvictOnlyAboveHighAndDownToLow() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        for i in 0..<4 {
            let c = try variant(i, rotate: 4 * i)
            _ = try s.put(c, namespace: ns(s, c))
            clock.advance(60)
        }
        let used = try s.usedBytes()
        #expect(try s.evictIfNeeded(maxBytes: used * 2) == nil)
        let r = try #require(try s.evictIfNeeded(maxBytes: used))   // 100% > 90%: down to 80%
        #expect(r.bytesAfter <= used * 8 / 10 && r.bytesAfter > used / 2)
        #expect(try s.usedBytes() == r.bytesAfter)
        try expectConsistent(s)
    }

    /// A removal killed between moving a blob aside and committing: readers still get the data,
    /// and the next fsck puts the file back.
    @Test func interruptedRemovalIsReadableAndRestored() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        let c = try variant(2)
        _ = try s.put(c, namespace: ns(s, c))
        let blob = try s.lookup(c.tokens, namespace: ns(s, c)).chunks[3].record.best!.blob
        #expect(rename(s.blobs.path(of: blob), "\(s.blobs.tempDirectory)/trash-\(blob.hex)-99999") == 0)
        #expect(try matched(s, c) == 96)
        let r = try s.fsck()
        #expect(r.restoredBlobs == 1 && r.problems.isEmpty)
        #expect(s.blobs.exists(blob))
    }

    @Test func fsckFindsAndRepairsCorruptBlobsBrokenCountsAndOrphans() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        let c = try variant(3)
        _ = try s.put(c, namespace: ns(s, c))
        try expectConsistent(s, "fresh store")
        let blob = try s.lookup(c.tokens, namespace: ns(s, c)).chunks[4].record.best!.blob
        var bytes = try FileIO.readAll(s.blobs.path(of: blob))
        bytes[200] ^= 0x10
        try TestSupport.write(bytes, to: s.blobs.path(of: blob))
        // An orphan left by a crashed put, an hour old, and a fresh one that a put may still want.
        let old = Hash32.sha256([1, 2, 3]), young = Hash32.sha256([4, 5, 6])
        try s.blobs.write([1, 2, 3], id: old)
        try s.blobs.write([4, 5, 6], id: young)
        var times = [timespec(tv_sec: time(nil) - 3600, tv_nsec: 0), timespec(tv_sec: time(nil) - 3600, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, s.blobs.path(of: old), &times, 0) == 0)

        let r = try s.fsck()
        #expect(!r.clean)
        #expect(r.problems.contains { $0.contains("blob \(blob.hex) is missing or corrupt") })
        #expect(r.orphanBlobs == 1 && r.recentOrphans == 1)
        let fixed = try s.fsck(repair: true)
        #expect(fixed.repaired && fixed.orphanBlobs == 1)
        #expect(!s.blobs.exists(old) && s.blobs.exists(young) && !s.blobs.exists(blob))
        try expectConsistent(s, "after repair")
        #expect(try matched(s, c) == 64)   // cut at the corrupt chunk 4
        // Putting it again restores the whole context.
        _ = try s.put(c, namespace: ns(s, c))
        #expect(try matched(s, c) == 96)
        try expectConsistent(s, "after re-put")
    }

    /// Segments hold blob references too: fsck counts them, and GC ages them out by their own access time.
    @Test func segmentsAreCountedByFsckAndEvictedByAge() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        let c = try variant(0)
        _ = try s.put(c, namespace: ns(s, c))
        let doc = try KVContext(kv: c.kv.slice(tokens: 0..<40), tokens: Array(c.tokens[0..<40]), metadata: c.metadata)
        let rope = RoPEConfig(theta: 100_000, rotaryDim: 64, pairs: .adjacent)
        _ = try s.putSegment(doc, namespace: ns(s, doc), start: 0, rope: rope)
        try expectConsistent(s, "context and segment sharing blobs")
        clock.advance(86400)
        #expect(try matched(s, c) == 96)
        let r = try s.collectGarbage(GCPolicy(ttl: 3600))
        #expect(r.segmentsEvicted == 1 && r.chunksEvicted == 0)
        #expect(try s.segments().isEmpty && matched(s, c) == 96)
        try expectConsistent(s, "after evicting the segment")
    }

    /// While a GC pass holds its lock, reads still succeed but skip refreshing access times
    /// (instead of waiting for the writer); afterwards they refresh them again.
    @Test func readsDuringAGCPassDoNotWaitToRecordAccess() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try open()
        let c = try variant(0)
        _ = try s.put(c, namespace: ns(s, c))
        let created = try s.lookup(c.tokens, namespace: ns(s, c)).chunks[0].record.lastAccess
        clock.advance(3600)
        let fd = Glibc.open(dir + "/index/gc.lock", O_RDWR | O_CREAT, 0o644)
        #expect(fd >= 0 && flock(fd, LOCK_EX) == 0)
        #expect(s.collectionInProgress())
        #expect(try matched(s, c) == 96)
        #expect(try s.lookup(c.tokens, namespace: ns(s, c)).chunks[0].record.lastAccess == created)
        close(fd)
        #expect(!s.collectionInProgress())
        #expect(try matched(s, c) == 96)
        #expect(try s.lookup(c.tokens, namespace: ns(s, c)).chunks[0].record.lastAccess == created + 3600)
    }

    @Test func syntheticBenchStoreIsConsistentAndCollectable() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try ChunkStore(root: dir, chunkTokens: 4)
        let summary = try SyntheticStore.populate(s, source: TestSupport.realContext().kv, chunks: 1000)
        let indexed = try s.stats().chunks
        #expect(summary.chunks >= 1000 && indexed == summary.chunks)
        try expectConsistent(s, "synthetic store")
        let r = try s.collectGarbage(GCPolicy(maxBytes: summary.blobBytes / 3))
        #expect(r.bytesAfter <= summary.blobBytes / 3 && r.chunksEvicted > 0)
        try expectConsistent(s, "after gc")
    }
}
