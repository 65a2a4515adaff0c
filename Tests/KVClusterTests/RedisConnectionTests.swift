import Foundation
#if canImport(Glibc)
import Glibc
#endif
import KVCluster
import KVRESP
import Synchronization
import Testing
import TestSupport

/// The blocking connection and the pool behind `RedisCluster`: large and many pipelined replies,
/// concurrent callers, and dead or misbehaving peers.
@Suite(.serialized)
struct RedisConnectionTests {
    @Test func largeRepliesManyRepliesAndConcurrentCallers() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }

        // A reply far larger than the read buffer, then 60 of mixed sizes in one pipeline.
        let c = try RedisConnection(cluster.addresses[0], credentials: nil)
        let big = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }
        #expect(try c.send([[Array("ECHO".utf8), big]]) == [.bulk(big)])
        let payloads = (0..<60).map { i in (0..<((i * 7919) % 150_000)).map { UInt8(truncatingIfNeeded: $0 ^ i) } }
        #expect(try c.send(payloads.map { [Array("ECHO".utf8), $0] }) == payloads.map { .bulk($0) })
        #expect(c.isOpen)

        // Eight threads at once through one client: every reply is the caller's own.
        let redis = try RedisCluster(.init(seeds: [cluster.addresses[0]]))
        let failures = Mutex<[String]>([])
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            do {
                for round in 0..<40 {
                    let keys = (0..<20).map { Array("conn:\(t):\(round):\($0)".utf8) }
                    let values = keys.map { $0 + Array(repeating: UInt8(t), count: 1000 * t) }
                    _ = try redis.run(zip(keys, values).map { RedisCluster.Command("SET", key: $0, [$1]) })
                    let got = try redis.run(keys.map { RedisCluster.Command("GET", key: $0) }).replies
                    if got != values.map({ .bulk($0) }) { failures.withLock { $0.append("thread \(t) round \(round): wrong replies") } }
                }
            } catch {
                failures.withLock { $0.append("thread \(t): \(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
    }

    @Test func aSilentPeerTimesOutAndABadReplyClosesTheConnection() throws {
        // A peer that accepts (the kernel does, from the backlog) but never answers.
        let silent = try Listener()
        let c = try RedisConnection("127.0.0.1:\(silent.port)", credentials: nil, timeout: .milliseconds(200))
        #expect { _ = try c.send([[Array("PING".utf8)]]) } throws: { "\($0)".contains("timed out") }
        #expect(!c.isOpen)
        #expect { _ = try c.send([[Array("PING".utf8)]]) } throws: { "\($0)".contains("closed") }

        // A peer that answers with something that is not RESP2.
        let garbled = try Listener(reply: Array("%1\r\n".utf8))
        let d = try RedisConnection("127.0.0.1:\(garbled.port)", credentials: nil, timeout: .seconds(5))
        #expect { _ = try d.send([[Array("PING".utf8)]]) } throws: { "\($0)".contains("protocol error") }
        #expect(!d.isOpen)

        // Nothing listening: a clear error, no hang. The port stays bound (not listening) for the
        // check: a freed port could be taken by another test's server, or by this very connect as
        // its own source port (a TCP self-connect), and then the connect succeeds.
        let deaf = try Listener(listening: false)
        #expect(throws: ClusterError.self) { _ = try RedisConnection("127.0.0.1:\(deaf.port)", credentials: nil, timeout: .seconds(2)) }
    }
}

/// A loopback listener; with `reply`, one thread accepts one connection and writes it. Not
/// `listening`, the port is only bound: a connect to it is refused.
private final class Listener: @unchecked Sendable {
    let fd: Int32
    let port: Int

    init(reply: [UInt8]? = nil, listening: Bool = true) throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        fd = s
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(s, $0, len) == 0 && (!listening || listen(s, 4) == 0) && getsockname(s, $0, &len) == 0
            }
        }
        guard s >= 0, ok else { throw RedisClusterFixture.StartError(description: "listener: \(String(cString: strerror(errno)))") }
        port = Int(UInt16(bigEndian: addr.sin_port))
        guard let reply else { return }
        Thread.detachNewThread {
            let peer = accept(s, nil, nil)
            guard peer >= 0 else { return }
            _ = reply.withUnsafeBytes { send(peer, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            Thread.sleep(forTimeInterval: 10)   // keep it open: the error must come from the bytes
            Glibc.close(peer)
        }
    }

    private let closed = Mutex(false)

    func close() {
        if !closed.withLock({ c in defer { c = true }; return c }) { Glibc.close(fd) }
    }
    deinit { close() }
}
