import Foundation
import KVCluster
import KVStore
import KVTensor
import KVFrames
import KVTransport
import Testing
import TestSupport

/// Must-show: two `kvstore serve` processes (own ports, own store directories) sharing one cluster.
@Suite(.serialized)
struct ClusterServeTests {
    /// A running `kvstore serve` and its port.
    struct Server {
        let running: TestSupport.Running
        let port: Int
        let store: String

        static func start(cluster: RedisClusterFixture, mode: String) throws -> Server {
            let store = TestSupport.scratchDirectory("kvstore-serve")
            let portFile = store + "/port"
            let running = try TestSupport.start(["serve", "--listen", "127.0.0.1:0", "--port-file", portFile,
                                                 "--store", store + "/s", "--chunk-tokens", "32",
                                                 "--cluster", cluster.url, "--cluster-mode", mode])
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline {
                if let text = try? String(contentsOfFile: portFile, encoding: .utf8),
                   let port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                    return Server(running: running, port: port, store: store)
                }
                guard running.process.isRunning else { break }
                Thread.sleep(forTimeInterval: 0.1)
            }
            running.process.terminate()
            let err = String(decoding: running.err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw RedisClusterFixture.StartError(description: "kvstore serve did not start: \(err)")
        }

        var client: StreamClient {
            get throws { StreamClient(exchange: HTTPExchange(endpoint: try RemoteEndpoint(url: "http://127.0.0.1:\(port)"))) }
        }

        /// A server that died during the test is a finding of its own: its status and last words.
        func stop() {
            if running.process.isRunning {
                running.process.terminate()
                running.process.waitUntilExit()
            } else {
                let err = String(decoding: running.err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                Issue.record("kvstore serve exited during the test (status \(running.process.terminationStatus), \(running.process.terminationReason == .uncaughtSignal ? "signal" : "exit")): \(err.suffix(4000))")
            }
            TestSupport.removeTree(store)
        }
    }

    @Test func aContextUploadedToOneServerStreamsBitIdenticalFromAnother() async throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        // A keeps a local cache in front of the cluster (its cluster write leaves the response
        // path); B reads the cluster only, with an empty store directory of its own.
        let a = try Server.start(cluster: cluster, mode: "cache")
        defer { a.stop() }
        let b = try Server.start(cluster: cluster, mode: "cluster")
        defer { b.stop() }

        let ctx = try TestSupport.realContext()
        let upload = try await a.client.exchange.call(method: .POST, path: "/v1/contexts?levels=0,2", contentType: "application/octet-stream",
                                                      body: try FileIO.readAll(TestSupport.fixture("smollm2_ctx96_f16.safetensors")))
        #expect(upload.status == 201, "\(String(decoding: upload.body, as: UTF8.self))")

        // B sees the whole prefix once A's background write has landed.
        let query = ctx.tokens + [5, 6, 7]
        var matched = 0
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            let r = try await b.client.exchange.call(method: .POST, path: "/v1/lookup",
                                                     body: Array(try JSONSerialization.data(withJSONObject: ["tokens": query.map(Int.init)])))
            #expect(r.status == 200)
            let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
            matched = json?["matched_tokens"] as? Int ?? 0
            if matched == 96 { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(matched == 96)

        let result = try #require(try await b.client.stream(StreamRequest(tokens: query, sloMs: 60_000, level: 0)))
        #expect(result.header.matchedTokens == 96)
        #expect(result.chunks.map(\.choice) == [.level(0), .level(0), .level(0)])
        #expect(try result.contiguousKV() == ctx.kv)

        // B's store directory holds no chunk: the bytes came from the cluster.
        #expect(try ChunkStore(root: b.store + "/s").namespaces() == [])

        // A tenant-less query for another model is a miss on B, not an error.
        let miss = try await b.client.stream(StreamRequest(tokens: [1, 2, 3], sloMs: 1000))
        #expect(miss == nil)

        let metrics = try await b.client.exchange.call(method: .GET, path: "/metrics")
        #expect(String(decoding: metrics.body, as: UTF8.self).contains("kvstore_cluster_chunk_hits_total"))
    }

    /// Cache mode's read-through on the stream path: a context stored only in the cluster (put
    /// through a cluster-mode server) is streamed by a cache-mode server, which then holds it in its
    /// own store directory and serves the next stream of it from there.
    @Test func aStreamFromTheClusterFillsTheCacheAndTheNextStreamIsLocal() async throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        let writer = try Server.start(cluster: cluster, mode: "cluster")
        defer { writer.stop() }
        let cache = try Server.start(cluster: cluster, mode: "cache")
        defer { cache.stop() }

        let ctx = try TestSupport.realContext()
        let upload = try await writer.client.exchange.call(method: .POST, path: "/v1/contexts?levels=0,2", contentType: "application/octet-stream",
                                                           body: try FileIO.readAll(TestSupport.fixture("smollm2_ctx96_f16.safetensors")))
        #expect(upload.status == 201, "\(String(decoding: upload.body, as: UTF8.self))")
        #expect(try ChunkStore(root: cache.store + "/s").namespaces() == [])

        let query = ctx.tokens + [5, 6, 7]
        let first = try #require(try await cache.client.stream(StreamRequest(tokens: query, sloMs: 60_000, level: 0)))
        #expect(first.header.matchedTokens == 96)
        #expect(try first.contiguousKV() == ctx.kv)
        var m = try await metrics(cache)
        #expect(m["kvstore_cache_cluster_reads_total"] == 3)
        #expect(m["kvstore_cache_local_reads_total"] == 0)

        // The fill runs after the stream, off its response path: wait for it.
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline, m["kvstore_cache_fills_total"] != 1 {
            try await Task.sleep(for: .milliseconds(100))
            m = try await metrics(cache)
        }
        #expect(m["kvstore_cache_fills_total"] == 1)
        #expect(m["kvstore_cache_fills_failed_total"] == 0)

        // The cache's own store directory now holds the context, bit-exact at level 0.
        let local = try ChunkStore(root: cache.store + "/s")
        let spaces = try local.namespaces()
        #expect(spaces.count == 1)
        let space = try #require(spaces.first)
        let got = try #require(try local.get(query, namespace: space, level: 0))
        #expect(got.match.tokens == 96)
        #expect(got.context.kv == ctx.kv)

        // The next stream is served from local blob files, and does not fill again.
        let second = try #require(try await cache.client.stream(StreamRequest(tokens: query, sloMs: 60_000, level: 0)))
        #expect(try second.contiguousKV() == ctx.kv)
        let after = try await metrics(cache)
        #expect(after["kvstore_cache_local_reads_total"] == 3)
        #expect(after["kvstore_cache_cluster_reads_total"] == 3)
        #expect(after["kvstore_cache_fills_total"] == 1)
    }

    /// Counter values of a server's `/metrics`.
    func metrics(_ server: Server) async throws -> [String: Int] {
        let r = try await server.client.exchange.call(method: .GET, path: "/metrics")
        var out: [String: Int] = [:]
        for line in String(decoding: r.body, as: UTF8.self).split(separator: "\n") where !line.hasPrefix("#") {
            let f = line.split(separator: " ")
            if f.count == 2, let v = Double(f[1]) { out[String(f[0])] = Int(v) }
        }
        return out
    }
}
