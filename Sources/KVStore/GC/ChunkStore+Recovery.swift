#if canImport(Glibc)
import Glibc
#endif
import CLMDB
import Foundation
import KVTensor

/// Crash recovery and housekeeping shared by gc and fsck, and the read path that makes a
/// concurrent removal look like a clean miss.
extension ChunkStore {
    /// Reads an indexed blob of `chunk`. While a removal is in flight the file sits in `tmp/` as
    /// trash; its bytes are still verified by hash, so they are read from there. Once the chunk is no
    /// longer indexed the read is a clean miss (nil). A record that stays indexed while its file
    /// stays missing is damage and throws.
    func readIndexedBlob(_ id: Hash32, chunk: Hash32) throws -> [UInt8]? {
        var delay: useconds_t = 500
        for _ in 0..<8 {
            do { return try blobs.read(id) } catch StoreError.missingBlob {}
            if let bytes = blobs.readTrashed(id) { return bytes }
            let indexed = try env.read { txn in
                try txn.get(chunkDB, chunk.bytes).map { try ChunkRecord(decoding: $0).levels.contains { $0.blob == id } } ?? false
            }
            if !indexed { return nil }
            usleep(delay)   // a writer may be between moving the file aside and committing
            delay *= 2
        }
        throw StoreError.missingBlob("\(id.hex) is indexed but its file is gone")
    }

    /// Finishes removals interrupted by a crash. Must run inside a write transaction: then no
    /// other removal is between moving a file aside and committing, so a trash file whose blob is
    /// still indexed and absent belongs to a transaction that never committed (put it back), and
    /// any other trash file belongs to one that did (delete it).
    func recoverTrash(txn: LMDBTransaction) throws -> (restored: Int, deleted: Int) {
        var restored = 0, deleted = 0
        for (id, path) in blobs.trashEntries() {
            if try txn.get(blobDB, id.bytes) != nil, !blobs.exists(id) {
                let dir = FileIO.directoryOf(blobs.path(of: id))
                if !FileIO.exists(dir) { try? FileIO.makeDirectories(dir) }
                if rename(path, blobs.path(of: id)) == 0 { restored += 1 }
            } else if unlink(path) == 0 {
                deleted += 1
            }
        }
        return (restored, deleted)
    }

    /// Blob files with no index record that are older than `grace` seconds, from a snapshot taken
    /// outside any write transaction; `removeOrphans` re-checks each inside one.
    func orphanCandidates(grace: Int) throws -> [Hash32] {
        let onDisk = blobs.allIDs()
        let now = Self.wallClock()
        return try env.read { txn in
            try onDisk.filter { id in
                try txn.get(blobDB, id.bytes) == nil && (blobs.modificationTime(id).map { now - $0 >= grace } ?? false)
            }
        }
    }

    /// Deletes orphan blob files inside a write transaction, so a put that wants one of them later
    /// finds it missing in its own transaction and writes it again.
    func removeOrphans(_ candidates: [Hash32], grace: Int, txn: LMDBTransaction) throws -> (count: Int, bytes: Int) {
        let now = Self.wallClock()
        var count = 0, bytes = 0
        for id in candidates where try txn.get(blobDB, id.bytes) == nil {
            guard let mtime = blobs.modificationTime(id), now - mtime >= grace else { continue }
            let size = blobs.size(id) ?? 0
            if unlink(blobs.path(of: id)) == 0 { count += 1; bytes += size }
        }
        return (count, bytes)
    }

    /// Temporary files of writes that never finished (older than `grace` seconds).
    func removeStaleTempFiles(grace: Int) -> Int {
        let now = Self.wallClock()
        var removed = 0
        for name in BlobStore.listDirectory(blobs.tempDirectory) where name.hasPrefix(".tmp-") {
            let path = blobs.tempDirectory + "/" + name
            var st = stat()
            guard stat(path, &st) == 0, now - Int(st.st_mtim.tv_sec) >= grace else { continue }
            if unlink(path) == 0 { removed += 1 }
        }
        return removed
    }

    static func wallClock() -> Int { Int(Date().timeIntervalSince1970) }
}

extension BlobStore {
    /// Trash files (`tmp/trash-<hex>-<pid>`) with the blob id each holds.
    func trashEntries() -> [(Hash32, String)] {
        BlobStore.listDirectory(tempDirectory).compactMap { name in
            guard name.hasPrefix("trash-"), name.utf8.count > 6 + 64 else { return nil }
            let hex = String(name.dropFirst(6).prefix(64))
            guard let id = Hash32(hex: hex) else { return nil }
            return (id, tempDirectory + "/" + name)
        }
    }

    /// The verified bytes of a blob that a removal in flight has moved aside, if any.
    func readTrashed(_ id: Hash32) -> [UInt8]? {
        let prefix = "trash-\(id.hex)-"
        for name in BlobStore.listDirectory(tempDirectory) where name.hasPrefix(prefix) {
            if let bytes = try? FileIO.readAll(tempDirectory + "/" + name), Hash32.sha256(bytes) == id { return bytes }
        }
        return nil
    }
}

extension LMDBEnvironment {
    /// Frees reader slots of processes that died (kill -9) so they do not pin old pages.
    func clearStaleReaders() {
        var dead: Int32 = 0
        mdb_reader_check(env, &dead)
    }
}
