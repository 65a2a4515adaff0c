import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A real Redis Cluster of 3 masters and 3 replicas on free loopback ports in a scratch directory,
/// for the cluster tier's tests (`scripts/setup.sh` installs redis-server and redis-tools). Started
/// with `start()`, stopped (every process killed, directory removed) with `stop()`.
public final class RedisClusterFixture: @unchecked Sendable {
    public let directory: String
    public private(set) var ports: [Int] = []
    public let password: String?
    private var processes: [Int: Process] = [:]
    private let lock = NSLock()

    public struct StartError: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// `extraConfig`: more `redis-server` arguments for every node (e.g. `["--maxmemory", "8mb"]`).
    public init(password: String? = nil, nodeTimeoutMs: Int = 2000, extraConfig: [String] = []) throws {
        directory = TestSupport.scratchDirectory("kvstore-redis")
        self.password = password
        do { try start(nodeTimeoutMs: nodeTimeoutMs, extraConfig: extraConfig) } catch { stop(); throw error }
    }

    deinit { stop() }

    /// "127.0.0.1:P" of every node.
    public var addresses: [String] { ports.map { "127.0.0.1:\($0)" } }
    /// The `--cluster` seed list the CLI takes.
    public var url: String { "redis://" + addresses.joined(separator: ",") }

    private func start(nodeTimeoutMs: Int, extraConfig: [String]) throws {
        ports = try Self.freePorts(6)
        for port in ports {
            let dir = directory + "/\(port)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            var args = ["--port", "\(port)", "--bind", "127.0.0.1", "--dir", dir, "--logfile", dir + "/redis.log",
                        "--cluster-enabled", "yes", "--cluster-config-file", dir + "/nodes.conf",
                        "--cluster-node-timeout", "\(nodeTimeoutMs)", "--appendonly", "no", "--save", "",
                        "--daemonize", "no", "--protected-mode", "no"]
            if let password { args += ["--requirepass", password, "--masterauth", password] }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: try Self.tool("redis-server"))
            p.arguments = args + extraConfig
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            lock.withLock { processes[port] = p }
        }
        for port in ports { try waitFor("node \(port) answers PING", seconds: 20) { try cli(port, ["PING"]).contains("PONG") } }
        var create = ["--cluster", "create"] + addresses + ["--cluster-replicas", "1", "--cluster-yes"]
        if let password { create = ["-a", password, "--no-auth-warning"] + create }
        let created = try Self.runTool("redis-cli", create)
        guard created.status == 0 else { throw StartError(description: "redis-cli --cluster create failed: \(created.output.suffix(2000))") }
        try waitUntilHealthy(seconds: 60)
    }

    /// Waits until every node says `cluster_state:ok` and every master has a replica whose
    /// replication link is up (so `WAIT 1` can be acknowledged).
    public func waitUntilHealthy(seconds: Double) throws {
        try waitFor("cluster_state:ok and every replica's link up", seconds: seconds) {
            for port in livePorts {
                guard try cli(port, ["CLUSTER", "INFO"]).contains("cluster_state:ok") else { return false }
                let replication = try cli(port, ["INFO", "replication"])
                if replication.contains("role:master") {
                    guard !replication.contains("connected_slaves:0") else { return false }
                } else {
                    guard replication.contains("master_link_status:up"), replication.contains("master_sync_in_progress:0") else { return false }
                }
            }
            return true
        }
    }

    public var livePorts: [Int] { lock.withLock { ports.filter { processes[$0]?.isRunning == true } } }

    /// SIGKILL of one node (failover tests).
    public func kill9(port: Int) {
        lock.withLock {
            if let p = processes[port], p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        }
    }

    /// The port of the master that serves `slot`, asked from a live node.
    public func masterPort(slot: Int) throws -> Int? {
        for port in livePorts {
            guard let text = try? cli(port, ["CLUSTER", "NODES"]) else { continue }
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ").map(String.init)
                guard f.count >= 9, f[2].contains("master"), !f[2].contains("fail") else { continue }
                for range in f[8...] {
                    let ends = range.split(separator: "-").compactMap { Int($0) }
                    if (ends.count == 1 && ends[0] == slot) || (ends.count == 2 && (ends[0]...ends[1]).contains(slot)) {
                        return Int(f[1].split(separator: "@")[0].split(separator: ":").last!)
                    }
                }
            }
            return nil
        }
        return nil
    }

    /// `redis-cli -p port ARGS...` on one node; returns stdout.
    @discardableResult
    public func cli(_ port: Int, _ args: [String]) throws -> String {
        var a = ["-h", "127.0.0.1", "-p", "\(port)"]
        if let password { a += ["-a", password, "--no-auth-warning"] }
        return try Self.runTool("redis-cli", a + args).output
    }

    public func stop() {
        lock.withLock {
            for p in processes.values where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
            processes = [:]
        }
        TestSupport.removeTree(directory)
    }

    // MARK: helpers

    private func waitFor(_ what: String, seconds: Double, _ condition: () throws -> Bool) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if (try? condition()) == true { return }
            usleep(100_000)
        }
        throw StartError(description: "redis cluster: timed out after \(seconds) s waiting for \(what)")
    }

    static func tool(_ name: String) throws -> String {
        for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] where FileManager.default.isExecutableFile(atPath: dir + "/" + name) {
            return dir + "/" + name
        }
        throw StartError(description: "\(name) is not installed (run scripts/setup.sh)")
    }

    static func runTool(_ name: String, _ args: [String]) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: try tool(name))
        p.arguments = args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    /// `n` loopback ports that are free along with their cluster bus ports (port + 10000), never
    /// handed out twice in this process (suites start clusters concurrently).
    public static func freePorts(_ n: Int) throws -> [Int] {
        try handedOut.withLock { used in
            var out: [Int] = []
            var attempts = 0
            while out.count < n {
                attempts += 1
                guard attempts < 1000 else { throw StartError(description: "no free loopback ports") }
                let p = Int.random(in: 20000...50000)
                let taken = used.contains(p) || used.contains(p + 10000) || used.contains(p - 10000)
                if !taken, isFree(p), isFree(p + 10000) { out.append(p); used.insert(p); used.insert(p + 10000) }
            }
            return out
        }
    }
    private static let handedOut = LockedPorts()

    final class LockedPorts: @unchecked Sendable {
        private let lock = NSLock()
        private var used = Set<Int>()
        func withLock<T>(_ body: (inout Set<Int>) throws -> T) rethrows -> T {
            lock.lock()
            defer { lock.unlock() }
            return try body(&used)
        }
    }

    static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}
