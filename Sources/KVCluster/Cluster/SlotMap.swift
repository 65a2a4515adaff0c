import KVRESP

/// Which master serves each hash slot, from a `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` reply. A pure value: refreshing
/// the map means parsing a new reply and swapping it in.
public struct SlotMap: Sendable, Equatable {
    /// A node address "host:port".
    public typealias Node = String

    /// Master of each slot; nil where no node claims it.
    public internal(set) var masters: [Node?]

    public init() { masters = Array(repeating: nil, count: HashSlot.count) }

    /// Parses `CLUSTER SLOTS`: an array of [start, end, [host, port, id...], replicas...].
    /// An empty host means "the host you asked", given as `fallbackHost`.
    public init(clusterSlots reply: RESPValue, fallbackHost: String) throws(ClusterError) {
        self.init()
        guard case .array(let ranges) = reply else { throw .badReply("CLUSTER SLOTS: \(reply)") }
        for r in ranges {
            guard case .array(let f) = r, f.count >= 3, case .integer(let start) = f[0], case .integer(let end) = f[1],
                  case .array(let master) = f[2], master.count >= 2, case .integer(let port) = master[1],
                  (0..<Int64(HashSlot.count)).contains(start), (start..<Int64(HashSlot.count)).contains(end),
                  (1...65535).contains(port) else { throw .badReply("CLUSTER SLOTS entry: \(r)") }
            var host = master[0].string ?? ""
            if host.isEmpty || host == "?" { host = fallbackHost }
            let node = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            for s in Int(start)...Int(end) { masters[s] = node }
        }
    }

    /// Parses `CLUSTER SHARDS` (RESP2): an array of shards, each a flat key/value array with
    /// "slots" (start, end pairs) and "nodes" (flat key/value arrays: "port", "ip", "endpoint",
    /// "role", ...). The shard's master serves its slots; its address is the endpoint, else the ip,
    /// else (empty or "?") the host asked, `fallbackHost`.
    public init(clusterShards reply: RESPValue, fallbackHost: String) throws(ClusterError) {
        self.init()
        guard case .array(let shards) = reply else { throw .badReply("CLUSTER SHARDS: \(reply)") }
        for shard in shards {
            let fields = Self.fields(shard)
            guard case .array(let bounds)? = fields["slots"], bounds.count % 2 == 0, case .array(let nodes)? = fields["nodes"] else {
                throw .badReply("CLUSTER SHARDS entry: \(shard)")
            }
            guard !bounds.isEmpty else { continue }   // a shard without slots (e.g. a new empty master)
            guard let master = nodes.map(Self.fields).first(where: { $0["role"]?.string == "master" }),
                  case .integer(let port)? = master["port"], (1...65535).contains(port) else {
                throw .badReply("CLUSTER SHARDS shard without a master: \(shard)")
            }
            var host = [master["endpoint"]?.string, master["ip"]?.string].compactMap { $0 }.first { !$0.isEmpty && $0 != "?" } ?? fallbackHost
            if host.isEmpty { host = fallbackHost }
            let node = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            for pair in stride(from: 0, to: bounds.count, by: 2) {
                guard let start = Self.integer(bounds[pair]), let end = Self.integer(bounds[pair + 1]),
                      (0..<HashSlot.count).contains(start), (start..<HashSlot.count).contains(end) else {
                    throw .badReply("CLUSTER SHARDS slot range: \(bounds[pair]) \(bounds[pair + 1])")
                }
                for s in start...end { masters[s] = node }
            }
        }
    }

    /// A RESP2 flat key/value array as a dictionary (later duplicates win; non-string keys skipped).
    static func fields(_ value: RESPValue) -> [String: RESPValue] {
        guard case .array(let items) = value else { return [:] }
        var out: [String: RESPValue] = [:]
        for k in stride(from: 0, to: items.count - 1, by: 2) { if let name = items[k].string { out[name] = items[k + 1] } }
        return out
    }

    static func integer(_ value: RESPValue) -> Int? {
        switch value {
        case .integer(let n): Int(exactly: n)
        case .bulk, .simple: value.string.flatMap { Int($0) }
        default: nil
        }
    }

    public func node(slot: Int) -> Node? { masters[slot] }
    public var nodes: Set<Node> { Set(masters.compactMap { $0 }) }
    public var coversAllSlots: Bool { !masters.contains(nil) }
}

public enum ClusterError: Error, Equatable, CustomStringConvertible {
    case badReply(String)
    case server(String)
    case unavailable(String)
    case timeout(String)
    case badAddress(String)

    public var description: String {
        switch self {
        case .badReply(let m): "redis: unexpected reply: \(m.prefix(300))"
        case .server(let m): "redis: \(m)"
        case .unavailable(let m): "redis cluster unavailable: \(m)"
        case .timeout(let m): "redis: timed out: \(m)"
        case .badAddress(let m): "redis: bad address: \(m)"
        }
    }
}
