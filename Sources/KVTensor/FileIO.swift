#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The few POSIX file operations the project needs, with errors that name the file and the cause.
public enum FileIO {
    public static func errnoMessage(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    /// The error for a failed write: a full disk or size limit is its own case, so callers can tell
    /// it apart without reading the message.
    static func writeError(_ what: String, _ code: Int32 = errno) -> TensorError {
        let message = "\(what): \(errnoMessage(code))"
        return [ENOSPC, EDQUOT, EFBIG].contains(code) ? .noSpace(message) : .io(message)
    }

    /// Reads a whole file. `limit` bounds the allocation before anything is read.
    public static func readAll(_ path: String, limit: Int = 1 << 36) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TensorError.io("cannot open \(path): \(errnoMessage())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw TensorError.io("cannot stat \(path): \(errnoMessage())") }
        let size = Int(st.st_size)
        guard size <= limit else { throw TensorError.tooLarge("\(path) is \(size) bytes, limit \(limit)") }
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        let err: String? = out.withUnsafeMutableBytes { buf in
            while done < size {
                let n = read(fd, buf.baseAddress! + done, size - done)
                if n < 0 { if errno == EINTR { continue }; return errnoMessage() }
                if n == 0 { break }
                done += n
            }
            return nil
        }
        if let err { throw TensorError.io("cannot read \(path): \(err)") }
        if done < size { out.removeSubrange(done...) }
        return out
    }

    /// Writes `chunks` to a temporary file beside `path`, fsyncs it and renames it into place,
    /// so readers see either the old file or the whole new one.
    public static func writeAtomically(_ chunks: [[UInt8]], to path: String, tempDirectory: String? = nil, sync: Bool = true) throws {
        let dir = tempDirectory ?? directoryOf(path)
        let tmp = "\(dir)/.tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw writeError("cannot create \(tmp)") }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            defer { close(fd) }
            for chunk in chunks { try writeAll(fd, chunk, path: path) }
            if sync, fsync(fd) != 0 { throw writeError("cannot sync \(path)") }
        }
        guard rename(tmp, path) == 0 else { throw TensorError.io("cannot rename into \(path): \(errnoMessage())") }
        ok = true
        if sync { syncDirectory(directoryOf(path)) }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], path: String) throws {
        var done = 0
        let code: Int32? = bytes.withUnsafeBytes { buf in
            while done < buf.count {
                let n = write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 { if errno == EINTR { continue }; return errno }
                done += n
            }
            return nil
        }
        if let code { throw writeError("cannot write \(path)", code) }
    }

    public static func syncDirectory(_ dir: String) {
        let fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        fsync(fd)
        close(fd)
    }

    public static func directoryOf(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    public static func exists(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0
    }

    /// `mkdir -p`.
    public static func makeDirectories(_ path: String) throws {
        var current = path.hasPrefix("/") ? "" : "."
        for part in path.split(separator: "/") {
            current += "/" + part
            if mkdir(current, 0o755) != 0, errno != EEXIST {
                throw TensorError.io("cannot create directory \(current): \(errnoMessage())")
            }
        }
    }
}
