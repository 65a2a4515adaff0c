import Foundation
import KVStore
import KVTensor
import Testing

@Suite struct SegmentStoreTests {
    let rope = RoPEConfig(theta: 10_000, rotaryDim: 8, pairs: .adjacent)

    func segment(_ base: Int32, _ count: Int, seed: UInt64) throws -> KVContext {
        try ReuseSupport.context((0..<count).map { base + Int32($0) }, seed: seed)
    }

    @Test func segmentsAreFoundByContentAndMovedToTheirNewPositions() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let docs = [try segment(1000, 20, seed: 1), try segment(2000, 37, seed: 2), try segment(3000, 5, seed: 3)]
        let starts = [0, 12, 300]
        for (d, s) in zip(docs, starts) {
            let r = try store.putSegment(d, namespace: ns, start: s, rope: rope)
            #expect(!r.alreadyStored && r.tokens == d.tokens.count && r.start == s)
        }
        // in another order, contiguous from 0, one explicitly placed
        let requests = [SegmentRequest(tokens: docs[2].tokens), SegmentRequest(tokens: docs[0].tokens),
                        SegmentRequest(tokens: docs[1].tokens, position: 100)]
        let got = try store.assembleSegments(requests, namespace: ns, recomputeTokens: 4)
        #expect(got.context.tokens == docs[2].tokens + docs[0].tokens + docs[1].tokens)
        #expect(got.positions == Array(0..<25) + Array(100..<137))
        let expected = try KVTensor.concatenate([
            RoPE.shift(docs[2].kv, delta: 0 - 300, config: rope),
            RoPE.shift(docs[0].kv, delta: 5 - 0, config: rope),
            RoPE.shift(docs[1].kv, delta: 100 - 12, config: rope),
        ])
        #expect(got.context.kv == expected)
        #expect(got.segments.map(\.exact) == [false, false, false])
        #expect(got.segments.map(\.rows) == [[0, 5], [5, 25], [25, 62]])
        #expect(got.segments.map(\.recompute) == [[0, 1, 2, 3], [5, 6, 7, 8], [25, 26, 27, 28]])
        #expect(got.segments.map(\.storedStart) == [300, 0, 12])

        // the first segment at its own position needs no repair
        let first = try store.assembleSegments([SegmentRequest(tokens: docs[0].tokens)], namespace: ns)
        #expect(first.segments[0].exact && first.segments[0].recompute.isEmpty)
        #expect(first.context.kv == docs[0].kv)
    }

    @Test func secondPutOfTheSameSegmentIsDeduplicated() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let doc = try segment(5, 40, seed: 4)
        let first = try store.putSegment(doc, namespace: ns, start: 3, rope: rope)
        let again = try store.putSegment(doc, namespace: ns, start: 50, rope: rope)
        #expect(first.pieces == 3)   // 40 tokens in 16-token pieces
        #expect(again.alreadyStored && again.start == 3 && again.blobsWritten == 0)
        #expect(again.segmentID == first.segmentID)
    }

    @Test func sharedPrefixIsPartOfTheKeyAndPlacedFirst() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let prefixCtx = try segment(7, 10, seed: 5)
        _ = try store.put(prefixCtx, namespace: ns)
        let doc = try segment(500, 12, seed: 6)
        _ = try store.putSegment(doc, namespace: ns, start: 10, rope: rope, prefix: prefixCtx.tokens)
        // not found without the prefix it was encoded after
        #expect(throws: StoreError.notFound("segment 0 (12 tokens) is not stored")) {
            try store.assembleSegments([SegmentRequest(tokens: doc.tokens)], namespace: ns)
        }
        let got = try store.assembleSegments([SegmentRequest(tokens: doc.tokens), SegmentRequest(tokens: doc.tokens)],
                                             namespace: ns, prefix: prefixCtx.tokens)
        #expect(got.prefixTokens == 10 && got.positions == Array(0..<34))
        #expect(got.segments.map(\.exact) == [true, false])
        #expect(got.context.kv == (try KVTensor.concatenate([prefixCtx.kv, doc.kv, try RoPE.shift(doc.kv, delta: 12, config: rope)])))
        // a prefix that is not stored whole
        #expect(throws: StoreError.notFound("shared prefix of 11 tokens is not stored whole")) {
            try store.assembleSegments([SegmentRequest(tokens: doc.tokens)], namespace: ns, prefix: prefixCtx.tokens + [99])
        }
    }

    @Test func saltsSeparateSegments() throws {
        let store = try ReuseSupport.tempStore()
        let doc = try segment(5, 8, seed: 7)
        _ = try store.putSegment(doc, namespace: ReuseSupport.namespace(store, salt: "a"), start: 0, rope: rope)
        #expect(try store.segment(doc.tokens, namespace: ReuseSupport.namespace(store, salt: "a")) != nil)
        #expect(try store.segment(doc.tokens, namespace: ReuseSupport.namespace(store, salt: "b")) == nil)
        #expect(try store.segment(doc.tokens, namespace: ReuseSupport.namespace(store)) == nil)
    }

    @Test func removeSegmentFreesItsBlobs() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let doc = try segment(5, 20, seed: 8)
        let r = try store.putSegment(doc, namespace: ns, start: 0, rope: rope)
        #expect(try store.stats().blobs == 2)
        let removed = try store.removeSegment(#require(Hash32(hex: r.segmentID)))
        #expect(removed.blobs == 2 && removed.chunks == 2)
        #expect(try store.stats().blobs == 0)
        #expect(try store.segments().isEmpty)
        #expect(throws: StoreError.notFound("no segment \(r.segmentID)")) { try store.removeSegment(#require(Hash32(hex: r.segmentID))) }
    }

    @Test func badSegmentInputsAreRejected() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let doc = try segment(5, 4, seed: 9)
        #expect(throws: StoreError.invalidInput("segment start -1 is outside 0...1048572")) {
            try store.putSegment(doc, namespace: ns, start: -1, rope: rope)
        }
        #expect(throws: StoreError.invalidInput("segment start 2 lies inside its 3-token shared prefix")) {
            try store.putSegment(doc, namespace: ns, start: 2, rope: rope, prefix: [1, 2, 3])
        }
        var adapterNS = ns
        adapterNS.adapter = ReuseSupport.digest("A")
        #expect(throws: StoreError.invalidInput("segments are stored for the base model only, not an adapter")) {
            try store.putSegment(doc, namespace: adapterNS, start: 0, rope: rope)
        }
        #expect(throws: StoreError.invalidInput("RoPE rotary dim 10 must be even and in 2...8 (the head dim)")) {
            try store.putSegment(doc, namespace: ns, start: 0, rope: RoPEConfig(theta: 10_000, rotaryDim: 10, pairs: .split))
        }
        #expect(throws: StoreError.invalidInput("no segments requested")) { try store.assembleSegments([], namespace: ns) }
        _ = try store.putSegment(doc, namespace: ns, start: 0, rope: rope)
        #expect(throws: StoreError.invalidInput("segment 0 position -5 is outside 0...1048572")) {
            try store.assembleSegments([SegmentRequest(tokens: doc.tokens, position: -5)], namespace: ns)
        }
    }

    @Test func segmentRecordRoundTrips() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let doc = try segment(5, 20, seed: 10)
        _ = try store.putSegment(doc, namespace: ns, start: 7, rope: RoPEConfig(theta: 500_000, rotaryDim: 6, pairs: .split))
        let (_, rec) = try #require(try store.segment(doc.tokens, namespace: ns))
        #expect(rec.rope == RoPEConfig(theta: 500_000, rotaryDim: 6, pairs: .split))
        #expect(rec.start == 7 && rec.tokens == 20 && rec.pieces.map(\.tokens) == [16, 4] && rec.prefix == nil)
    }
}
