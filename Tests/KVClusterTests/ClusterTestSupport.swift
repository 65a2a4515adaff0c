import Foundation
import KVCluster
import KVStore
import KVTensor
import TestSupport

/// Contexts whose KV is a pure function of the token prefix, so the bytes any returned prefix must
/// hold are known without asking the store.
enum SyntheticContexts {
    static let shape = KVShape(layers: 2, kvHeads: 2, headDim: 64)

    /// KV of the chunk ending at `tokens.count`: seeded by every token before it.
    static func chunkKV(prefix tokens: ArraySlice<Int32>, count: Int) throws -> KVTensor {
        var s: UInt64 = 0xcbf29ce484222325
        for t in tokens { s = (s ^ UInt64(UInt32(bitPattern: t))) &* 0x100000001b3 }
        let n = shape.elementsPerToken * count
        let floats = (0..<n).map { _ -> Float in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int(s >> 52) - 2048) / 256
        }
        return try KVTensor(shape: shape, tokens: count, dtype: .f16, floats: floats)
    }

    /// The whole context of `tokens` with chunks of `chunkTokens`.
    static func context(_ tokens: [Int32], chunkTokens: Int) throws -> KVContext {
        let parts = try PrefixChain.chunkRanges(count: tokens.count, chunkTokens: chunkTokens).map {
            try chunkKV(prefix: tokens[0..<$0.upperBound], count: $0.count)
        }
        return try KVContext(kv: KVTensor.concatenate(parts), tokens: tokens, metadata: ["model": "synthetic"])
    }
}

extension ChunkTier {
    /// A put encoded as an embedded store with no profile stored for the model encodes it.
    func storeContext(_ context: KVContext, namespace: Namespace, levels: [UInt8], name: String) throws -> PutReport {
        try storeContext(try EncodedContext(context, namespace: namespace, levels: levels, storedProfile: nil), name: name)
    }
}

extension RedisClusterFixture {
    /// A cluster tier on this fixture.
    func tier(chunkTokens: Int, waitReplicas: Int = 0, user: String? = nil, password: String? = nil,
              retrySeconds: Int = 20) throws -> RedisChunkTier {
        var config = RedisCluster.Configuration(seeds: Array(addresses.prefix(2)),
                                                credentials: (password ?? self.password).map { .init(user: user, password: $0) })
        config.retryWindow = .seconds(retrySeconds)
        return RedisChunkTier(cluster: try RedisCluster(config), chunkTokens: chunkTokens, waitReplicas: waitReplicas)
    }

    /// `INFO` field of every live master, summed.
    func infoSum(_ field: String) throws -> Int {
        var total = 0
        for port in livePorts {
            let info = try cli(port, ["INFO"])
            guard info.contains("role:master") else { continue }
            for line in info.split(whereSeparator: \.isNewline) where line.hasPrefix(field + ":") {
                total += Int(line.split(separator: ":")[1]) ?? 0
            }
        }
        return total
    }

    var masterPorts: [Int] {
        livePorts.filter { (try? cli($0, ["INFO", "replication"]).contains("role:master")) == true }
    }

    /// Gives each master `headroom` bytes of `maxmemory` above what it uses empty (less, and Redis'
    /// own buffers alone pass it: every write is then refused) under `policy`; returns the total.
    @discardableResult
    func limitMemory(headroom: Int, policy: String) throws -> Int {
        let masters = masterPorts
        for port in masters {
            let info = try cli(port, ["INFO", "memory"])
            let own = info.split(whereSeparator: \.isNewline).first { $0.hasPrefix("used_memory:") }.flatMap { Int($0.split(separator: ":")[1]) } ?? 0
            try cli(port, ["CONFIG", "SET", "maxmemory", "\(own + headroom)"])
            try cli(port, ["CONFIG", "SET", "maxmemory-policy", policy])
        }
        return headroom * masters.count
    }
}
