import Foundation
import KVCodec
import KVTensor

/// Builds a large store quickly for GC benchmarks: the index work of real puts (chunk, blob,
/// context and partial records, shared prefixes, spread access times) without the cost of encoding
/// full-size contexts. Each chunk is a small [1, 2, tokens, 1, 64] f16 tensor cut from real KV
/// bytes at its own offset, so every blob is distinct and real.
public enum SyntheticStore {
    public struct Layout: Sendable {
        /// Chunks per context, of which the first `sharedChunks` are shared by a group of contexts.
        public var contextChunks = 16
        public var sharedChunks = 8
        public var groupSize = 4
        /// Access times spread uniformly over this many seconds before now.
        public var ageSpread = 30 * 86400
        public init() {}
    }

    public struct Summary: Sendable, Codable {
        public var contexts: Int
        public var chunks: Int
        public var blobBytes: Int
    }

    public static let headDim = 64

    public static func namespace(chunkTokens: Int) -> Namespace {
        Namespace(model: "synthetic-bench", dtype: .f16, shape: KVShape(layers: 1, kvHeads: 1, headDim: headDim), chunkTokens: chunkTokens)
    }

    /// Adds about `chunks` chunks to `store` (whole groups), cut from the bytes of `source` (F16 KV).
    public static func populate(_ store: ChunkStore, source: KVTensor, chunks target: Int, layout: Layout = Layout()) throws -> Summary {
        guard source.dtype == .f16 else { throw StoreError.invalidInput("synthetic chunks are cut from F16 KV, got \(source.dtype.rawValue)") }
        let t = store.chunkTokens
        let ns = namespace(chunkTokens: t)
        let chunkBytes = 2 * t * headDim * 2
        let perGroup = layout.sharedChunks + layout.groupSize * (layout.contextChunks - layout.sharedChunks)
        let groups = max(1, (target + perGroup - 1) / perGroup)
        let step = ((source.bytes.count - chunkBytes) / (groups * perGroup)) & ~1
        guard step >= 2 else { throw StoreError.invalidInput("source KV of \(source.bytes.count) bytes is too small for \(groups * perGroup) distinct chunks") }
        let now = store.clock()
        var rng = SystemRandomNumberGenerator()
        var cut = 0, blobBytes = 0, made = 0

        func chunk() throws -> LevelBlob {
            let window = Array(source.bytes[(cut * step)..<(cut * step + chunkBytes)])
            cut += 1
            let tensor = try KVTensor(shape: ns.shape, tokens: t, dtype: .f16, bytes: window)
            let bytes = try ChunkContainer.encode(tensor, level: CodecLevel.lossless)
            let id = Hash32.sha256(bytes)
            let path = store.blobs.path(of: id)
            let dir = FileIO.directoryOf(path)
            if !FileIO.exists(dir) { try FileIO.makeDirectories(dir) }
            try FileIO.writeAtomically([bytes], to: path, tempDirectory: store.blobs.tempDirectory, sync: false)
            blobBytes += bytes.count
            return LevelBlob(level: CodecLevel.lossless, blob: id, bytes: bytes.count)
        }
        func tokens(_ a: Int, _ b: Int) -> [Int32] { [Int32(a), Int32(b)] + [Int32](repeating: 7, count: max(0, t - 2)) }

        let batch = 200
        for first in stride(from: 0, to: groups, by: batch) {
            var chunkRecords: [(Hash32, ChunkRecord)] = []
            var blobRecords: [(Hash32, BlobRecord)] = []
            var contexts: [(Hash32, ContextRecord)] = []
            for g in first..<min(first + batch, groups) {
                let ages = (0..<layout.groupSize).map { _ in now - Int.random(in: 0...layout.ageSpread, using: &rng) }
                var parent = ns.root
                var shared: [Hash32] = []
                for p in 0..<layout.sharedChunks {
                    let h = PrefixChain.next(parent, tokens: tokens(g, p)[...])
                    let blob = try chunk()
                    blobRecords.append((blob.blob, BlobRecord(bytes: blob.bytes, refs: 1)))
                    chunkRecords.append((h, ChunkRecord(parent: parent, position: p, tokens: t, created: ages.min()!,
                                                       lastAccess: ages.max()!, refs: layout.groupSize, levels: [blob])))
                    shared.append(h)
                    parent = h
                }
                for c in 0..<layout.groupSize {
                    var chain = shared
                    var parent = shared.last ?? ns.root
                    for p in layout.sharedChunks..<layout.contextChunks {
                        let h = PrefixChain.next(parent, tokens: tokens(-(g * layout.groupSize + c) - 1, p)[...])
                        let blob = try chunk()
                        blobRecords.append((blob.blob, BlobRecord(bytes: blob.bytes, refs: 1)))
                        chunkRecords.append((h, ChunkRecord(parent: parent, position: p, tokens: t, created: ages[c],
                                                           lastAccess: ages[c], refs: 1, levels: [blob])))
                        chain.append(h)
                        parent = h
                    }
                    contexts.append((chain.last!, ContextRecord(namespace: ns.root, tokens: chain.count * t, created: ages[c],
                                                                name: "", chain: chain)))
                }
            }
            try store.env.write { txn in
                for (h, r) in chunkRecords { try txn.put(store.chunkDB, h.bytes, r.encoded()) }
                for (h, r) in blobRecords { try txn.put(store.blobDB, h.bytes, r.encoded()) }
                for (h, r) in contexts { try txn.put(store.contextDB, h.bytes, r.encoded()) }
                try txn.put(store.namespaceDB, ns.root.bytes, Array(try JSONEncoder().encode(ns)))
            }
            made += contexts.count
        }
        return Summary(contexts: made, chunks: cut, blobBytes: blobBytes)
    }
}
