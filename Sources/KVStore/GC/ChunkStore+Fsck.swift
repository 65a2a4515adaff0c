#if canImport(Glibc)
import Glibc
#endif
import Foundation
import KVTensor

/// What fsck found (and, with repair, fixed).
public struct FsckReport: Sendable, Codable, Equatable {
    public var blobsChecked = 0
    public var chunks = 0
    public var contexts = 0
    /// Damage: index entries that disagree with each other or with the blob files.
    public var problems: [String] = []
    /// Blob files with no record, older than the grace period (left by a crash before commit).
    public var orphanBlobs = 0
    public var orphanBytes = 0
    /// Blob files with no record inside the grace period: most likely puts in flight; left alone.
    public var recentOrphans = 0
    public var tempFiles = 0
    /// Blob files put back from an interrupted removal (done even without repair: it completes
    /// the rollback of a transaction that never committed).
    public var restoredBlobs = 0
    public var repaired = false
    public var seconds = 0.0

    public var clean: Bool { problems.isEmpty }
}

extension ChunkStore {
    /// Verifies every indexed blob against its hash and the index against the blobs. With `repair`,
    /// drops broken entries (see `IndexTarget`), deletes corrupt blob files, and collects orphans and
    /// temp files older than `grace` seconds, all in one write transaction.
    public func fsck(repair: Bool = false, grace: Int = GCPolicy.defaultGrace) throws -> FsckReport {
        let started = DispatchTime.now().uptimeNanoseconds
        env.clearStaleReaders()
        var report = FsckReport()
        report.restoredBlobs = try env.write { try recoverTrash(txn: $0).restored }

        // Checked outside any transaction; good results stay good (files never change in place).
        var files: [Hash32: Int?] = [:]
        func verify(_ ids: some Sequence<Hash32>) {
            for id in ids where files[id] == nil || files[id]! == nil {
                files.updateValue((try? blobs.read(id)).map(\.count), forKey: id)   // nil value = bad file
            }
        }

        // A concurrent gc can remove what an earlier snapshot listed: a problem counts only if a
        // fresh snapshot still shows it.
        var target = IndexTarget(IndexSnapshot(), files: [:], chunkTokens: chunkTokens)
        var snapshot = IndexSnapshot()
        for _ in 0..<3 {
            snapshot = try env.read { try IndexSnapshot(store: self, txn: $0) }
            verify(snapshot.referencedBlobs)
            target = IndexTarget(snapshot, files: files, chunkTokens: chunkTokens)
            if target.problems.isEmpty { break }
        }
        report.blobsChecked = files.count
        report.chunks = snapshot.chunks.count
        report.contexts = snapshot.contexts.count
        report.problems = target.problems

        let now = Self.wallClock()
        let orphans = try env.read { txn in try blobs.allIDs().filter { try txn.get(blobDB, $0.bytes) == nil } }
        for id in orphans {
            if let t = blobs.modificationTime(id), now - t >= grace {
                report.orphanBlobs += 1
                report.orphanBytes += blobs.size(id) ?? 0
            } else {
                report.recentOrphans += 1
            }
        }
        report.tempFiles = BlobStore.listDirectory(blobs.tempDirectory).filter { $0.hasPrefix(".tmp-") }.count

        if repair {
            var trashed: [String] = []
            try withGCLock { try env.write { txn in
                let s = try IndexSnapshot(store: self, txn: txn)
                verify(s.referencedBlobs)
                let t = IndexTarget(s, files: files, chunkTokens: chunkTokens)
                try write(t, over: s, txn: txn)
                // Files of dropped blob records and corrupt files: moved aside now, deleted after commit.
                let unused = Set(s.blobs.keys).union(files.filter { $0.value == nil }.keys).filter { t.blobs[$0] == nil }
                for id in unused {
                    if let path = blobs.trash(id) { trashed.append(path) }
                }
                (report.orphanBlobs, report.orphanBytes) = try removeOrphans(orphans, grace: grace, txn: txn)
            } }
            for path in trashed { unlink(path) }
            try pruneVLLM()
            report.tempFiles = removeStaleTempFiles(grace: grace)
            report.repaired = true
        }
        report.seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        return report
    }

    /// Rewrites the index to `target`: deletes what it lacks, puts what differs.
    func write(_ target: IndexTarget, over s: IndexSnapshot, txn: LMDBTransaction) throws {
        for (db, key) in s.undecodable { try txn.delete(env.database(db), key) }
        for (h, r) in s.chunks where target.chunks[h] != r {
            if let t = target.chunks[h] { try txn.put(chunkDB, h.bytes, t.encoded()) } else { try txn.delete(chunkDB, h.bytes) }
        }
        for (h, r) in s.contexts where target.contexts[h] != r {
            if let t = target.contexts[h] { try txn.put(contextDB, h.bytes, t.encoded()) } else { try txn.delete(contextDB, h.bytes) }
        }
        for (h, r) in target.blobs where s.blobs[h] != r { try txn.put(blobDB, h.bytes, r.encoded()) }
        for h in s.blobs.keys where target.blobs[h] == nil { try txn.delete(blobDB, h.bytes) }
        for (k, v) in target.partials where s.partials[k] != v { try txn.put(partialDB, k, v) }
        for k in s.partials.keys where target.partials[k] == nil { try txn.delete(partialDB, k) }
        for id in s.pins.keys where !target.pins.contains(id) { try txn.delete(pinDB, id.bytes) }
        for (id, r) in s.segments where target.segments[id] != r {
            if let t = target.segments[id] { try txn.put(segmentDB, id.bytes, t.encoded()) } else { try txn.delete(segmentDB, id.bytes) }
        }
    }
}
