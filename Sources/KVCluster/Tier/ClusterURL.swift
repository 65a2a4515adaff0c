/// The `--cluster` argument: `redis://[user[:password]@]host:port[,host:port...]` (the scheme is
/// optional). A pure parse, so the CLI and the tests agree on one syntax.
public struct ClusterURL: Sendable, Equatable {
    public var seeds: [String]
    public var user: String?
    public var password: String?

    public init(_ text: String) throws(ClusterError) {
        var rest = Substring(text)
        if rest.hasPrefix("redis://") { rest = rest.dropFirst(8) }
        if let at = rest.lastIndex(of: "@") {
            let cred = rest[..<at]
            rest = rest[rest.index(after: at)...]
            if let colon = cred.firstIndex(of: ":") {
                let u = String(cred[..<colon]).removingPercentEscapes
                user = u.isEmpty ? nil : u
                password = String(cred[cred.index(after: colon)...]).removingPercentEscapes
            } else {
                password = String(cred).removingPercentEscapes
            }
        }
        while rest.hasSuffix("/") { rest = rest.dropLast() }
        seeds = rest.split(separator: ",").map { String($0).trimmingSpaces }
        guard !seeds.isEmpty else { throw .badAddress("\(text): no host:port") }
        for s in seeds where RedisConnection.parse(s) == nil { throw .badAddress("\(s) in --cluster is not host:port") }
    }
}

extension String {
    var trimmingSpaces: String { String(drop { $0 == " " }.reversed().drop { $0 == " " }.reversed()) }

    /// %XX escapes decoded (passwords with '@' or ':' in a URL); malformed escapes stay as given.
    var removingPercentEscapes: String {
        var out: [UInt8] = []
        let u = Array(utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "%"), i + 2 < u.count, let v = UInt8(String(decoding: u[(i + 1)...(i + 2)], as: UTF8.self), radix: 16) {
                out.append(v); i += 3
            } else {
                out.append(u[i]); i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
