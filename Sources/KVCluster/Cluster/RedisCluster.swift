import Foundation
import KVRESP
import NIOCore
import NIOPosix
import Synchronization

/// A Redis Cluster client: one pipelined connection per master, the slot map from `CLUSTER SLOTS`,
/// `MOVED`/`ASK` redirects, and bounded retries while the cluster fails over. Blocking API (callers
/// are the store's synchronous paths); I/O runs on NIO event loops.
public final class RedisCluster: Sendable {
    public struct Configuration: Sendable {
        /// Seed nodes "host:port"; any one reachable node is enough.
        public var seeds: [String]
        public var credentials: RedisConnection.Credentials?
        /// Longest wait for one pipelined batch on one node before its connection is dropped.
        public var commandTimeout: TimeAmount = .seconds(5)
        /// How long a call keeps retrying while nodes are down, slots uncovered or the cluster
        /// says TRYAGAIN/CLUSTERDOWN/LOADING (a failover takes about cluster-node-timeout + 1 s).
        public var retryWindow: Duration = .seconds(20)
        public var parser = RESPParser.Limits()

        public var commandTimeoutMs: Int64 {
            get { commandTimeout.nanoseconds / 1_000_000 }
            set { commandTimeout = .milliseconds(newValue) }
        }

        public init(seeds: [String], credentials: RedisConnection.Credentials? = nil) {
            self.seeds = seeds
            self.credentials = credentials
        }
    }

    /// A command and the key that routes it.
    public struct Command: Sendable {
        public var key: [UInt8]
        /// The whole command (name first); an argument may be given in parts.
        public var args: [[[UInt8]]]
        public init(key: [UInt8], args: [[[UInt8]]]) { self.key = key; self.args = args }
        public init(_ name: String, key: [UInt8], _ rest: [[UInt8]] = []) {
            self.key = key
            args = [[Array(name.utf8)], [key]] + rest.map { [$0] }
        }
        var slot: Int { HashSlot.slot(key) }
    }

    /// Counters since start (for /metrics).
    public struct Counters: Sendable, Equatable {
        public var redirects = 0
        public var retries = 0
        public var mapRefreshes = 0
    }

    public let configuration: Configuration
    let group: EventLoopGroup
    let parser: RESPParser
    private struct State {
        var map: SlotMap?
        var connections: [String: RedisConnection] = [:]
        var counters = Counters()
    }
    private let state = Mutex(State())

    public init(_ configuration: Configuration, group: EventLoopGroup = MultiThreadedEventLoopGroup.singleton) throws {
        guard !configuration.seeds.isEmpty else { throw ClusterError.badAddress("no seed nodes") }
        for s in configuration.seeds where RedisConnection.parse(s) == nil { throw ClusterError.badAddress(s) }
        self.configuration = configuration
        self.group = group
        parser = RESPParser(limits: configuration.parser)
    }

    deinit {
        for c in state.withLock({ $0.connections.values }) { c.close() }
    }

    public var counters: Counters { state.withLock { $0.counters } }

    public var slotMap: SlotMap? { state.withLock { $0.map } }

    // MARK: commands

    /// Runs `commands` and returns one reply per command, in order. Commands are grouped by the
    /// master serving their slot; each group is one pipelined write and all groups are in flight
    /// at once (one round trip per node). `perNodeTail` (e.g. `WAIT`) is appended to every group
    /// and its replies are returned by node. Server errors other than redirects and transient
    /// cluster states come back as `.error` replies.
    public func run(_ commands: [Command], perNodeTail: [[[UInt8]]] = []) throws -> (replies: [RESPValue], tails: [String: [RESPValue]]) {
        var results = [RESPValue?](repeating: nil, count: commands.count)
        var tails: [String: [RESPValue]] = [:]
        var asking: [Int: String] = [:]
        var todo = Array(commands.indices)
        let deadline = ContinuousClock.now + configuration.retryWindow
        var attempt = 0
        var lastProblem = "no reachable node"
        while true {
            var map = try currentMap()
            var groups: [String: [Int]] = [:]
            var unrouted: [Int] = []
            for i in todo {
                if let node = asking[i] ?? map.node(slot: commands[i].slot) { groups[node, default: []].append(i) } else { unrouted.append(i) }
            }
            var inFlight: [(node: String, indices: [Int], future: EventLoopFuture<[RESPValue]>)] = []
            for (node, indices) in groups {
                var bytes: [UInt8] = []
                var count = 0
                for i in indices {
                    if asking[i] != nil { RESPEncoder.append([[Array("ASKING".utf8)]], to: &bytes); count += 1 }
                    RESPEncoder.append(commands[i].args, to: &bytes); count += 1
                }
                for t in perNodeTail { RESPEncoder.append(t.map { [$0] }, to: &bytes); count += 1 }
                let future = connection(node).flatMap { [bytes, count] in $0.send(encoded: bytes, count: count) }
                inFlight.append((node, indices, future))
            }
            var retry = !unrouted.isEmpty
            var refresh = !unrouted.isEmpty
            var next = unrouted
            if !unrouted.isEmpty { lastProblem = "slot \(commands[unrouted[0]].slot) is served by no node" }
            for (node, indices, future) in inFlight {
                let replies: [RESPValue]
                do { replies = try future.wait() } catch {
                    if case ClusterError.server = error { throw error }   // AUTH refused: retrying cannot help
                    drop(node)
                    lastProblem = "\(node): \(error)"
                    retry = true; refresh = true
                    next += indices
                    continue
                }
                var k = 0
                for i in indices {
                    if asking[i] != nil { k += 1 }
                    let reply = replies[k]; k += 1
                    asking[i] = nil
                    guard let message = reply.errorMessage else { results[i] = reply; continue }
                    let words = message.split(separator: " ")
                    switch words.first {
                    case "MOVED" where words.count == 3:
                        if let s = Int(words[1]), (0..<HashSlot.count).contains(s) { map.setMaster(String(words[2]), slot: s) }
                        refresh = true; next.append(i)
                        state.withLock { $0.counters.redirects += 1 }
                    case "ASK" where words.count == 3:
                        asking[i] = String(words[2]); next.append(i)
                        state.withLock { $0.counters.redirects += 1 }
                    case "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN":
                        lastProblem = "\(node): \(message)"
                        retry = true; refresh = true; next.append(i)
                    default:
                        results[i] = reply
                    }
                }
                if !perNodeTail.isEmpty { tails[node] = Array(replies[k...]) }
            }
            todo = next
            if todo.isEmpty { return (results.map { $0! }, tails) }
            attempt += 1
            guard ContinuousClock.now < deadline, attempt < 1000 else {
                throw ClusterError.unavailable("gave up after \(attempt) attempts: \(lastProblem)")
            }
            state.withLock { $0.counters.retries += 1 }
            if retry { Thread.sleep(forTimeInterval: min(0.05 * Double(attempt), 0.5)) }
            if refresh { map = (try? refreshMap()) ?? map }
            state.withLock { [map] in $0.map = map }
        }
    }

    /// One command (routed by its key); a server error is thrown.
    @discardableResult
    public func call(_ command: Command) throws -> RESPValue {
        let reply = try run([command]).replies[0]
        if let e = reply.errorMessage { throw ClusterError.server(e) }
        return reply
    }

    // MARK: map and connections

    func currentMap() throws -> SlotMap {
        if let m = state.withLock({ $0.map }) { return m }
        return try refreshMap()
    }

    /// Asks known nodes, then the seeds, for `CLUSTER SLOTS`; the first complete map wins.
    @discardableResult
    public func refreshMap() throws -> SlotMap {
        let known = state.withLock { $0.map?.nodes.sorted() ?? [] }
        var problems: [String] = []
        var partial: SlotMap?
        for node in known + configuration.seeds.filter({ !known.contains($0) }) {
            do {
                let reply = try connection(node).flatMap { $0.send([[Array("CLUSTER".utf8), Array("SLOTS".utf8)]]) }.wait()[0]
                if let e = reply.errorMessage { throw ClusterError.server(e) }
                let map = try SlotMap(clusterSlots: reply, fallbackHost: RedisConnection.parse(node)?.0 ?? "127.0.0.1")
                state.withLock { $0.counters.mapRefreshes += 1 }
                if map.coversAllSlots {
                    state.withLock { $0.map = map }
                    return map
                }
                partial = partial ?? map
            } catch {
                drop(node)
                problems.append("\(node): \(error)")
            }
        }
        if let partial {
            state.withLock { $0.map = partial }
            return partial
        }
        throw ClusterError.unavailable("no node answered CLUSTER SLOTS (\(problems.joined(separator: "; ")))")
    }

    func connection(_ node: String) -> EventLoopFuture<RedisConnection> {
        if let c = state.withLock({ $0.connections[node] }), c.isActive { return c.channel.eventLoop.makeSucceededFuture(c) }
        return RedisConnection.connect(node, group: group, credentials: configuration.credentials, parser: parser,
                                       timeout: configuration.commandTimeout)
            .map { c in
                let winner = self.state.withLock { s -> RedisConnection in
                    if let old = s.connections[node], old.isActive { return old }
                    s.connections[node] = c
                    return c
                }
                if winner !== c { c.close() }
                return winner
            }
    }

    func drop(_ node: String) {
        if let c = state.withLock({ $0.connections.removeValue(forKey: node) }) { c.close() }
    }

    public func close() {
        for c in state.withLock({ s in defer { s.connections = [:] }; return Array(s.connections.values) }) { c.close() }
    }
}

extension SlotMap {
    /// A `MOVED` reply is authoritative for its slot until the next refresh.
    mutating func setMaster(_ node: Node, slot: Int) { masters[slot] = node }
}
