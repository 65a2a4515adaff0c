import Foundation
import KVRESP
import KVStore
import Synchronization

/// A Redis Cluster client: pipelined connections per master, the slot map from `CLUSTER SHARDS`
/// (`CLUSTER SLOTS` before Redis 7), `MOVED`/`ASK` redirects, and bounded retries while the
/// cluster fails over. Blocking API (callers are the store's synchronous paths): I/O runs on the
/// caller's thread with blocking sockets, each call taking connections from a small per-node pool
/// of idle ones, so concurrent callers never share a connection.
///
/// A call that gives up (retry window spent) starts an outage: until a background probe sees every
/// master answer `cluster_state:ok` again, calls fail at once with `TierUnavailable` instead of
/// each spending the retry window (so requests get their 503 quickly and nodes are not hammered).
public final class RedisCluster: Sendable {
    /// The tier name in errors, `/healthz` and metric labels.
    public static let tierName = "redis-cluster"
    public struct Configuration: Sendable {
        /// Seed nodes "host:port"; any one reachable node is enough.
        public var seeds: [String]
        public var credentials: RedisConnection.Credentials?
        /// Longest wait for one pipelined batch on one node before its connection is dropped.
        public var commandTimeout: Duration = .seconds(5)
        /// How long a call keeps retrying while nodes are down, slots uncovered or the cluster
        /// says TRYAGAIN/CLUSTERDOWN/LOADING (a failover takes about cluster-node-timeout + 1 s).
        public var retryWindow: Duration = .seconds(20)
        /// Pause between outage probes.
        public var probeInterval: Duration = .milliseconds(500)
        /// Told when an outage begins (its cause and detail) and ends (how long it lasted): the log.
        public var onOutage: (@Sendable (_ cause: String, _ detail: String) -> Void)?
        public var onRecovery: (@Sendable (Duration) -> Void)?
        public var parser = RESPParser.Limits()

        public var commandTimeoutMs: Int64 {
            get { commandTimeout.components.seconds * 1000 + commandTimeout.components.attoseconds / 1_000_000_000_000_000 }
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
        /// Calls that gave up, or failed at once during an outage (`TierUnavailable`).
        public var unavailable = 0
        /// Outages begun (a call gave up) and ended (a probe saw the cluster whole again).
        public var outages = 0
        public var recoveries = 0
    }

    /// Why calls fail at once now (set when one gives up, cleared by the probe).
    public struct Outage: Sendable, Equatable {
        /// Client-safe cause: the cluster's own answer (e.g. `CLUSTERDOWN …`) or "no node reachable".
        public var cause: String
        /// With node addresses and errors, for the log.
        public var detail: String
        public var since: ContinuousClock.Instant
    }

    public let configuration: Configuration
    let parser: RESPParser
    /// Idle connections kept per node (more are opened while more callers are busy on it).
    static let maxIdlePerNode = 4
    private struct State {
        var map: SlotMap?
        var idle: [String: [RedisConnection]] = [:]
        var counters = Counters()
        var outage: Outage?
    }
    private let state = Mutex(State())

    public init(_ configuration: Configuration) throws {
        guard !configuration.seeds.isEmpty else { throw ClusterError.badAddress("no seed nodes") }
        for s in configuration.seeds where RedisConnection.parse(s) == nil { throw ClusterError.badAddress(s) }
        self.configuration = configuration
        parser = RESPParser(limits: configuration.parser)
    }

    deinit { close() }

    public var counters: Counters { state.withLock { $0.counters } }

    public var slotMap: SlotMap? { state.withLock { $0.map } }

    /// The current outage, nil while calls are answered.
    public var outage: Outage? { state.withLock { $0.outage } }

    /// Starts an outage (once) and the probe that ends it.
    private func enterOutage(cause: String, detail: String) -> TierUnavailable {
        let started = state.withLock { s in
            s.counters.unavailable += 1
            guard s.outage == nil else { return false }
            s.outage = Outage(cause: cause, detail: detail, since: .now)
            s.counters.outages += 1
            return true
        }
        if started {
            configuration.onOutage?(cause, detail)
            let interval = configuration.probeInterval
            Thread.detachNewThread { [weak self] in
                while let cluster = self, cluster.outage != nil {
                    if cluster.probe() {
                        let lasted = cluster.state.withLock { s in
                            defer { s.outage = nil; s.counters.recoveries += 1 }
                            return s.outage.map { ContinuousClock.now - $0.since }
                        }
                        cluster.configuration.onRecovery?(lasted ?? .zero)
                        return
                    }
                    Thread.sleep(forTimeInterval: Double(interval.components.seconds) + Double(interval.components.attoseconds) / 1e18)
                }
            }
        }
        return TierUnavailable(tier: Self.tierName, cause: cause, detail: detail)
    }

    /// True when a fresh map covers every slot and every master says `cluster_state:ok`.
    func probe() -> Bool {
        guard let map = try? refreshMap(), map.coversAllSlots,
              let info = try? onEveryMaster([Array("CLUSTER".utf8), Array("INFO".utf8)]) else { return false }
        return !info.isEmpty && info.values.allSatisfy { $0.string?.contains("cluster_state:ok") == true }
    }

    // MARK: commands

    /// Runs `commands` and returns one reply per command, in order. Commands are grouped by the
    /// master serving their slot; each group is one pipelined write and all groups are in flight
    /// at once (one round trip per node). `perNodeTail` (e.g. `WAIT`) is appended to every group
    /// and its replies are returned by node. Server errors other than redirects and transient
    /// cluster states come back as `.error` replies.
    public func run(_ commands: [Command], perNodeTail: [[[UInt8]]] = []) throws -> (replies: [RESPValue], tails: [String: [RESPValue]]) {
        if let o = state.withLock({ s -> Outage? in
            if s.outage != nil { s.counters.unavailable += 1 }
            return s.outage
        }) {
            throw TierUnavailable(tier: Self.tierName, cause: o.cause, detail: o.detail)
        }
        var results = [RESPValue?](repeating: nil, count: commands.count)
        var tails: [String: [RESPValue]] = [:]
        var asking: [Int: String] = [:]
        var todo = Array(commands.indices)
        let deadline = ContinuousClock.now + configuration.retryWindow
        var attempt = 0
        var lastProblem = "no reachable node"
        var lastCause = "no node reachable"
        // MOVED answers, applied to the map only when retrying: mutating the map inside the reply
        // loop lets the optimizer hoist its copy-on-write (16,384 entries) into every call.
        var moved: [(slot: Int, node: SlotMap.Node)] = []
        while true {
            var map: SlotMap
            do { map = try currentMap() } catch let e as ClusterError {
                if case .server = e { throw e }
                throw enterOutage(cause: "no node reachable", detail: "\(e)")
            }
            var groups: [String: [Int]] = [:]
            var unrouted: [Int] = []
            for i in todo {
                if let node = asking[i] ?? map.node(slot: commands[i].slot) { groups[node, default: []].append(i) } else { unrouted.append(i) }
            }
            // Phase 1 writes every group's batch, phase 2 reads them: all nodes work at once.
            var inFlight: [(node: String, indices: [Int], count: Int, connection: Result<RedisConnection, any Error>)] = []
            for (node, indices) in groups {
                var bytes: [UInt8] = []
                var count = 0
                for i in indices {
                    if asking[i] != nil { RESPEncoder.append([[Array("ASKING".utf8)]], to: &bytes); count += 1 }
                    RESPEncoder.append(commands[i].args, to: &bytes); count += 1
                }
                for t in perNodeTail { RESPEncoder.append(t.map { [$0] }, to: &bytes); count += 1 }
                let connection = Result { () throws -> RedisConnection in
                    let c = try checkout(node)
                    try c.write(encoded: bytes)
                    return c
                }
                inFlight.append((node, indices, count, connection))
            }
            var retry = !unrouted.isEmpty
            var refresh = !unrouted.isEmpty
            var next = unrouted
            if !unrouted.isEmpty {
                lastProblem = "slot \(commands[unrouted[0]].slot) is served by no node"
                lastCause = "slots are served by no node"
            }
            for (node, indices, count, connection) in inFlight {
                let replies: [RESPValue]
                do {
                    let c = try connection.get()
                    replies = try c.readReplies(count)
                    checkin(c)
                } catch {
                    if case ClusterError.server = error { throw error }   // AUTH refused: retrying cannot help
                    drop(node)
                    lastProblem = "\(node): \(error)"
                    lastCause = "a node is unreachable"
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
                        if let s = Int(words[1]), (0..<HashSlot.count).contains(s) { moved.append((s, String(words[2]))) }
                        refresh = true; next.append(i)
                        state.withLock { $0.counters.redirects += 1 }
                    case "ASK" where words.count == 3:
                        asking[i] = String(words[2]); next.append(i)
                        state.withLock { $0.counters.redirects += 1 }
                    case "TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN":
                        lastProblem = "\(node): \(message)"
                        lastCause = message
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
                throw enterOutage(cause: lastCause, detail: "gave up after \(attempt) attempts: \(lastProblem)")
            }
            state.withLock { $0.counters.retries += 1 }
            if retry { Thread.sleep(forTimeInterval: min(0.05 * Double(attempt), 0.5)) }
            if !moved.isEmpty { map.setMasters(moved); moved = [] }
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

    /// A keyless command (e.g. `CONFIG GET`) on every master of the current map, one after another;
    /// the replies by node. A server error comes back as an `.error` reply.
    public func onEveryMaster(_ command: [[UInt8]]) throws -> [SlotMap.Node: RESPValue] {
        var out: [SlotMap.Node: RESPValue] = [:]
        for node in try currentMap().nodes.sorted() {
            let c = try checkout(node)
            do { out[node] = try c.send([command])[0] } catch { c.close(); throw error }
            checkin(c)
        }
        return out
    }

    /// `CONFIG GET name` on every master: its value by node. Throws when a node refuses (ACLs may).
    public func configGet(_ name: String) throws -> [SlotMap.Node: String] {
        try onEveryMaster([Array("CONFIG".utf8), Array("GET".utf8), Array(name.utf8)]).mapValues { reply in
            if let e = reply.errorMessage { throw ClusterError.server(e) }
            guard case .array(let pair) = reply, pair.count == 2, let value = pair[1].string else { throw ClusterError.badReply("CONFIG GET \(name): \(reply)") }
            return value
        }
    }

    // MARK: map and connections

    func currentMap() throws -> SlotMap {
        if let m = state.withLock({ $0.map }) { return m }
        return try refreshMap()
    }

    /// How the slot map is asked for: `CLUSTER SHARDS` (Redis 7) until a node refuses it as an
    /// unknown command, then `CLUSTER SLOTS` (Redis 6) from then on.
    public enum MapSource: Sendable, Equatable { case shards, slots }
    private let mapSourceState = Mutex(MapSource.shards)
    public var mapSource: MapSource {
        get { mapSourceState.withLock { $0 } }
        set { mapSourceState.withLock { $0 = newValue } }   // tests force the SLOTS path
    }

    /// The map from one node: `CLUSTER SHARDS`, or `CLUSTER SLOTS` where that is unknown.
    func askMap(_ c: RedisConnection, host: String) throws -> SlotMap {
        if mapSource == .shards {
            let reply = try c.send([[Array("CLUSTER".utf8), Array("SHARDS".utf8)]])[0]
            guard let e = reply.errorMessage else { return try SlotMap(clusterShards: reply, fallbackHost: host) }
            // Redis 6: "ERR unknown subcommand 'SHARDS'..." (or an ACL allowing only SLOTS): fall back.
            guard e.contains("unknown subcommand") || e.contains("unknown command") || e.hasPrefix("NOPERM") else { throw ClusterError.server(e) }
            mapSource = .slots
        }
        let reply = try c.send([[Array("CLUSTER".utf8), Array("SLOTS".utf8)]])[0]
        if let e = reply.errorMessage { throw ClusterError.server(e) }
        return try SlotMap(clusterSlots: reply, fallbackHost: host)
    }

    /// Asks known nodes, then the seeds, for the slot map (`askMap`); the first complete map wins.
    @discardableResult
    public func refreshMap() throws -> SlotMap {
        let known = state.withLock { $0.map?.nodes.sorted() ?? [] }
        var problems: [String] = []
        var partial: SlotMap?
        for node in known + configuration.seeds.filter({ !known.contains($0) }) {
            do {
                let c = try checkout(node)
                let map: SlotMap
                do { map = try askMap(c, host: RedisConnection.parse(node)?.0 ?? "127.0.0.1") } catch { c.close(); throw error }
                checkin(c)
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
        throw ClusterError.unavailable("no node answered CLUSTER SHARDS/SLOTS (\(problems.joined(separator: "; ")))")
    }

    /// An idle connection to `node` (one the server closed meanwhile is discarded) or a new one.
    func checkout(_ node: String) throws -> RedisConnection {
        while let c = state.withLock({ $0.idle[node]?.popLast() }) {
            if c.isIdleAndHealthy { return c }
            c.close()
        }
        return try RedisConnection(node, credentials: configuration.credentials, parser: parser, timeout: configuration.commandTimeout)
    }

    /// Gives back a connection whose batch completed; beyond the idle cap it is closed.
    func checkin(_ c: RedisConnection) {
        let kept = state.withLock { s in
            guard s.idle[c.address, default: []].count < Self.maxIdlePerNode else { return false }
            s.idle[c.address, default: []].append(c)
            return true
        }
        if !kept { c.close() }
    }

    /// Closes the idle connections to `node` (after one of its batches failed).
    func drop(_ node: String) {
        for c in state.withLock({ $0.idle.removeValue(forKey: node) ?? [] }) { c.close() }
    }

    public func close() {
        for c in state.withLock({ s in defer { s.idle = [:] }; return s.idle.values.flatMap { $0 } }) { c.close() }
    }
}

extension SlotMap {
    /// `MOVED` replies are authoritative for their slots until the next refresh.
    mutating func setMasters(_ moved: [(slot: Int, node: Node)]) {
        for (slot, node) in moved { masters[slot] = node }
    }
}
