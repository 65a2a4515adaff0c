import KVRESP

/// Which master serves each hash slot, from a `CLUSTER SLOTS` reply. A pure value: refreshing
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
