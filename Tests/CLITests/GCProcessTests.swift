import Foundation
import Testing
import KVStore
import KVTensor
import TestSupport

/// Thread-safe tallies for the stress test.
final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    private var messages: [String] = []
    func add(_ key: String, _ message: String? = nil) {
        lock.withLock {
            counts[key, default: 0] += 1
            if let message, messages.count < 20 { messages.append("\(key): \(message)") }
        }
    }
    subscript(_ key: String) -> Int { lock.withLock { counts[key] ?? 0 } }
    var summary: String { lock.withLock { counts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") } }
    var notes: [String] { lock.withLock { messages } }
}

/// GC, crashes and a full disk with the real binary in separate processes.
@Suite(.serialized) struct GCProcessTests {
    let dir = TestSupport.scratchDirectory("gcproc")
    var store: String { dir + "/store" }

    /// Contexts of real KV: even ones under their own token ids, each odd one sharing the first 48
    /// tokens (and their KV) with the one before it. Rotations give distinct chunks and blobs.
    func variants(_ n: Int) throws -> [KVContext] {
        let base = try TestSupport.realContext()
        func rotated(_ r: Int) throws -> KVTensor {
            r == 0 ? base.kv : try KVTensor.concatenate([base.kv.slice(tokens: r..<96), base.kv.slice(tokens: 0..<r)])
        }
        var out: [KVContext] = []
        for i in 0..<n {
            if i % 2 == 1 {
                let prev = out[i - 1]
                let kv = try KVTensor.concatenate([prev.kv.slice(tokens: 0..<48), rotated((4 * i + 2) % 96).slice(tokens: 48..<96)])
                let tokens = Array(prev.tokens[0..<48]) + base.tokens[48...].map { $0 &+ Int32(i * 100_000) }
                out.append(try KVContext(kv: kv, tokens: tokens, metadata: base.metadata))
            } else {
                out.append(try KVContext(kv: rotated((4 * i) % 96), tokens: base.tokens.map { $0 &+ Int32(i * 100_000) }, metadata: base.metadata))
            }
        }
        return out
    }

    func write(_ contexts: [KVContext]) throws -> [String] {
        try contexts.enumerated().map { i, c in
            let path = "\(dir)/v\(i).safetensors"
            try Safetensors.write(c, to: path)
            return path
        }
    }

    func namespace(_ s: ChunkStore, _ c: KVContext) -> Namespace { s.namespace(for: c, model: c.metadata["model"]!) }

    /// Matched tokens of a read, after checking the bytes against what was stored; -1 when they differ.
    func verifiedRead(_ s: ChunkStore, _ c: KVContext) throws -> Int {
        guard let got = try s.get(c.tokens, namespace: namespace(s, c)) else { return 0 }
        let m = got.match.tokens
        return got.context.kv == c.kv.slice(tokens: 0..<m) && got.context.tokens == Array(c.tokens[0..<m]) ? m : -1
    }

    func fsckJSON(_ extra: [String] = []) throws -> [String: Any] {
        let r = try TestSupport.run(["fsck", "--store", store, "--json"] + extra)
        let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return try #require(obj, "fsck printed no JSON: \(r.stdout) \(r.stderr)")
    }

    @Test func writersReadersAndGCAtOnceNeverSeeErrorsOrCorruptData() throws {
        defer { TestSupport.removeTree(dir) }
        let contexts = try variants(8)
        let files = try write(contexts)
        let reader = try ChunkStore(root: store, chunkTokens: 16)
        let tally = Tally()
        // Counts, not a clock, bound each actor, so a loaded machine makes the test slower, never
        // different: writers do a fixed number of puts; gc and readers run until the writers are done
        // and the readers have seen a hit (or a generous cap passes, which the hit check then reports).
        let cap = Date().addingTimeInterval(600)
        @Sendable func writing() -> Bool { tally["writersDone"] < 2 }
        @Sendable func reading() -> Bool { writing() || (tally["fullHits"] + tally["partialHits"] == 0 && Date() < cap) }
        let group = DispatchGroup()
        func spawn(_ body: @escaping @Sendable () -> Void) {
            group.enter()
            Thread { body(); group.leave() }.start()
        }
        let store = self.store, dir = self.dir
        for w in 0..<2 {
            spawn {
                defer { tally.add("writersDone") }
                for n in 0..<16 {
                    let i = Int.random(in: 0..<files.count)
                    guard let r = try? TestSupport.run(["put", files[i], "--store", store, "--json"]) else { tally.add("error", "spawn"); continue }
                    if r.status != 0 { tally.add("error", "put: \(r.stderr)"); continue }
                    tally.add("puts")
                    if n % 4 == w, let id = r.stdout.split(separator: "\"").drop(while: { $0 != "contextID" }).dropFirst(2).first {
                        let rm = try? TestSupport.run(["rm", String(id), "--store", store])
                        // gc may have dropped the context first: that is a clean "not found".
                        if rm?.status == 0 { tally.add("removes") } else if rm?.stderr.contains("not found") != true { tally.add("error", "rm: \(rm?.stderr ?? "")") }
                    }
                }
            }
        }
        spawn {
            let limits = ["4M", "8M", "2M", "12M", "6M", "0"]
            for n in 0..<100_000 where reading() || tally["gcs"] == 0 {
                guard let r = try? TestSupport.run(["gc", "--store", store, "--max-bytes", limits[n % limits.count], "--grace", "1s", "--json"]) else { continue }
                if r.status == 0 { tally.add("gcs") } else { tally.add("error", "gc: \(r.stderr)") }
                usleep(50_000)
            }
        }
        for _ in 0..<2 {
            spawn {
                for _ in 0..<10_000_000 where reading() {
                    let c = contexts[Int.random(in: 0..<contexts.count)]
                    do {
                        let m = try self.verifiedRead(reader, c)
                        tally.add(m < 0 ? "corrupt" : m == 0 ? "misses" : m == 96 ? "fullHits" : "partialHits", m < 0 ? "tokens \(c.tokens[0])" : nil)
                        if m == 0 { usleep(2000) }   // misses are cheap; keep the mix of reads useful
                    } catch {
                        tally.add("error", "read: \(error)")
                    }
                }
            }
        }
        spawn {
            for n in 0..<100_000 where writing() {
                let i = Int.random(in: 0..<files.count), out = "\(dir)/get\(n).safetensors"
                guard let r = try? TestSupport.run(["get", "--tokens", files[i], "-o", out, "--store", store]) else { continue }
                if r.status == 3 { tally.add("cliMisses"); continue }
                guard r.status == 0, let got = try? Safetensors.readContext(out) else { tally.add("error", "get: \(r.stderr)"); continue }
                let ok = got.kv == contexts[i].kv.slice(tokens: 0..<got.tokens.count) && got.tokens == Array(contexts[i].tokens.prefix(got.tokens.count))
                tally.add(ok ? "cliHits" : "corrupt", ok ? nil : "cli get of v\(i)")
                unlink(out)
            }
        }
        group.wait()
        print("stress: \(tally.summary)")
        #expect(tally["error"] == 0, "\(tally.notes)")
        #expect(tally["corrupt"] == 0, "\(tally.notes)")
        #expect(tally["puts"] > 0 && tally["gcs"] > 0 && tally["fullHits"] + tally["partialHits"] > 0, "\(tally.summary)")
        let f = try fsckJSON()
        #expect((f["problems"] as? [String])?.isEmpty == true, "\(f)")
    }

    /// kill -9 at random moments of puts: the index is always consistent, completed puts are whole.
    @Test func killedPutsLeaveAConsistentStore() throws {
        defer { TestSupport.removeTree(dir) }
        let contexts = try variants(20)
        let files = try write(contexts)
        _ = try ChunkStore(root: store, chunkTokens: 16)
        // Kill times spread over 0...1.5x of an uninterrupted put here and now, whatever the load.
        let t0 = Date()
        #expect(try TestSupport.run(["put", files[0], "--store", store]).status == 0)
        let span = UInt32(Date().timeIntervalSince(t0) * 1.5e6)
        var completed: [Int] = [0], killed = 0
        for i in 1..<files.count {
            let p = try TestSupport.start(["put", files[i], "--store", store])
            usleep(UInt32.random(in: 0...span))
            kill(p.process.processIdentifier, SIGKILL)
            p.process.waitUntilExit()
            if p.process.terminationReason == .exit && p.process.terminationStatus == 0 { completed.append(i) } else { killed += 1 }
            let f = try fsckJSON()
            #expect((f["problems"] as? [String])?.isEmpty == true, "after put \(i): \(f)")
        }
        print("put crash test: \(killed) puts killed, \(completed.count) completed")
        #expect(killed > 0 && !completed.isEmpty, "the kill times did not vary enough")
        let s = try ChunkStore(root: store)
        for i in completed { #expect(try verifiedRead(s, contexts[i]) == 96, "context \(i) completed but is not whole") }
        for i in 0..<contexts.count where !completed.contains(i) { #expect(try verifiedRead(s, contexts[i]) >= 0) }
        let repaired = try fsckJSON(["--repair", "--grace", "0s"])
        #expect((repaired["problems"] as? [String])?.isEmpty == true)
        let after = try fsckJSON(["--grace", "0s"])
        #expect(after["orphanBlobs"] as? Int == 0 && after["recentOrphans"] as? Int == 0 && after["tempFiles"] as? Int == 0, "\(after)")
        for i in completed { #expect(try verifiedRead(s, contexts[i]) == 96) }
    }

    /// kill -9 at random moments of gc: the index stays consistent, pinned contexts stay whole and
    /// every other context reads back as a correct prefix (or a miss).
    @Test func killedGCLeavesAConsistentStore() throws {
        defer { TestSupport.removeTree(dir) }
        let contexts = try variants(12)
        let s = try ChunkStore(root: store, chunkTokens: 16)
        func putAll() throws { for c in contexts { _ = try s.put(c, namespace: namespace(s, c)) } }
        try putAll()
        let pinned = [0, 5]
        for i in pinned {
            let id = PrefixChain.hashes(root: namespace(s, contexts[i]).root, tokens: contexts[i].tokens, chunkTokens: 16).last!
            try s.pin(context: id)
        }
        var killed = 0, finished = 0, rolledBack = 0
        let t0 = Date()
        #expect(try TestSupport.run(["gc", "--store", store, "--max-bytes", "0", "--grace", "0s"]).status == 0)
        let span = UInt32(Date().timeIntervalSince(t0) * 1.5e6)
        try putAll()
        for iteration in 0..<30 {
            let p = try TestSupport.start(["gc", "--store", store, "--max-bytes", iteration % 2 == 0 ? "0" : "4M", "--grace", "0s"])
            usleep(UInt32.random(in: 0...span))
            kill(p.process.processIdentifier, SIGKILL)
            p.process.waitUntilExit()
            if p.process.terminationReason == .exit { finished += 1 } else { killed += 1 }
            let f = try s.fsck()
            #expect(f.problems.isEmpty, "after gc \(iteration): \(f.problems)")
            if f.restoredBlobs > 0 { rolledBack += 1 }
            for i in pinned { #expect(try verifiedRead(s, contexts[i]) == 96, "pinned context \(i) after gc \(iteration)") }
            for c in contexts { #expect(try verifiedRead(s, c) >= 0) }
            try putAll()
        }
        print("gc crash test: \(killed) gc runs killed (\(rolledBack) between moving blobs aside and commit), \(finished) finished")
        #expect(killed > 0 && finished > 0, "the kill times did not vary enough: \(killed) killed, \(finished) finished")
    }

    /// kill -9 of gc passes that evict thousands of chunks, so kills land inside the transaction
    /// (between moving blob files aside and committing): fsck restores the files and finds no damage.
    @Test func killedLargeGCIsRolledBackByTheNextFsck() throws {
        defer { TestSupport.removeTree(dir) }
        let s = try ChunkStore(root: store, chunkTokens: 4)
        let kv = try TestSupport.realContext().kv
        var killed = 0, rolledBack = 0
        for iteration in 0..<12 {
            let made = try SyntheticStore.populate(s, source: kv, chunks: 2000)
            #expect(made.chunks > 0)
            let p = try TestSupport.start(["gc", "--store", store, "--max-bytes", "\(Int.random(in: 0...made.blobBytes))", "--grace", "0s"])
            usleep(UInt32.random(in: 20_000...400_000))
            kill(p.process.processIdentifier, SIGKILL)
            p.process.waitUntilExit()
            if p.process.terminationReason != .exit { killed += 1 }
            let f = try s.fsck()
            #expect(f.problems.isEmpty, "after gc \(iteration): \(f.problems.prefix(5))")
            if f.restoredBlobs > 0 { rolledBack += 1 }
        }
        print("large gc crash test: \(killed) of 12 gc runs killed, \(rolledBack) rolled back from inside the transaction")
    }

    /// A put that fills the disk fails with one line and leaves the store consistent.
    @Test func fullDiskDuringPutIsAClearErrorAndTheStoreStaysConsistent() throws {
        defer { TestSupport.removeTree(dir) }
        let mountPoint = dir + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mountPoint]
        mount.standardError = FileHandle.nullDevice
        try mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else {
            print("SKIPPED full-disk test: cannot mount a 3 MiB tmpfs (needs root)")
            return
        }
        defer {
            let u = Process()
            u.executableURL = URL(fileURLWithPath: "/bin/umount")
            u.arguments = [mountPoint]
            try? u.run()
            u.waitUntilExit()
        }
        let store = mountPoint + "/store"
        let small = TestSupport.fixture("smollm2_ctx40_bf16.safetensors")
        let first = try TestSupport.run(["put", small, "--store", store, "--chunk-tokens", "16"])
        #expect(first.status == 0, "\(first.stderr)")
        let files = try write(variants(4).enumerated().filter { $0.offset % 2 == 0 }.map(\.element))
        var failure: TestSupport.RunResult?
        for f in files {
            let r = try TestSupport.run(["put", f, "--store", store])
            if r.status != 0 { failure = r; break }
        }
        let r = try #require(failure, "3 MiB never filled up")
        #expect(r.status == 1)
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("no space left"), "\(r.stderr)")
        let check = try TestSupport.run(["fsck", "--store", store, "--json"])
        #expect(check.status == 0 && check.stdout.contains("\"problems\":[]"), "\(check.stdout) \(check.stderr)")
        let got = try TestSupport.run(["get", "--tokens", small, "-o", dir + "/back.safetensors", "--dtype", "BF16", "--store", store])
        #expect(got.status == 0, "\(got.stderr)")
        #expect(try Safetensors.readContext(dir + "/back.safetensors").kv == Safetensors.readContext(small).kv)
        let repair = try TestSupport.run(["fsck", "--store", store, "--repair", "--grace", "0s"])
        #expect(repair.status == 0, "\(repair.stdout)")
    }

    /// A put past the process's file-size limit (`ulimit -f`) is a clear error, not a kill by
    /// SIGXFSZ, and the store keeps what it had.
    @Test func fileSizeLimitDuringPutIsAClearErrorAndTheStoreStaysConsistent() throws {
        defer { TestSupport.removeTree(dir) }
        let small = TestSupport.fixture("smollm2_ctx40_bf16.safetensors")
        let first = try TestSupport.run(["put", small, "--store", store, "--chunk-tokens", "16"])
        #expect(first.status == 0, "\(first.stderr)")
        let big = try write(variants(1))[0]
        // 64 blocks of 512 bytes: below the store's LMDB file and the new context's blobs.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", "ulimit -f 64 && exec \"$0\" \"$@\"", TestSupport.binary, "put", big, "--store", store]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(p.terminationReason == .exit, "killed by signal \(p.terminationStatus)")
        #expect(p.terminationStatus == 1, "\(message)")
        let lines = message.split(separator: "\n")
        #expect(lines.count == 1 && lines[0].contains("no space left") && lines[0].contains("File too large"), "\(message)")
        let check = try TestSupport.run(["fsck", "--store", store, "--json"])
        #expect(check.status == 0 && check.stdout.contains("\"problems\":[]"), "\(check.stdout) \(check.stderr)")
        let got = try TestSupport.run(["get", "--tokens", small, "-o", dir + "/back.safetensors", "--dtype", "BF16", "--store", store])
        #expect(got.status == 0, "\(got.stderr)")
        #expect(try Safetensors.readContext(dir + "/back.safetensors").kv == Safetensors.readContext(small).kv)
    }

    @Test func gcPinAndFsckCommandsReportAndRejectBadInput() throws {
        defer { TestSupport.removeTree(dir) }
        let fixture = TestSupport.fixture("smollm2_ctx96_f16.safetensors")
        #expect(try TestSupport.run(["put", fixture, "--store", store, "--chunk-tokens", "16", "--name", "doc", "--levels", "0"]).status == 0)
        let pin = try TestSupport.run(["pin", "doc", "--for", "2h", "--store", store])
        #expect(pin.status == 0 && pin.stdout.hasPrefix("pinned "), "\(pin.stderr)")
        let gc = try TestSupport.run(["gc", "--max-bytes", "0", "--store", store])
        #expect(gc.status == 0 && gc.stdout.contains("evicted 0 chunks") && gc.stdout.contains("6 pinned chunks kept"), "\(gc.stdout)")
        #expect(try TestSupport.run(["unpin", "doc", "--store", store]).status == 0)
        let again = try TestSupport.run(["unpin", "doc", "--store", store])
        #expect(again.status == 1 && again.stderr.contains("is not pinned"))
        let dry = try TestSupport.run(["gc", "--max-bytes", "1M", "--dry-run", "--store", store, "--json"])
        #expect(dry.stdout.contains("\"dryRun\":true") && dry.stdout.contains("\"chunksEvicted\":3"), "\(dry.stdout)")
        let real = try TestSupport.run(["gc", "--max-bytes", "1M", "--store", store])
        #expect(real.stdout.hasPrefix("evicted 3 chunks (0 contexts dropped, 1 shortened)"), "\(real.stdout)")
        let bad: [([String], String)] = [
            (["gc", "--max-bytes", "12Q"], "unknown unit \"q\""),
            (["gc", "--ttl", "7"], "needs a unit"),
            (["gc", "--grace", "soon"], "is not whole numbers"),
            (["pin", "doc", "--for", "1y"], "unknown unit \"y\""),
            (["pin"], "give a context to pin"),
            (["fsck", "--grace", "10"], "10 needs a unit"),
        ]
        for (args, message) in bad {
            let r = try TestSupport.run(args + ["--store", store])
            #expect(r.status == 64 && r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        // Damage makes fsck exit 2 until repaired.
        let blobs = BlobStore(root: store)
        let blob = try #require(blobs.allIDs().first)
        unlink(blobs.path(of: blob))
        let broken = try TestSupport.run(["fsck", "--store", store])
        #expect(broken.status == 2 && broken.stdout.contains("run fsck --repair"), "\(broken.stdout)")
        #expect(try TestSupport.run(["fsck", "--store", store, "--repair"]).status == 0)
        #expect(try TestSupport.run(["fsck", "--store", store]).status == 0)
    }
}
