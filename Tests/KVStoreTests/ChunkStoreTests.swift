import Foundation
import Testing
import KVCodec
import KVStore
import KVTensor
import TestSupport

@Suite struct ChunkStoreTests {
    let dir = TestSupport.scratchDirectory("store")

    func open(chunkTokens: Int = 16) throws -> ChunkStore { try ChunkStore(root: dir, chunkTokens: chunkTokens) }

    func namespace(_ store: ChunkStore, _ ctx: KVContext, salt: String? = nil) -> Namespace {
        store.namespace(for: ctx, model: "SmolLM2-135M-Instruct", salt: salt)
    }

    @Test func putThenGetReturnsBitIdenticalKVAndTokens() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try open()
        let ctx = try TestSupport.realContext()
        let report = try store.put(ctx, namespace: namespace(store, ctx))
        #expect(report.chunks == 6 && report.deduplicatedChunks == 0 && report.blobsWritten == 6)
        let got = try #require(try store.get(ctx.tokens, namespace: namespace(store, ctx)))
        #expect(got.match.tokens == 96)
        #expect(got.context.kv == ctx.kv)
        #expect(got.context.tokens == ctx.tokens)
    }

    @Test func extendingQueryMatchesExactlyTheStoredTokensThroughAPartialChunk() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try open(chunkTokens: 40)  // 96 = 40 + 40 + a partial 16
        let ctx = try TestSupport.realContext()
        try store.put(ctx, namespace: namespace(store, ctx))
        let query = try TestSupport.textTokens()
        #expect(Array(query.prefix(96)) == ctx.tokens)
        let got = try #require(try store.get(query, namespace: namespace(store, ctx)))
        #expect(got.match.tokens == 96)
        #expect(got.match.chunks.map(\.range.count) == [40, 40, 16])
        #expect(got.context.kv == ctx.kv)
    }

    @Test func queryDivergingInsideChunkKMatchesTheWholeChunksBeforeIt() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try open()
        let ctx = try TestSupport.realContext()
        try store.put(ctx, namespace: namespace(store, ctx))
        for k in 0..<6 {
            var query = ctx.tokens
            query[k * 16 + 5] = query[k * 16 + 5] == 7 ? 8 : 7
            let match = try store.lookup(query, namespace: namespace(store, ctx))
            #expect(match.tokens == k * 16, "diverging in chunk \(k)")
            if k > 0 {
                let got = try #require(try store.get(query, namespace: namespace(store, ctx)))
                #expect(got.context.kv == ctx.kv.slice(tokens: 0..<(k * 16)))
            }
        }
    }

    /// Chunks encoded on several threads are the same blobs, indexed the same way, as on one.
    @Test func aPutOnSeveralThreadsStoresWhatOneThreadStores() throws {
        defer { TestSupport.removeTree(dir) }
        let ctx = try TestSupport.realContext()
        var reports: [PutReport] = []
        for threads in [1, 3] {
            let root = dir + "/t\(threads)"
            let store = try ChunkStore(root: root, chunkTokens: 16)
            var steps: [Int] = []
            reports.append(try store.put(ctx, namespace: namespace(store, ctx), levels: [0, 2], threads: threads) { done, _ in steps.append(done) })
            #expect(steps.last == 6 && steps == steps.sorted(), "progress \(steps)")
            let got = try #require(try store.get(ctx.tokens, namespace: namespace(store, ctx), level: 2))
            #expect(got.match.tokens == 96)
            #expect(try store.stats().blobs == 12)
        }
        #expect(reports[0] == reports[1])
    }

    @Test func puttingTheSameContextTwiceWritesNoBlobBytes() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try open()
        let ctx = try TestSupport.realContext()
        let first = try store.put(ctx, namespace: namespace(store, ctx))
        let second = try store.put(ctx, namespace: namespace(store, ctx))
        #expect(first.bytesWritten > 0)
        #expect(second.bytesWritten == 0 && second.blobsWritten == 0)
        #expect(second.deduplicatedChunks == 6 && second.alreadyStored)
        #expect(try store.stats().blobs == 6)
    }

    @Test func contextsSharingAPrefixShareItsChunks() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try open()
        let full = try TestSupport.realContext()
        let short = try KVContext(kv: full.kv.slice(tokens: 0..<64), tokens: Array(full.tokens[0..<64]), metadata: full.metadata)
        let a = try store.put(short, namespace: namespace(store, short))
        let b = try store.put(full, namespace: namespace(store, full))
        #expect(a.blobsWritten == 4)
        #expect(b.deduplicatedChunks == 4 && b.blobsWritten == 2)
        // Removing the short context keeps every chunk the long one needs.
        let removed = try store.remove(context: Hash32(hex: a.contextID)!)
        #expect(removed.chunks == 0 && removed.blobs == 0)
        #expect(try store.get(full.tokens, namespace: namespace(store, full))?.context.kv == full.kv)
        // Removing the long one frees everything.
        let all = try store.remove(context: Hash32(hex: b.contextID)!)
        #expect(all.chunks == 6 && all.blobs == 6)
        #expect(try store.lookup(full.tokens, namespace: namespace(store, full)).tokens == 0)
        #expect(store.blobs.allIDs().isEmpty)
    }

    @Test func saltsAndModelsNeverSeeEachOthersChunks() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try open()
        let ctx = try TestSupport.realContext()
        try store.put(ctx, namespace: namespace(store, ctx, salt: "tenant-a"))
        #expect(try store.lookup(ctx.tokens, namespace: namespace(store, ctx, salt: "tenant-b")).tokens == 0)
        #expect(try store.lookup(ctx.tokens, namespace: namespace(store, ctx)).tokens == 0)
        #expect(try store.lookup(ctx.tokens, namespace: namespace(store, ctx, salt: "tenant-a")).tokens == 96)
        let other = store.namespace(for: ctx, model: "other-model", salt: "tenant-a")
        #expect(try store.lookup(ctx.tokens, namespace: other).tokens == 0)
    }

    @Test func namespaceEncodingSeparatesAdapterFromSalt() {
        let shape = KVShape(layers: 30, kvHeads: 3, headDim: 64)
        let a = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 256, adapter: "x")
        let b = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 256, salt: "x")
        let c = Namespace(model: "mx", dtype: .f16, shape: shape, chunkTokens: 256)
        #expect(Set([a.root, b.root, c.root, a.base.root]).count == 4)
    }

    @Test func corruptBlobIsReportedNotReturned() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try open()
        let ctx = try TestSupport.realContext()
        try store.put(ctx, namespace: namespace(store, ctx))
        let match = try store.lookup(ctx.tokens, namespace: namespace(store, ctx))
        let victim = match.chunks[2].record.best!.blob
        var bytes = try FileIO.readAll(store.blobs.path(of: victim))
        bytes[100] ^= 0xFF
        try TestSupport.write(bytes, to: store.blobs.path(of: victim))
        #expect(throws: StoreError.corruptBlob("\(victim.hex) does not match its hash")) {
            try store.get(ctx.tokens, namespace: namespace(store, ctx))
        }
    }

    @Test func missingBlobStillIndexedIsAnErrorNotData() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try open()
        let ctx = try TestSupport.realContext()
        try store.put(ctx, namespace: namespace(store, ctx))
        let match = try store.lookup(ctx.tokens, namespace: namespace(store, ctx))
        store.blobs.remove(match.chunks[1].record.best!.blob)
        #expect(throws: StoreError.self) { try store.get(ctx.tokens, namespace: namespace(store, ctx)) }
    }

    @Test func chunkSizeIsFixedPerStore() throws {
        defer { TestSupport.removeTree(dir) }
        _ = try open(chunkTokens: 16)
        #expect(throws: StoreError.config("store at \(dir) uses 16-token chunks, not 32")) { try ChunkStore(root: dir, chunkTokens: 32) }
        #expect(try ChunkStore(root: dir).chunkTokens == 16)
    }

    @Test func unwritableStoreLocationIsAClearError() throws {
        defer { TestSupport.removeTree(dir) }
        let file = dir + "/plain-file"
        try TestSupport.write([1, 2, 3], to: file)
        do {
            _ = try ChunkStore(root: file + "/store")
            Issue.record("opened a store below a regular file")
        } catch let e as StoreError {
            #expect("\(e)".hasPrefix("store not writable: cannot create directory"), "\(e)")
        }
    }

    @Test func everyLookupCostsOneHashPerChunk() throws {
        // A 2,048-token query over a stored context of the same tokens walks the whole chain.
        defer { TestSupport.removeTree(dir) }
        let store = try open(chunkTokens: 16)
        let base = try TestSupport.realContext()
        var tokens: [Int32] = []
        var parts: [KVTensor] = []
        for i in 0..<4 {
            tokens += base.tokens.map { $0 &+ Int32(i) }
            parts.append(base.kv)
        }
        let ctx = try KVContext(kv: KVTensor.concatenate(parts), tokens: tokens, metadata: base.metadata)
        try store.put(ctx, namespace: namespace(store, ctx))
        let match = try store.lookup(tokens + [1, 2, 3], namespace: namespace(store, ctx))
        #expect(match.tokens == 384)
        #expect(match.chunks.map(\.record.position) == Array(0..<24))
    }
}
