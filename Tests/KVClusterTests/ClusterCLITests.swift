import Foundation
import KVStore
import KVTensor
import Testing
import TestSupport

/// `kvstore put` and `get` with `--cluster`: the real binary, two store directories, one cluster.
@Suite(.serialized)
struct ClusterCLITests {
    @Test func putOnOneStoreGetFromAnotherThroughTheCluster() throws {
        let cluster = try RedisClusterFixture(password: "pw")
        defer { cluster.stop() }
        let dir = TestSupport.scratchDirectory("kvstore-cluster-cli")
        defer { TestSupport.removeTree(dir) }
        let url = "redis://:pw@" + cluster.addresses.prefix(2).joined(separator: ",")
        let fixture = TestSupport.fixture("smollm2_ctx96_f16.safetensors")
        let ctx = try TestSupport.realContext()

        let put = try TestSupport.run(["put", fixture, "--levels", "0", "--store", dir + "/a", "--chunk-tokens", "32",
                                       "--cluster", url, "--json"])
        #expect(put.status == 0, "\(put.stderr)")
        #expect(put.stdout.contains("\"chunks\":3"))

        // Store b has never seen the context: in cache mode it reads the cluster and fills itself.
        let query = dir + "/q.json"
        try TestSupport.write(Array("[\(ctx.tokens.map(String.init).joined(separator: ","))]".utf8), to: query)
        let get = try TestSupport.run(["get", "--tokens", query, "-o", dir + "/out.safetensors", "--store", dir + "/b",
                                       "--chunk-tokens", "32", "--cluster", url])
        #expect(get.status == 0, "\(get.stderr)")
        #expect(try Safetensors.readContext(dir + "/out.safetensors").kv == ctx.kv)
        let filled = try ChunkStore(root: dir + "/b")
        #expect(try filled.longestPrefix(ctx.tokens, namespace: try filled.resolveNamespaces(model: nil, dtype: nil)[0]).tokens == 96)

        // Cluster only, with the password from the environment; a miss exits 3.
        let miss = try TestSupport.run(["get", "--tokens", "[1,2,3]", "-o", dir + "/miss.safetensors", "--store", dir + "/c",
                                        "--cluster", cluster.addresses[0], "--cluster-mode", "cluster"],
                                       environment: ["KVSTORE_CLUSTER_PASSWORD": "pw"])
        #expect(miss.status == 3, "\(miss.stderr)")
        let wrong = try TestSupport.run(["get", "--tokens", "[1,2,3]", "-o", dir + "/x.safetensors", "--store", dir + "/c",
                                         "--cluster", cluster.addresses[0], "--cluster-password", "nope"])
        #expect(wrong.status == 1)
        #expect(wrong.stderr.contains("WRONGPASS"), "\(wrong.stderr)")
    }
}
