#if canImport(Glibc)
import Glibc
#endif

/// An advisory lock (`index/gc.lock`) held while a GC or repair pass owns the LMDB writer. Reads
/// check it before refreshing access times, so a `get` during a long eviction skips that best-effort
/// write instead of waiting seconds for the writer lock. flock locks belong to open file
/// descriptions, so this works between threads of one process (a server evicting) as well.
extension ChunkStore {
    var gcLockPath: String { root + "/index/gc.lock" }

    func withGCLock<T>(_ body: () throws -> T) throws -> T {
        let fd = open(gcLockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return try body() }   // read-only store dir: nothing to coordinate
        defer { close(fd) }
        while flock(fd, LOCK_EX) != 0 && errno == EINTR {}
        return try body()
    }

    /// Whether a GC pass holds the lock right now (never waits).
    public func collectionInProgress() -> Bool {
        let fd = open(gcLockPath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK
    }
}
