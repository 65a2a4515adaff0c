#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KVRESP

/// One blocking connection to one Redis node, used directly on the caller's thread (no event loop:
/// on a small VM each cross-thread wake-up costs more than a loopback round trip). Commands are
/// pipelined: a batch is written at once, then its replies are read in order. Owned by one thread
/// at a time (the pool in `RedisCluster` hands it out). Any failure (timeout, I/O error, EOF,
/// protocol error) closes it for good, so a late reply can never be taken for another request's.
public final class RedisConnection: @unchecked Sendable {
    public let address: String
    let timeout: Duration
    let parser: RESPParser
    private var fd: Int32
    private var buffer: ReadBuffer
    /// Deadline of the batch being read (set by `write`).
    private var deadline: ContinuousClock.Instant

    public struct Credentials: Sendable, Equatable {
        public var user: String?
        public var password: String
        public init(user: String? = nil, password: String) { self.user = user; self.password = password }
    }

    /// Connects (within `timeout`) and authenticates (AUTH [user] password) when `credentials` are
    /// given; an AUTH refusal is `ClusterError.server`.
    public init(_ address: String, credentials: Credentials?, parser: RESPParser = RESPParser(),
                timeout: Duration = .seconds(5)) throws {
        guard let (host, port) = Self.parse(address) else { throw ClusterError.badAddress(address) }
        self.address = address
        self.timeout = timeout
        self.parser = parser
        deadline = .now + timeout
        buffer = ReadBuffer()
        fd = try Socket.connect(host: host, port: port, deadline: deadline, address: address)
        guard let credentials else { return }
        let auth = [Array("AUTH".utf8)] + (credentials.user.map { [Array($0.utf8)] } ?? []) + [Array(credentials.password.utf8)]
        if let e = try send([auth])[0].errorMessage {
            close()
            throw ClusterError.server("AUTH on \(address): \(e)")
        }
    }

    deinit { close() }

    /// "host:port" or "[v6]:port".
    static func parse(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    public var isOpen: Bool { fd >= 0 }

    /// True when the connection is open and the server has sent nothing unasked (an idle
    /// connection that is readable was closed by the server or is out of step).
    var isIdleAndHealthy: Bool {
        guard fd >= 0 else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&p, 1, 0) == 0
    }

    /// Sends the commands as one pipelined write and reads one reply per command (server errors
    /// are `.error` values; transport errors and timeouts are thrown).
    public func send(_ commands: [[[UInt8]]]) throws -> [RESPValue] {
        var bytes: [UInt8] = []
        for c in commands { RESPEncoder.append(c.map { [$0] }, to: &bytes) }
        return try send(encoded: bytes, count: commands.count)
    }

    /// Sends commands already encoded with `RESPEncoder` (`count` of them) and reads their replies.
    public func send(encoded bytes: [UInt8], count: Int) throws -> [RESPValue] {
        try write(encoded: bytes)
        return try readReplies(count)
    }

    /// The first half of `send`: writes the whole batch and starts its `timeout`.
    func write(encoded bytes: [UInt8]) throws {
        deadline = .now + timeout
        do {
            guard fd >= 0 else { throw ClusterError.unavailable("connection to \(address) is closed") }
            try bytes.withUnsafeBytes { try Socket.writeAll(fd, $0, deadline: deadline, address: address) }
        } catch {
            close()
            throw error
        }
    }

    /// The second half of `send`: reads `count` replies before the batch's deadline. Bytes beyond
    /// them would be replies to nothing: a protocol error.
    func readReplies(_ count: Int) throws -> [RESPValue] {
        do {
            guard fd >= 0 else { throw ClusterError.unavailable("connection to \(address) is closed") }
            var replies: [RESPValue] = []
            replies.reserveCapacity(count)
            while replies.count < count {
                if let (value, consumed) = try buffer.withReadable({ try parser.parse($0) }) {
                    buffer.consume(consumed)
                    replies.append(value)
                    continue
                }
                try buffer.fill(from: fd, deadline: deadline, address: address)
            }
            guard buffer.isEmpty else { throw ClusterError.badReply("reply with no request pending from \(address)") }
            buffer.reset()
            return replies
        } catch {
            close()
            if error is RESPError { throw ClusterError.badReply("\(address): \(error)") }
            throw error
        }
    }

    public func close() {
        guard fd >= 0 else { return }
        Socket.release(fd)
        fd = -1
    }
}

/// A contiguous receive buffer: bytes are read after `end`, parsed from `start`. Consumed bytes are
/// compacted away only once they are at least half of it, and it doubles when full, so a large
/// reply costs amortised linear copying.
struct ReadBuffer: ~Copyable {
    static let initialCapacity = 64 << 10
    /// Kept after a batch; a larger buffer (a batch of big values) is given back.
    static let retainedCapacity = 4 << 20
    private var base: UnsafeMutableRawPointer
    private var capacity: Int
    private var start = 0
    private var end = 0

    init() {
        capacity = Self.initialCapacity
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit { base.deallocate() }

    var isEmpty: Bool { start == end }

    func withReadable<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: base + start, count: end - start))
    }

    mutating func consume(_ n: Int) {
        start += n
        if start == end { start = 0; end = 0 }
    }

    /// Empties the buffer and gives back an oversized allocation.
    mutating func reset() {
        start = 0; end = 0
        guard capacity > Self.retainedCapacity else { return }
        base.deallocate()
        capacity = Self.initialCapacity
        base = .allocate(byteCount: capacity, alignment: 16)
    }

    /// Reads what the socket has (at least one byte), waiting until `deadline`.
    mutating func fill(from fd: Int32, deadline: ContinuousClock.Instant, address: String) throws {
        if end == capacity {
            if start >= capacity / 2 {
                memmove(base, base + start, end - start)
                end -= start; start = 0
            } else {
                let bigger = UnsafeMutableRawPointer.allocate(byteCount: capacity * 2, alignment: 16)
                bigger.copyMemory(from: base + start, byteCount: end - start)
                base.deallocate()
                base = bigger
                capacity *= 2
                end -= start; start = 0
            }
        }
        let n = try Socket.read(fd, into: base + end, count: capacity - end, deadline: deadline, address: address)
        end += n
    }
}
