#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Blocking-with-deadline TCP on POSIX sockets. Descriptors are non-blocking; a call that would
/// block polls for the time left before its deadline. No SIGPIPE (MSG_NOSIGNAL / SO_NOSIGPIPE).
enum Socket {
    #if canImport(Darwin)
    static let sendFlags: Int32 = 0
    #else
    static let sendFlags = Int32(MSG_NOSIGNAL)
    #endif

    /// Connects to the first address of `host` that accepts before `deadline`, with TCP_NODELAY.
    static func connect(host: String, port: Int, deadline: ContinuousClock.Instant, address: String) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Darwin)
        hints.ai_socktype = SOCK_STREAM
        #else
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #endif
        hints.ai_flags = AI_NUMERICSERV
        var list: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &list)
        guard rc == 0, let list else {
            throw ClusterError.unavailable("\(address): cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(list) }
        var problem = "no address"
        var next: UnsafeMutablePointer<addrinfo>? = list
        while let ai = next {
            next = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            guard fd >= 0 else { problem = "socket: \(errorText())"; continue }
            do {
                try configure(fd)
                if systemConnect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) != 0 {
                    guard errno == EINPROGRESS || errno == EINTR else { throw ClusterError.unavailable("connect: \(errorText())") }
                    try wait(fd, for: Int16(POLLOUT), deadline: deadline, address: address, doing: "connect")
                    var err: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0, err == 0 else {
                        throw ClusterError.unavailable("connect: \(String(cString: strerror(err)))")
                    }
                }
                return fd
            } catch ClusterError.timeout(let m) {
                release(fd)
                throw ClusterError.timeout(m)
            } catch {
                release(fd)
                problem = "\(error)"
            }
        }
        throw ClusterError.unavailable("\(address): \(problem)")
    }

    private static func configure(_ fd: Int32) throws {
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        guard fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) == 0,
              fcntl(fd, F_SETFD, FD_CLOEXEC) == 0,
              setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, size) == 0 else {
            throw ClusterError.unavailable("socket options: \(errorText())")
        }
        #if canImport(Darwin)
        guard setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, size) == 0 else {
            throw ClusterError.unavailable("SO_NOSIGPIPE: \(errorText())")
        }
        #endif
    }

    /// Writes every byte (partial writes resumed) before `deadline`.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, deadline: ContinuousClock.Instant, address: String) throws {
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = send(fd, p, left, sendFlags)
            if n > 0 { p += n; left -= n; continue }
            if n < 0, errno == EINTR { continue }
            if n < 0, errno == EAGAIN || errno == EWOULDBLOCK {
                try wait(fd, for: Int16(POLLOUT), deadline: deadline, address: address, doing: "write")
                continue
            }
            throw ClusterError.unavailable("\(address): write: \(errorText())")
        }
    }

    /// Reads at least one byte (at most `count`) before `deadline`; EOF is an error.
    static func read(_ fd: Int32, into p: UnsafeMutableRawPointer, count: Int, deadline: ContinuousClock.Instant, address: String) throws -> Int {
        while true {
            let n = recv(fd, p, count, 0)
            if n > 0 { return n }
            if n == 0 { throw ClusterError.unavailable("\(address) closed the connection") }
            if errno == EINTR { continue }
            guard errno == EAGAIN || errno == EWOULDBLOCK else { throw ClusterError.unavailable("\(address): read: \(errorText())") }
            try wait(fd, for: Int16(POLLIN), deadline: deadline, address: address, doing: "read")
        }
    }

    /// Polls for `events` until `deadline` (a timeout throws `ClusterError.timeout`). Returns on
    /// readiness or on an error condition (the next I/O call reports it).
    static func wait(_ fd: Int32, for events: Int16, deadline: ContinuousClock.Instant, address: String, doing: String) throws {
        while true {
            let left = deadline - .now
            guard left > .zero else { throw ClusterError.timeout("\(doing) on \(address)") }
            let (s, atto) = left.components
            let ms = Int32(clamping: s * 1000 + (atto + 999_999_999_999_999) / 1_000_000_000_000_000)
            var p = pollfd(fd: fd, events: events, revents: 0)
            let rc = poll(&p, 1, ms)
            if rc > 0 { return }
            if rc < 0, errno != EINTR { throw ClusterError.unavailable("\(address): poll: \(errorText())") }
        }
    }

    static func release(_ fd: Int32) { _ = close(fd) }

    private static func errorText() -> String { String(cString: strerror(errno)) }
}

private func systemConnect(_ fd: Int32, _ addr: UnsafeMutablePointer<sockaddr>!, _ len: socklen_t) -> Int32 {
    connect(fd, addr, len)
}
