import Foundation
import Testing
import KVTensor
import TestSupport

@Suite struct CLITests {
    let dir = TestSupport.scratchDirectory("cli")
    var store: String { dir + "/store" }
    let fixture = TestSupport.fixture("smollm2_ctx96_f16.safetensors")

    @Test func putGetRoundTripAndMissExitStatus() throws {
        defer { TestSupport.removeTree(dir) }
        let put = try TestSupport.run(["put", fixture, "--store", store, "--chunk-tokens", "32", "--json"])
        #expect(put.status == 0, "\(put.stderr)")
        #expect(put.stdout.contains("\"chunks\":3"))
        // Levels 0, 2 and 4 by default; the per-level sizes add up to the total and shrink with the level.
        let report = try #require(try JSONSerialization.jsonObject(with: Data(put.stdout.utf8)) as? [String: Any])
        let byLevel = try #require(report["storedBytesByLevel"] as? [String: Int])
        #expect(byLevel.keys.sorted() == ["0", "2", "4"])
        #expect(byLevel.values.reduce(0, +) == report["storedBytes"] as? Int)
        #expect(byLevel["0"]! > byLevel["2"]! && byLevel["2"]! > byLevel["4"]!)
        let again = try TestSupport.run(["put", fixture, "--store", store])
        #expect(again.stdout.contains("wrote 0 blobs, 0 B"), "\(again.stdout)")

        let query = try TestSupport.textTokens().prefix(150).map(String.init).joined(separator: ",")
        let out = dir + "/out.safetensors"
        let get = try TestSupport.run(["get", "--tokens", "[\(query)]", "-o", out, "--store", store])
        #expect(get.status == 0, "\(get.stderr)")
        #expect(get.stdout.contains("matched 96 of 150 tokens (3 chunks)"))
        let got = try Safetensors.readContext(out), original = try Safetensors.readContext(fixture)
        #expect(got.kv == original.kv && got.tokens == original.tokens)
        #expect(got.metadata["model"] == original.metadata["model"])

        let miss = try TestSupport.run(["get", "--tokens", "[5,6,7]", "-o", dir + "/miss.safetensors", "--store", store])
        #expect(miss.status == 3)
        #expect(miss.stdout.contains("no stored prefix"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/miss.safetensors"))

        let ls = try TestSupport.run(["ls", "--store", store])
        #expect(ls.stdout.contains("SmolLM2-135M-Instruct"))
        let stat = try TestSupport.run(["stat", "--store", store, "--json"])
        #expect(stat.stdout.contains("\"contexts\":1"))
    }

    @Test func storeComesFromTheEnvironmentWhenNotGiven() throws {
        defer { TestSupport.removeTree(dir) }
        let put = try TestSupport.run(["put", fixture], environment: ["KVSTORE_HOME": store])
        #expect(put.status == 0, "\(put.stderr)")
        #expect(FileManager.default.fileExists(atPath: store + "/config.json"))
    }

    @Test func removeByIdPrefixFreesTheBlobs() throws {
        defer { TestSupport.removeTree(dir) }
        let put = try TestSupport.run(["put", fixture, "--store", store, "--name", "doc1", "--levels", "0"])
        #expect(put.status == 0)
        let rm = try TestSupport.run(["rm", "doc1", "--store", store])
        #expect(rm.status == 0, "\(rm.stderr)")
        #expect(rm.stdout.contains("removed 1 context; freed 1 chunks, 1 blobs"), "\(rm.stdout)")
        let again = try TestSupport.run(["rm", "doc1", "--store", store])
        #expect(again.status == 1)
        #expect(again.stderr.contains("not found: no context doc1"))
    }

    /// Each bad input gives a one-line error naming the problem, a non-zero exit, and no index entry.
    @Test func badInputsGiveOneLineErrorsAndStoreNothing() throws {
        defer { TestSupport.removeTree(dir) }
        let good = try FileIO.readAll(fixture)
        let ctx = try Safetensors.readContext(fixture)
        let parts = Safetensors.serialize(ctx)
        let header = String(decoding: parts[0].dropFirst(8), as: UTF8.self)
        func rewritten(_ a: String, _ b: String) -> [UInt8] {
            TestSupport.safetensorsBytes(header: header.replacingOccurrences(of: a, with: b), data: parts[1] + parts[2])
        }
        let cases: [(String, [UInt8], String)] = [
            ("truncated", Array(good.prefix(good.count / 2)), "truncated file: tensor"),
            ("short", Array(good.prefix(5)), "truncated file: 5 bytes"),
            ("header-past-end", Array(good.prefix(8)) + [0x7B], "truncated file: header length"),
            ("rank", rewritten("[30, 2, 96, 3, 64]", "[60, 96, 3, 64]"), "bad shape: kv has rank 4"),
            ("dtype", rewritten("\"F16\"", "\"F8_E5M2\""), "unknown dtype: tensor kv has dtype F8_E5M2"),
            ("tokens", rewritten("\"shape\":[96]", "\"shape\":[97]"), "mismatch: tensor tokens spans 384 bytes"),
        ]
        for (name, bytes, message) in cases {
            let path = "\(dir)/\(name).safetensors"
            try TestSupport.write(bytes, to: path)
            let r = try TestSupport.run(["put", path, "--store", store])
            #expect(r.status == 1, "\(name): status \(r.status)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1 && lines[0].contains(message), "\(name): \(r.stderr)")
        }
        let missing = try TestSupport.run(["put", dir + "/nope.safetensors", "--store", store])
        #expect(missing.status == 1 && missing.stderr.contains("cannot open \(dir)/nope.safetensors: No such file or directory"))
        let noModel = dir + "/nomodel.safetensors"
        try Safetensors.write(KVContext(kv: ctx.kv, tokens: ctx.tokens), to: noModel)
        let r = try TestSupport.run(["put", noModel, "--store", store])
        #expect(r.status != 0 && r.stderr.contains("names no model"), "\(r.stderr)")
        let badLevels = try TestSupport.run(["put", fixture, "--store", store, "--levels", "0,9"])
        #expect(badLevels.status != 0 && badLevels.stderr.contains("level 9 is not in 0...4"), "\(badLevels.stderr)")
        let badQuery = try TestSupport.run(["get", "--tokens", "[1, -2]", "-o", dir + "/x", "--store", store])
        #expect(badQuery.status != 0 && badQuery.stderr.contains("token 1 of the query is not an id"), "\(badQuery.stderr)")
        // Nothing was stored: not even the store was created.
        let ls = try TestSupport.run(["ls", "--store", store, "--json"])
        #expect(ls.status == 1 && ls.stderr.contains("no store at"), "\(ls.stdout)\(ls.stderr)")
    }

    @Test func encodeDecodeRoundTripsLosslessly() throws {
        defer { TestSupport.removeTree(dir) }
        let kvc = dir + "/ctx.kvc", out = dir + "/back.safetensors"
        let enc = try TestSupport.run(["encode", "--level", "0", fixture, "-o", kvc])
        #expect(enc.status == 0, "\(enc.stderr)")
        let dec = try TestSupport.run(["decode", kvc, "-o", out])
        #expect(dec.status == 0, "\(dec.stderr)")
        #expect(try Safetensors.readContext(out) == Safetensors.readContext(fixture))
        var bytes = try FileIO.readAll(kvc)
        bytes[bytes.count / 2] ^= 0x55
        try TestSupport.write(bytes, to: kvc)
        let bad = try TestSupport.run(["decode", kvc, "-o", out])
        #expect(bad.status == 1 && bad.stderr.contains("corrupt chunk: checksum mismatch"), "\(bad.stderr)")
    }

    /// Two processes putting and getting different contexts at once, then every context reads back exactly.
    @Test func concurrentProcessesPutAndGetWithoutErrors() throws {
        defer { TestSupport.removeTree(dir) }
        let base = try Safetensors.readContext(fixture)
        var files: [String] = []
        for i in 0..<6 {
            // Same real KV under different token ids: distinct chains, shared blobs.
            let ctx = try KVContext(kv: base.kv, tokens: base.tokens.map { $0 &+ Int32(i * 100_000) }, metadata: base.metadata)
            let path = "\(dir)/ctx\(i).safetensors"
            try Safetensors.write(ctx, to: path)
            files.append(path)
        }
        _ = try TestSupport.run(["put", files[0], "--store", store, "--chunk-tokens", "16", "--levels", "0"])
        let script = { (range: [Int]) -> String in
            range.map { i in
                "\(TestSupport.binary) put \(files[i]) --store \(self.store) --levels 0 && \(TestSupport.binary) get --tokens \(files[0]) -o \(self.dir)/g\(i).safetensors --store \(self.store)"
            }.joined(separator: " && ")
        }
        let writers = try [[1, 2, 3], [4, 5]].map { range -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", script(range)]
            try p.run()
            return p
        }
        for p in writers { p.waitUntilExit(); #expect(p.terminationStatus == 0) }
        for i in 0..<6 {
            let out = "\(dir)/check\(i).safetensors"
            let r = try TestSupport.run(["get", "--tokens", files[i], "-o", out, "--store", store])
            #expect(r.status == 0, "\(r.stderr)")
            #expect(try Safetensors.readContext(out).kv == base.kv)
        }
        let stat = try TestSupport.run(["stat", "--store", store, "--json"])
        #expect(stat.stdout.contains("\"contexts\":6"), "\(stat.stdout)")
        #expect(stat.stdout.contains("\"blobs\":6"), "\(stat.stdout)")
    }
}
