import Foundation
import KVTensor
import Testing
import TestSupport

/// What the reliability probe (issue #11) found through the CLI, each checked the way it was found.
@Suite struct HardeningCLITests {
    let dir = TestSupport.scratchDirectory("hardening")
    var store: String { dir + "/store" }
    let fixture = TestSupport.fixture("smollm2_ctx96_f16.safetensors")

    /// The fixture's KV under other token ids: a different context of the same model and length.
    func variant(_ shift: Int32) throws -> (path: String, tokens: [Int32]) {
        let original = try Safetensors.readContext(fixture)
        let tokens = original.tokens.map { ($0 + shift) % 49_000 }
        let path = dir + "/variant\(shift).safetensors"
        try Safetensors.write(try KVContext(kv: original.kv, tokens: tokens, metadata: original.metadata), to: path)
        return (path, tokens)
    }

    func matched(_ tokens: [Int32]) throws -> String {
        let q = (tokens + [11, 12, 13]).map(String.init).joined(separator: ",")
        let get = try TestSupport.run(["get", "--tokens", "[\(q)]", "-o", dir + "/out.safetensors", "--store", store])
        return get.stdout + get.stderr
    }

    /// F1: contexts ending mid-chunk with the same length each stay reachable by their own tokens,
    /// and fsck agrees with itself on an unchanged store.
    @Test func samelengthPartialContextsAllStayReachable() throws {
        defer { TestSupport.removeTree(dir) }
        let contexts = [try variant(0), try variant(1), try variant(2)]
        for c in contexts {
            let put = try TestSupport.run(["put", c.path, "--store", store, "--levels", "0"])
            #expect(put.status == 0, "\(put.stderr)")
        }
        for c in contexts {
            let out = try matched(c.tokens)
            #expect(out.contains("matched 96 of 99 tokens"), "\(out)")
        }
        for _ in 0..<3 {
            let fsck = try TestSupport.run(["fsck", "--store", store])
            #expect(fsck.status == 0, "\(fsck.stdout)\(fsck.stderr)")
        }
        // Removing one leaves the others reachable and the index consistent.
        let ls = try TestSupport.run(["ls", "--store", store, "--json"])
        let ids = try #require(try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [[String: Any]]).compactMap { $0["id"] as? String }
        #expect(ids.count == 3)
        #expect(try TestSupport.run(["rm", ids[0], "--store", store]).status == 0)
        #expect(try TestSupport.run(["fsck", "--store", store]).status == 0)
        let left = try contexts.filter { try matched($0.tokens).contains("matched 96") }
        #expect(left.count == 2)
    }

    /// F2: a context whose shape contradicts its model id is refused, and the model stays reachable.
    @Test func aConflictingShapeIsRefusedAndLookupsStillResolve() throws {
        defer { TestSupport.removeTree(dir) }
        let good = try Safetensors.readContext(fixture)
        #expect(try TestSupport.run(["put", fixture, "--store", store, "--levels", "0"]).status == 0)
        let tiny = try KVTensor(shape: KVShape(layers: 2, kvHeads: 1, headDim: 4), tokens: 8, dtype: .f16,
                                bytes: [UInt8](repeating: 0, count: 2 * 2 * 8 * 4 * 2))
        let bad = dir + "/bad.safetensors"
        try Safetensors.write(try KVContext(kv: tiny, tokens: Array(0..<8), metadata: ["model": good.metadata["model"]!]), to: bad)
        let put = try TestSupport.run(["put", bad, "--store", store])
        #expect(put.status == 1)
        #expect(put.stderr.contains("names one shape"), "\(put.stderr)")
        let q = (good.tokens + [1]).map(String.init).joined(separator: ",")
        let get = try TestSupport.run(["get", "--tokens", "[\(q)]", "-o", dir + "/o.safetensors", "--store", store,
                                       "--model", good.metadata["model"]!, "--dtype", "F16"])
        #expect(get.status == 0 && get.stdout.contains("matched 96 of 97"), "\(get.stdout)\(get.stderr)")
        #expect(try TestSupport.run(["fsck", "--store", store]).status == 0)
    }

    /// F5: model ids and names are bounded and printable; a refused one is not echoed.
    @Test func hostileModelIdsAndNamesAreRefused() throws {
        defer { TestSupport.removeTree(dir) }
        let original = try Safetensors.readContext(fixture)
        let huge = dir + "/huge.safetensors"
        try Safetensors.write(try KVContext(kv: original.kv, tokens: original.tokens,
                                            metadata: ["model": String(repeating: "m", count: 1 << 20)]), to: huge)
        let put = try TestSupport.run(["put", huge, "--store", store])
        #expect(put.status == 1)
        #expect(put.stderr.count < 300, "\(put.stderr.count) bytes of error")
        for model in ["bad\nmodel", "tab\tmodel", "spaced model", "bell\u{7}"] {
            let control = try TestSupport.run(["put", fixture, "--store", store, "--model", model])
            #expect(control.status == 1 && control.stderr.contains("model id") && !control.stderr.contains(model), "\(control.stderr)")
        }
        let name = try TestSupport.run(["put", fixture, "--store", store, "--name", "x\ny"])
        #expect(name.status == 1 && name.stderr.contains("context name"), "\(name.stderr)")
        #expect(try TestSupport.run(["put", fixture, "--store", store, "--name", "fine name"]).status == 0)
        let ls = try TestSupport.run(["ls", "--store", store, "--json"])
        let listed = try #require(try JSONSerialization.jsonObject(with: Data(ls.stdout.utf8)) as? [[String: Any]])
        #expect(listed.compactMap { $0["name"] as? String } == ["fine name"], "\(ls.stdout)")
        #expect(try TestSupport.run(["fsck", "--store", store]).status == 0)
    }

    /// F6: every byte `decode` returns is under a checksum, token ids and metadata included.
    @Test func aFlippedTokenBitInAKvcFileIsCaught() throws {
        defer { TestSupport.removeTree(dir) }
        let kvc = dir + "/c.kvc"
        #expect(try TestSupport.run(["encode", "--level", "0", fixture, "-o", kvc]).status == 0)
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: kvc)))
        let metaLength = Int(bytes[16]) | Int(bytes[17]) << 8 | Int(bytes[18]) << 16 | Int(bytes[19]) << 24
        for (offset, what) in [(20 + metaLength + 4 * 5, "token"), (20 + 2, "metadata")] {
            var flipped = bytes
            flipped[offset] ^= 0x01
            try TestSupport.write(flipped, to: kvc + ".bad")
            let decode = try TestSupport.run(["decode", kvc + ".bad", "-o", dir + "/d.safetensors"])
            #expect(decode.status == 1 && decode.stderr.contains("checksum"), "\(what): \(decode.stderr)")
        }
        bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: kvc)))
        let ok = try TestSupport.run(["decode", kvc, "-o", dir + "/d.safetensors"])
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(try Safetensors.readContext(dir + "/d.safetensors").tokens == (try Safetensors.readContext(fixture).tokens))
    }

    /// F7: read-only commands never create a store; a missing one is an error.
    @Test func readOnlyCommandsDoNotCreateAStore() throws {
        defer { TestSupport.removeTree(dir) }
        let missing = dir + "/no/such/dir"
        for args in [["fsck"], ["ls"], ["stat"], ["get", "--tokens", "[1,2]", "-o", dir + "/o.safetensors"], ["gc", "--ttl", "1d"]] {
            let r = try TestSupport.run(args + ["--store", missing])
            #expect(r.status == 1, "\(args): \(r.status) \(r.stdout)")
            #expect(r.stderr.contains("no store at"), "\(args): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: missing), "\(args) created the store")
        }
        let env = try TestSupport.run(["stat"], environment: ["KVSTORE_HOME": missing])
        #expect(env.status == 1 && !FileManager.default.fileExists(atPath: missing))
    }

    /// The commands that store do create their store: the sidecar opens (and creates) it before it
    /// looks for its engine, so one pointed at no engine leaves a store behind, never "no store",
    /// and keeps waiting for its engine rather than exiting.
    @Test func theSidecarCreatesItsStore() async throws {
        defer { TestSupport.removeTree(dir) }
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let store = dir + "/sidecar-store", portFile = dir + "/port"
        let p = try TestSupport.start(["sidecar", "--llama-server", "http://127.0.0.1:1", "--slot-save-path", dir,
                                       "--listen", "127.0.0.1:0", "--store", store, "--port-file", portFile])
        defer { p.process.terminate(); p.process.waitUntilExit() }
        let start = Date()
        while !FileManager.default.fileExists(atPath: portFile), p.process.isRunning, Date().timeIntervalSince(start) < 300 {
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(p.process.isRunning)
        #expect(FileManager.default.fileExists(atPath: portFile))
        #expect(FileManager.default.fileExists(atPath: store))
        let bad = try TestSupport.run(["sidecar", "--slot-save-path", dir, "--remote", "http://127.0.0.1:1", "--prefill-ms-per-token", "0"])
        #expect(bad.status != 0 && bad.stderr.contains("--prefill-ms-per-token 0.0 is not in (0, 60000]"), "\(bad.stderr)")
    }

    /// A bandwidth prior's lifetime must be a number of seconds: refused before anything listens
    /// or any store is made.
    @Test func serveRefusesANegativeOrInfinitePriorLifetime() throws {
        defer { TestSupport.removeTree(dir) }
        for value in ["-1", "inf", "nan"] {
            let r = try TestSupport.run(["serve", "--listen", "127.0.0.1:0", "--prior-lifetime=\(value)", "--store", store])
            #expect(r.status == 64 && r.stderr.contains("--prior-lifetime must be 0 or more seconds"), "\(value): \(r.stderr)")
            #expect(!FileManager.default.fileExists(atPath: store), "\(value)")
        }
    }
}
