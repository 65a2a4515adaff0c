import Foundation
import KVCluster
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

    /// `kvstore pin/unpin --cluster`: a context put with `--cluster-ttl` loses its keys' expiry
    /// when pinned by its id (from a node whose store never saw it) and gets it back when unpinned.
    @Test func pinAndUnpinReachTheClusterKeys() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        let dir = TestSupport.scratchDirectory("kvstore-cluster-pin")
        defer { TestSupport.removeTree(dir) }
        let common = ["--chunk-tokens", "32", "--cluster", cluster.url, "--cluster-mode", "cluster"]
        let put = try TestSupport.run(["put", TestSupport.fixture("smollm2_ctx96_f16.safetensors"), "--levels", "0", "--store", dir + "/a",
                                       "--cluster-ttl", "3600", "--json"] + common)
        #expect(put.status == 0, "\(put.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(put.stdout.utf8)) as? [String: Any])
        let id = try #require(report["contextID"] as? String ?? report["context_id"] as? String)
        let key = "kvs:1:c:\(id):0"      // the last chunk's key: its prefix hash is the context id
        func ttl() throws -> Int {
            let port = try #require(try cluster.masterPort(slot: HashSlot.slot(key)))
            return Int(try cluster.cli(port, ["TTL", key]).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -3
        }
        #expect(try ttl() > 3000)

        let short = try TestSupport.run(["pin", String(id.prefix(8)), "--store", dir + "/b"] + common)
        #expect(short.status != 0 && short.stderr.contains("64-hex"), "\(short.stderr)")
        let timed = try TestSupport.run(["pin", id, "--for", "1h", "--store", dir + "/b"] + common)
        #expect(timed.status != 0 && timed.stderr.contains("until unpinned"), "\(timed.stderr)")
        let pin = try TestSupport.run(["pin", id, "--store", dir + "/b"] + common)
        #expect(pin.status == 0, "\(pin.stderr)")
        #expect(pin.stdout.contains("4 keys, 4 made persistent"), "\(pin.stdout)")   // 3 chunks at level 0 and the chain record
        #expect(try ttl() == -1)
        let list = try TestSupport.run(["pin", "--list", "--store", dir + "/b"] + common)
        #expect(list.stdout.contains(id), "\(list.stdout)")

        let unpin = try TestSupport.run(["unpin", id, "--store", dir + "/b", "--cluster-ttl", "3600"] + common)
        #expect(unpin.status == 0, "\(unpin.stderr)")
        #expect(try ttl() > 3000)
        let again = try TestSupport.run(["unpin", id, "--store", dir + "/b", "--cluster-ttl", "3600"] + common)
        #expect(again.status != 0 && again.stderr.contains("not pinned"), "\(again.stderr)")
    }
}
