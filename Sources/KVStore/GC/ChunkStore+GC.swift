#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// What one GC pass freed (or, with `dryRun`, would free).
public struct GCReport: Sendable, Codable, Equatable {
    public var dryRun = false
    /// Indexed blob bytes before and after (what `--max-bytes` limits).
    public var bytesBefore = 0
    public var bytesAfter = 0
    public var chunksEvicted = 0
    public var blobsFreed = 0
    public var bytesFreed = 0
    public var contextsTruncated = 0
    public var contextsDropped = 0
    public var segmentsEvicted = 0
    public var pinnedChunks = 0
    public var expiredPins = 0
    public var orphanBlobs = 0
    public var orphanBytes = 0
    public var tempFiles = 0
    /// Blob files put back from an interrupted removal.
    public var restoredBlobs = 0
    public var seconds = 0.0

    public init(dryRun: Bool = false) { self.dryRun = dryRun }
}

extension ChunkStore {
    /// One garbage-collection pass: finishes interrupted removals, drops expired and dangling pins,
    /// evicts by `policy` (TTL first, then least recently used until under `maxBytes`), and collects
    /// orphan blobs and stale temp files older than `policy.grace`. All index changes are one write
    /// transaction, so a pass killed at any point changes nothing (trash is put back by the next).
    @discardableResult
    public func collectGarbage(_ policy: GCPolicy) throws -> GCReport {
        let started = DispatchTime.now().uptimeNanoseconds
        env.clearStaleReaders()
        var report = GCReport(dryRun: policy.dryRun)
        let now = clock()
        if policy.dryRun {
            try env.read { txn in
                let snapshot = try IndexSnapshot(store: self, txn: txn)
                let plan = EvictionPlanner.plan(snapshot, policy: policy, now: now)
                report.take(plan)
                report.bytesFreed = plan.bytesBefore - plan.bytesAfter
                report.expiredPins = snapshot.pins.filter { id, e in e.map { $0 <= now } ?? false || snapshot.contexts[id] == nil }.count
            }
            report.orphanBlobs = try orphanCandidates(grace: policy.grace).count
        } else {
            let orphans = try orphanCandidates(grace: policy.grace)
            try withGCLock { try writeRemovingBlobs { txn, trashed in
                report.restoredBlobs = try recoverTrash(txn: txn).restored
                let snapshot = try IndexSnapshot(store: self, txn: txn)
                for (id, expires) in snapshot.pins where (expires.map { $0 <= now } ?? false) || snapshot.contexts[id] == nil {
                    try txn.delete(pinDB, id.bytes)
                    report.expiredPins += 1
                }
                let plan = EvictionPlanner.plan(snapshot, policy: policy, now: now)
                report.take(plan)
                var freed = RemoveReport()
                try apply(plan, snapshot: snapshot, txn: txn, freed: &freed, trashed: &trashed)
                report.blobsFreed = freed.blobs
                report.bytesFreed = freed.bytes
                report.bytesAfter = plan.bytesBefore - freed.bytes
                (report.orphanBlobs, report.orphanBytes) = try removeOrphans(orphans, grace: policy.grace, txn: txn)
            } }
            if report.chunksEvicted > 0 { try pruneVLLM() }   // rows of evicted chunks
            report.tempFiles = removeStaleTempFiles(grace: policy.grace)
        }
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return report
    }

    /// For a server after puts: when indexed blob bytes exceed `high` × `maxBytes`, evicts least
    /// recently used chunks down to `low` × `maxBytes` (like Mooncake's watermarks). Returns nil when
    /// under the high watermark; the check is one read-only scan of the blob records.
    public func evictIfNeeded(maxBytes: Int, high: Double = 0.9, low: Double = 0.8,
                              grace: Int = GCPolicy.defaultGrace) throws -> GCReport? {
        precondition(0 < low && low <= high && high <= 1, "watermarks must satisfy 0 < low <= high <= 1")
        guard Double(try usedBytes()) > high * Double(maxBytes) else { return nil }
        return try collectGarbage(GCPolicy(maxBytes: Int(low * Double(maxBytes)), grace: grace))
    }

    /// Bytes of all indexed blobs: what `--max-bytes` limits.
    public func usedBytes() throws -> Int {
        try env.read { txn in
            var total = 0
            try txn.scan(blobDB) { _, value in
                total += (try? BlobRecord(decoding: value).bytes) ?? 0
                return true
            }
            return total
        }
    }

    func apply(_ plan: EvictionPlan, snapshot: IndexSnapshot, txn: LMDBTransaction,
               freed: inout RemoveReport, trashed: inout [(Hash32, String)]) throws {
        for h in plan.victims {
            guard let record = snapshot.chunks[h] else { continue }
            try txn.delete(chunkDB, h.bytes)
            try removePartial(record, hash: h, txn: txn)
            freed.chunks += 1
            for level in record.levels { try release(blob: level.blob, txn: txn, report: &freed, trashed: &trashed) }
        }
        for (h, n) in plan.released {
            for _ in 0..<n { try release(chunk: h, txn: txn, report: &freed, trashed: &trashed) }
        }
        for (id, ctx) in plan.truncated { try txn.put(contextDB, id.bytes, ctx.encoded()) }
        for id in plan.segments {
            guard let record = snapshot.segments[id] else { continue }
            try txn.delete(segmentDB, id.bytes)
            for level in record.pieces.flatMap(\.levels) { try release(blob: level.blob, txn: txn, report: &freed, trashed: &trashed) }
        }
        for id in plan.dropped {
            try txn.delete(contextDB, id.bytes)
            try txn.delete(pinDB, id.bytes)
        }
    }
}

extension GCReport {
    mutating func take(_ plan: EvictionPlan) {
        bytesBefore = plan.bytesBefore
        bytesAfter = plan.bytesAfter
        chunksEvicted = plan.victims.count
        blobsFreed = plan.blobsFreed
        contextsTruncated = plan.truncated.count
        contextsDropped = plan.dropped.count
        segmentsEvicted = plan.segments.count
        pinnedChunks = plan.protectedChunks
    }
}
