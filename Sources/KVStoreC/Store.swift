import Foundation
import KVCodec
import KVStore
import KVTensor

// The embedded store (include/kvstore.h, "embedded store"): a local ChunkStore directory opened in
// the caller's process, so one node needs no server. Several processes may use one store at once
// (LMDB, as the CLI does); inside one process every handle of a directory shares one ChunkStore,
// because LMDB forbids opening one environment twice in a process.

/// `kvs_store`: one open of a store directory; handles of the same directory share `store`.
final class StoreBox {
    let store: ChunkStore
    let key: String
    init(store: ChunkStore, key: String) {
        self.store = store
        self.key = key
    }
}

/// The process's open stores by canonical path, counted so the last close releases LMDB.
final class OpenStores: @unchecked Sendable {
    static let shared = OpenStores()
    private let lock = NSLock()
    private var open: [String: (store: ChunkStore, count: Int)] = [:]

    func acquire(root: String, chunkTokens: Int?, create: Bool) throws -> StoreBox {
        lock.lock()
        defer { lock.unlock() }
        // Canonical once the directory exists, so two spellings of one path share one environment.
        let key = URL(fileURLWithPath: root).resolvingSymlinksInPath().standardizedFileURL.path
        if let entry = open[key] {
            if let c = chunkTokens, c != entry.store.chunkTokens {
                throw StoreError.config("store at \(root) uses \(entry.store.chunkTokens)-token chunks, not \(c)")
            }
            open[key] = (entry.store, entry.count + 1)
            return StoreBox(store: entry.store, key: key)
        }
        let store = try ChunkStore(root: root, chunkTokens: chunkTokens, create: create)
        let canonical = URL(fileURLWithPath: root).resolvingSymlinksInPath().standardizedFileURL.path
        open[canonical] = (store, 1)
        return StoreBox(store: store, key: canonical)
    }

    func release(_ box: StoreBox) {
        lock.lock()
        defer { lock.unlock() }
        guard let entry = open[box.key] else { return }
        open[box.key] = entry.count > 1 ? (entry.store, entry.count - 1) : nil
    }
}

/// The namespace JSON every call takes: what must match for stored KV to be reused.
struct SpaceArgument: Decodable {
    var model: String
    var dtype: String
    var layers: Int64
    var kv_heads: Int64
    var head_dim: Int64
    var tenant: String?

    static func parse(_ json: UnsafePointer<CChar>?, store: ChunkStore) throws -> Namespace {
        let text = try require(json, "space")
        let bytes = Data(bytes: text, count: strlen(text))
        guard bytes.count <= 1 << 16 else { throw CError.Argument(description: "space JSON of \(bytes.count) bytes, at most 65536") }
        let s: SpaceArgument
        do { s = try JSONDecoder().decode(SpaceArgument.self, from: bytes) } catch {
            throw CError.Argument(description: "space is not {\"model\", \"dtype\", \"layers\", \"kv_heads\", \"head_dim\", \"tenant\"?}: \(error)")
        }
        guard let dtype = DType(rawValue: s.dtype.uppercased()) else {
            throw CError.Argument(description: "space dtype \(s.dtype) is not F16, BF16 or F32")
        }
        guard let shape = boundedShape(s.layers, s.kv_heads, s.head_dim) else {
            throw CError.Argument(description: "space shape [\(s.layers), \(s.kv_heads), \(s.head_dim)] is out of bounds")
        }
        try NameRules.checkModelID(s.model)
        return Namespace(model: s.model, dtype: dtype, shape: shape, chunkTokens: store.chunkTokens, salt: s.tenant)
    }
}

func storeArgument(_ s: OpaquePointer?) throws -> ChunkStore {
    borrowed(try require(s, "store"), as: StoreBox.self).store
}

@_cdecl("kvs_store_open")
public func kvs_store_open(_ root: UnsafePointer<CChar>?, _ chunkTokens: Int64, _ create: Int32,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try require(out, "out")
        let root = String(cString: try require(root, "root"))
        guard !root.isEmpty else { throw CError.Argument(description: "root is empty") }
        guard chunkTokens >= 0, chunkTokens <= ChunkContainer.maxTokens else {
            throw CError.Argument(description: "chunk_tokens \(chunkTokens) outside 0...\(ChunkContainer.maxTokens)")
        }
        hand(try OpenStores.shared.acquire(root: root, chunkTokens: chunkTokens == 0 ? nil : Int(chunkTokens),
                                           create: create != 0), to: out)
        return 0
    }
}

@_cdecl("kvs_store_close")
public func kvs_store_close(_ s: OpaquePointer?) {
    guard let s else { return }
    OpenStores.shared.release(borrowed(s, as: StoreBox.self))
    release(s, as: StoreBox.self)
}

@_cdecl("kvs_store_chunk_tokens")
public func kvs_store_chunk_tokens(_ s: OpaquePointer?) -> Int64 {
    guard let s else { return 0 }
    return Int64(borrowed(s, as: StoreBox.self).store.chunkTokens)
}

@_cdecl("kvs_store_lookup")
public func kvs_store_lookup(_ s: OpaquePointer?, _ space: UnsafePointer<CChar>?, _ tokens: UnsafePointer<Int32>?,
                             _ count: Int64, _ matched: UnsafeMutablePointer<Int64>?,
                             _ chunks: UnsafeMutablePointer<Int64>?) -> Int32 {
    guarded {
        let store = try storeArgument(s)
        let namespace = try SpaceArgument.parse(space, store: store)
        let ids = try tokensArgument(tokens, count)
        let match = try store.lookup(ids, namespace: namespace)
        matched?.pointee = Int64(match.tokens)
        chunks?.pointee = Int64(match.chunks.count)
        return 0
    }
}

@_cdecl("kvs_store_read")
public func kvs_store_read(_ s: OpaquePointer?, _ space: UnsafePointer<CChar>?, _ tokens: UnsafePointer<Int32>?,
                           _ count: Int64, _ level: Int32, _ firstChunk: Int64, _ chunkCount: Int64,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try require(out, "out")
        let store = try storeArgument(s)
        let namespace = try SpaceArgument.parse(space, store: store)
        let ids = try tokensArgument(tokens, count)
        let level: UInt8? = level < 0 ? nil : try levelArgument(level)
        guard firstChunk >= 0, chunkCount >= 1 else {
            throw CError.Argument(description: "chunks [\(firstChunk), +\(chunkCount)) is not a range of chunks")
        }
        var match = try store.lookup(ids, namespace: namespace)
        guard firstChunk + chunkCount <= match.chunks.count else {
            throw StoreError.notFound("chunks [\(firstChunk), \(firstChunk + chunkCount)) asked, \(match.chunks.count) stored for the query")
        }
        match.chunks = Array(match.chunks[Int(firstChunk)..<Int(firstChunk + chunkCount)])
        let blobs = try match.chunks.map { chunk in
            guard let bytes = try store.chunkBytes(chunk, level: level) else {
                throw StoreError.notFound("chunk \(chunk.record.position) was removed since the lookup")
            }
            return bytes
        }
        // Chunks decode independently: on every core the process may use.
        let chunks = match.chunks
        let parts = try Parallel.map(blobs.count, threads: Parallel.defaultThreads) { i in
            let tensor = try ChunkContainer.decode(blobs[i])
            guard tensor.tokens == chunks[i].range.count, tensor.shape == namespace.shape, tensor.dtype == namespace.dtype else {
                throw StoreError.corruptBlob("chunk \(chunks[i].record.position) decodes to \(tensor.tokens) tokens of \(tensor.shape) \(tensor.dtype.rawValue)")
            }
            return tensor
        }
        store.recordAccess(match)
        hand(TensorBox(parts.count == 1 ? parts[0] : try KVTensor.concatenate(parts)), to: out)
        return 0
    }
}

@_cdecl("kvs_store_put")
public func kvs_store_put(_ s: OpaquePointer?, _ space: UnsafePointer<CChar>?, _ kv: UnsafeRawPointer?, _ nbytes: Int,
                          _ tokens: UnsafePointer<Int32>?, _ count: Int64, _ levels: UnsafePointer<Int32>?,
                          _ levelCount: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let store = try storeArgument(s)
        let namespace = try SpaceArgument.parse(space, store: store)
        guard levelCount >= 1, levelCount <= 16 else { throw CError.Argument(description: "\(levelCount) levels; give 1 to 5") }
        let levels = try UnsafeBufferPointer(start: try require(levels, "levels"), count: Int(levelCount)).map(levelArgument)
        let ctx = try contextArgument(kv, nbytes, Int32(namespace.dtype.code), Int64(namespace.shape.layers),
                                      Int64(namespace.shape.kvHeads), Int64(namespace.shape.headDim), tokens, count, nil)
        let report = try store.put(ctx, namespace: namespace, levels: levels, threads: Parallel.defaultThreads)
        if let out { hand(BytesBox(Array(try JSONEncoder().encode(report))), to: out) }
        return 0
    }
}
