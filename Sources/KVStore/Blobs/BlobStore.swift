#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KVTensor

/// Content-addressed blob files: `objects/ab/cdef…` where `abcdef…` is the SHA-256 of the bytes.
/// Files appear atomically (temp file in `tmp/`, fsync, rename) and every read re-hashes,
/// so a corrupt or missing blob is reported and never returned as data.
public struct BlobStore: Sendable {
    public let objectsDirectory: String
    public let tempDirectory: String

    public init(root: String) {
        objectsDirectory = root + "/objects"
        tempDirectory = root + "/tmp"
    }

    public func path(of id: Hash32) -> String {
        let hex = id.hex
        return "\(objectsDirectory)/\(hex.prefix(2))/\(hex.dropFirst(2))"
    }

    public func exists(_ id: Hash32) -> Bool { FileIO.exists(path(of: id)) }

    /// Writes `bytes` under their hash unless a file is already there. Returns whether it wrote.
    @discardableResult
    public func write(_ bytes: [UInt8], id: Hash32) throws -> Bool {
        let target = path(of: id)
        if FileIO.exists(target) { return false }
        let dir = FileIO.directoryOf(target)
        if !FileIO.exists(dir) { try FileIO.makeDirectories(dir) }
        do {
            try FileIO.writeAtomically([bytes], to: target, tempDirectory: tempDirectory)
        } catch TensorError.noSpace(let msg) {
            throw StoreError.noSpace(msg)
        } catch let e as TensorError {
            throw StoreError.notWritable(e.detail)
        }
        return true
    }

    /// Reads and verifies a blob.
    public func read(_ id: Hash32) throws -> [UInt8] {
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(path(of: id)) } catch {
            if !exists(id) { throw StoreError.missingBlob(id.hex) }
            throw StoreError.corruptBlob("\(id.hex): \(error)")
        }
        guard Hash32.sha256(bytes) == id else { throw StoreError.corruptBlob("\(id.hex) does not match its hash") }
        return bytes
    }

    /// Removes a blob file; a missing file is not an error (it is what the caller wants).
    public func remove(_ id: Hash32) { unlink(path(of: id)) }

    public func size(_ id: Hash32) -> Int? {
        var st = stat()
        return stat(path(of: id), &st) == 0 ? Int(st.st_size) : nil
    }

    /// Modification time (seconds since 1970), used to give in-flight writes a grace period.
    public func modificationTime(_ id: Hash32) -> Int? {
        var st = stat()
        return stat(path(of: id), &st) == 0 ? Int(st.st_mtim.tv_sec) : nil
    }

    /// Every blob id present on disk (for fsck and orphan collection).
    public func allIDs() -> [Hash32] {
        var out: [Hash32] = []
        for sub in Self.listDirectory(objectsDirectory) where sub.utf8.count == 2 {
            for rest in Self.listDirectory("\(objectsDirectory)/\(sub)") {
                if let id = Hash32(hex: sub + rest) { out.append(id) }
            }
        }
        return out
    }

    static let direntNameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name)!

    static func listDirectory(_ path: String) -> [String] {
        guard let dir = opendir(path) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            // Read the name in place: copying `entry.pointee` reads sizeof(dirent) bytes, past the
            // end of a short record at the end of readdir's buffer (a crash seen with 100k files).
            let name = String(cString: (UnsafeRawPointer(entry) + direntNameOffset).assumingMemoryBound(to: CChar.self))
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }
}

extension BlobStore {
    /// Moves a blob aside inside an index write transaction, so that the removal commits or rolls
    /// back together with its index record. Returns the trash path, or nil if there was no file.
    func trash(_ id: Hash32) -> String? {
        let to = "\(tempDirectory)/trash-\(id.hex)-\(getpid())"
        return rename(path(of: id), to) == 0 ? to : nil
    }

    func restore(_ id: Hash32, from trashPath: String) { rename(trashPath, path(of: id)) }
}
