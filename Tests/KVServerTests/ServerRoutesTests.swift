import Foundation
import Hummingbird
import HummingbirdTesting
import KVCodec
@testable import KVServer
import KVStore
import KVTensor
import KVFrames
import KVTransport
import Testing

struct ServerRoutesTests {
    @Test func uploadLookupAndStreamReturnTheExactKV() async throws {
        let f = try ServerFixture()
        defer { f.cleanup() }
        let ctx = try ServerFixture.context()
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/v1/contexts?name=fixture", method: .post, headers: [.contentType: "application/octet-stream"],
                                     body: ByteBuffer(bytes: try ServerFixture.contextBytes())) { r in
                #expect(r.status == .created)
                let report = try JSONDecoder().decode(PutReport.self, from: Data(buffer: r.body))
                #expect(report.tokens == 96 && report.chunks == 3)
            }
            // A query that continues past the stored context matches all of it.
            let query = ctx.tokens + [1, 2, 3]
            try await client.execute(uri: "/v1/lookup", method: .post, headers: [.contentType: "application/json"],
                                     body: ServerFixture.tokensJSON(query)) { r in
                #expect(r.status == .ok)
                let o = try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as! [String: Any]
                #expect(o["matched_tokens"] as? Int == 96)
                #expect(o["query_tokens"] as? Int == 99)
                #expect((o["chunks"] as? [Any])?.count == 3)
            }
            // The compact binary body gives the same answer.
            var bin = ByteBuffer()
            for t in query { bin.writeInteger(t, endianness: .little) }
            try await client.execute(uri: "/v1/lookup", method: .post, headers: [.contentType: "application/octet-stream"], body: bin) { r in
                let o = try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as! [String: Any]
                #expect(o["matched_tokens"] as? Int == 96)
            }
            try await client.execute(uri: "/v1/stream?slo_ms=5000", method: .post, headers: [.contentType: "application/json"],
                                     body: ServerFixture.tokensJSON(query)) { r in
                #expect(r.status == .ok)
                #expect(r.headers[.contentType] == "application/x-kvstore-frames")
                let frames = try ServerFixture.frames(r.body)
                #expect(frames.map(\.frame.kind) == [.header, .chunk, .chunk, .chunk, .end])
                let header = try JSONDecoder().decode(StreamHeader.self, from: Data(frames[0].payload))
                #expect(header.matchedTokens == 96 && header.chunks == 3 && header.shape == [30, 3, 64])
                let chunks = frames.filter { $0.frame.kind == .chunk }
                #expect(chunks.map(\.frame.tokens) == [0..<32, 32..<64, 64..<96])
                #expect(chunks.allSatisfy { $0.frame.level == 0 })
                let kv = try KVTensor.concatenate(chunks.map { try ChunkContainer.decode($0.payload) })
                #expect(kv == ctx.kv)
            }
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                #expect(text.contains("kvstore_requests_total{route=\"/v1/stream\",status=\"200\"} 1"))
                #expect(text.contains("kvstore_chunk_levels_total{level=\"0\"} 3"))
                #expect(text.contains("kvstore_lookup_seconds_count 3"))
                #expect(text.contains("kvstore_stream_deadline_total{result=\"met\"} 1"))
            }
        }
    }

    @Test func pinnedLevelThatIsNotStoredIsA400() async throws {
        let f = try ServerFixture()
        defer { f.cleanup() }
        let ctx = try ServerFixture.context()
        _ = try f.service.store.put(ctx, namespace: f.service.store.namespace(for: ctx, model: "SmolLM2-135M-Instruct"))
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/stream?level=3", method: .post, headers: [.contentType: "application/json"],
                                     body: ServerFixture.tokensJSON(ctx.tokens)) { r in
                #expect(r.status == .badRequest)
                #expect(ServerFixture.errorMessage(r.body) == "chunk 0 is not stored at level 3 (stored: 0)")
            }
        }
    }

    /// A stream that sends nothing measures nothing, so its prior (here a hint of 1 kbit/s) must not
    /// become the tenant's: the next stream would start from it, recompute everything again, and
    /// the tenant would never be measured again.
    @Test func aStreamThatMeasuredNothingLeavesNoPriorBehind() async throws {
        let f = try ServerFixture()
        defer { f.cleanup() }
        let ctx = try ServerFixture.context()
        _ = try f.service.store.put(ctx, namespace: f.service.store.namespace(for: ctx, model: "SmolLM2-135M-Instruct"))
        let query = ServerFixture.tokensJSON(ctx.tokens)
        try await f.app.test(.router) { client in
            var kinds: [[Frame.Kind]] = []
            for q in ["slo_ms=100&bandwidth_hint_mbps=0.001", "slo_ms=5000"] {
                try await client.execute(uri: "/v1/stream?" + q, method: .post, headers: [.contentType: "application/json"],
                                         body: query) { r in
                    #expect(r.status == .ok)
                    kinds.append(try ServerFixture.frames(r.body).map(\.frame.kind))
                }
            }
            #expect(kinds == [[.header, .recompute, .recompute, .recompute, .end], [.header, .chunk, .chunk, .chunk, .end]])
            try await client.execute(uri: "/metrics", method: .get) { r in
                let text = String(buffer: r.body)
                #expect(text.contains("kvstore_stream_priors_total{source=\"hint\"} 1"))
                #expect(text.contains("kvstore_stream_priors_total{source=\"default\"} 1"), "\(text)")
            }
        }
    }

    @Test func baselineEncodingsCarryTheSameKV() async throws {
        let f = try ServerFixture()
        defer { f.cleanup() }
        let ctx = try ServerFixture.context()
        _ = try f.service.store.put(ctx, namespace: f.service.store.namespace(for: ctx, model: "SmolLM2-135M-Instruct"))
        try await f.app.test(.router) { client in
            for encoding in ["raw", "zstd"] {
                try await client.execute(uri: "/v1/stream?encoding=\(encoding)", method: .post, headers: [.contentType: "application/json"],
                                         body: ServerFixture.tokensJSON(ctx.tokens)) { r in
                    let frames = try ServerFixture.frames(r.body)
                    let header = try JSONDecoder().decode(StreamHeader.self, from: Data(frames[0].payload))
                    #expect(header.encoding == encoding)
                    var parts: [KVTensor] = []
                    for c in frames where c.frame.kind == .chunk {
                        let raw = encoding == "raw" ? c.payload
                            : try c.payload.withUnsafeBytes {
                                try Zstd.decompress($0, size: ChunkHeader.size + c.frame.tokens.count * 30 * 2 * 3 * 64 * 2)
                            }
                        parts.append(try ChunkContainer.decode(raw))
                    }
                    #expect(try KVTensor.concatenate(parts) == ctx.kv, "\(encoding)")
                }
            }
        }
    }
}

struct ServerEvictionTests {
    @Test func uploadsBeyondMaxBytesEvictLeastRecentlyUsedChunks() async throws {
        let f = try ServerFixture { $0.maxStoreBytes = 1_000_000 }
        defer { f.cleanup() }
        let ctx = try ServerFixture.context()
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/contexts", method: .post, headers: [.contentType: "application/octet-stream"],
                                     body: ByteBuffer(bytes: try ServerFixture.contextBytes())) { r in
                let report = try JSONDecoder().decode(PutReport.self, from: Data(buffer: r.body))
                #expect(report.storedBytes > 1_000_000)
            }
            try await client.execute(uri: "/v1/lookup", method: .post, headers: [.contentType: "application/json"],
                                     body: ServerFixture.tokensJSON(ctx.tokens)) { r in
                let o = try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as! [String: Any]
                #expect((o["matched_tokens"] as? Int ?? 96) < 96)
            }
        }
        #expect(try f.service.store.usedBytes() <= 800_000)
    }
}

struct TenantPriorsTests {
    @Test func measuredBandwidthServesItsLifetimeAndNothingMeasuredKeepsNothing() {
        let priors = TenantPriors(lifetimeSeconds: 60)
        let t0 = ContinuousClock.now
        priors.record(nil, for: "a", at: t0)
        #expect(priors.prior(for: "a", now: t0) == nil)
        priors.record(1e6, for: "a", at: t0)
        priors.record(nil, for: "a", at: t0 + .seconds(30))  // a stream that measured nothing changes nothing
        #expect(priors.prior(for: "a", now: t0 + .seconds(59)) == 1e6)
        #expect(priors.prior(for: "b", now: t0) == nil)
        #expect(priors.prior(for: "a", now: t0 + .seconds(61)) == nil)
        #expect(priors.prior(for: "a", now: t0) == nil)  // expired entries are dropped
        let never = TenantPriors(lifetimeSeconds: 0)
        never.record(1e6, for: "a", at: t0)
        #expect(never.prior(for: "a", now: t0 + .milliseconds(1)) == nil)
    }

    @Test func theEstimatorSaysWhenItHasMeasured() {
        var e = BandwidthEstimator(prior: 1e6)
        #expect(e.measured == nil)
        for _ in 0..<4 { e.record(bytes: 10_000, seconds: 0.005) }
        #expect(e.measured == 2e6)
    }
}
