import CLMDB
import KVCodec
import KVTensor

/// Settings of the vLLM block-hash index: how the vLLM instance hashes (see `VLLMBlockHash`).
public struct VLLMHashing: Sendable, Equatable {
    public var noneHash: Hash32
    public var blockSize: Int
    public var loraName: String?
    public var salt: String?

    public init(seed: String, blockSize: Int = VLLMBlockHash.defaultBlockSize, loraName: String? = nil, salt: String? = nil) {
        self.init(noneHash: VLLMBlockHash.noneHash(seed: seed), blockSize: blockSize, loraName: loraName, salt: salt)
    }

    public init(noneHash: Hash32, blockSize: Int = VLLMBlockHash.defaultBlockSize, loraName: String? = nil, salt: String? = nil) {
        self.noneHash = noneHash
        self.blockSize = blockSize
        self.loraName = loraName
        self.salt = salt
    }
}

/// One vLLM block found through the index: the stored chunk holding it and where.
public struct VLLMBlockMatch: Sendable, Equatable {
    public var hash: Hash32
    public var chunk: Hash32
    public var offset: Int
    public var tokens: [Int32]
}

extension ChunkStore {
    var vllmDB: MDB_dbi { env.database("vllm") }

    /// Indexes the stored chunks of `tokens` (already put in `namespace`, with `adapter` if any) under
    /// the block hashes vLLM computes for them, so a vLLM connector can look up by its own hashes.
    /// Entries point at chunk keys and are checked on lookup, so they never serve removed KV.
    /// Returns the number of blocks indexed.
    @discardableResult
    public func indexVLLM(_ tokens: [Int32], namespace: Namespace, adapter: AdapterSpan? = nil, hashing: VLLMHashing) throws -> Int {
        guard hashing.blockSize > 0, chunkTokens % hashing.blockSize == 0 else {
            throw StoreError.invalidInput("vLLM block size \(hashing.blockSize) does not divide the store's \(chunkTokens)-token chunks")
        }
        let plan = ReuseChain.plan(tokens: tokens, namespace: namespace, adapter: adapter)
        let hashes = VLLMBlockHash.hashes(tokens: tokens, blockSize: hashing.blockSize, noneHash: hashing.noneHash,
                                          loraName: hashing.loraName, salt: hashing.salt)
        return try env.write { txn in
            var indexed = 0
            for (b, h) in hashes.enumerated() {
                let start = b * hashing.blockSize
                let link = plan[start / chunkTokens]
                guard try txn.get(chunkDB, link.hash.bytes) != nil else { break }
                var w = ByteWriter(capacity: 40 + 4 * hashing.blockSize)
                w.append(link.hash.bytes)
                w.append(UInt32(start - link.range.lowerBound))
                w.append(UInt32(hashing.blockSize))
                for t in tokens[start..<(start + hashing.blockSize)] { w.append(UInt32(bitPattern: t)) }
                try txn.put(vllmDB, h.bytes, w.bytes)
                indexed += 1
            }
            return indexed
        }
    }

    /// Deletes vLLM index rows whose chunk is no longer stored (left by `remove`); returns how many.
    @discardableResult
    public func pruneVLLM() throws -> Int {
        try env.write { txn in
            var dead: [[UInt8]] = []
            try txn.scan(vllmDB) { key, value in
                let alive = value.count >= 32 ? try txn.get(chunkDB, Array(value[0..<32])) != nil : false
                if !alive { dead.append(key) }
                return true
            }
            for key in dead { try txn.delete(vllmDB, key) }
            return dead.count
        }
    }

    /// The longest run of `hashes` (a request's vLLM block hashes, in order) whose blocks are stored.
    public func lookupVLLM(_ hashes: [Hash32]) throws -> [VLLMBlockMatch] {
        try env.read { txn in
            var out: [VLLMBlockMatch] = []
            for h in hashes {
                guard let raw = try txn.get(vllmDB, h.bytes), raw.count >= 40 else { break }
                var r = RecordReader(raw)
                let chunk = r.hash()
                let offset = Int(r.u32()), count = Int(r.u32())
                guard raw.count == 40 + 4 * count, try txn.get(chunkDB, chunk.bytes) != nil else { break }
                out.append(VLLMBlockMatch(hash: h, chunk: chunk, offset: offset, tokens: (0..<count).map { _ in Int32(bitPattern: r.u32()) }))
            }
            return out
        }
    }

    /// The KV and tokens of the longest stored run of `hashes`, or nil when the first is not stored.
    public func getVLLM(_ hashes: [Hash32], level: UInt8? = nil) throws -> (context: KVContext, blocks: [VLLMBlockMatch])? {
        var blocks = try lookupVLLM(hashes)
        var parts: [KVTensor] = []
        var decoded: [Hash32: KVTensor] = [:]
        for (i, block) in blocks.enumerated() {
            if decoded[block.chunk] == nil {
                guard let raw = try env.read({ try $0.get(chunkDB, block.chunk.bytes) }) else { blocks.removeSubrange(i...); break }
                let record = try ChunkRecord(decoding: raw)
                let match = MatchedChunk(hash: block.chunk, record: record, range: 0..<record.tokens)
                guard let bytes = try chunkBytes(match, level: level) else { blocks.removeSubrange(i...); break }
                decoded[block.chunk] = try ChunkContainer.decode(bytes)
            }
            let chunk = decoded[block.chunk]!
            guard block.offset + block.tokens.count <= chunk.tokens else {
                throw StoreError.corruptBlob("vLLM block \(block.hash.hex.prefix(16)) points past its chunk's \(chunk.tokens) tokens")
            }
            parts.append(chunk.slice(tokens: block.offset..<(block.offset + block.tokens.count)))
        }
        guard !parts.isEmpty else { return nil }
        let kv = try KVTensor.concatenate(parts)
        return (try KVContext(kv: kv, tokens: blocks.flatMap(\.tokens)), blocks)
    }
}
