import Foundation
import KVEngineLlama
import KVSidecar
import KVStore
import KVTensor
import TestSupport
import Testing

/// The steps of a 4,096-token SmolLM2 hit (16 chunks of 256), the sequential path (the store's
/// get: decode one chunk after another and join them; encode the joined context; write) against
/// the sidecar's (chunks decoded in parallel; the slot file built from them). A measurement, not
/// a check of speed: run with KVSTORE_RESTORE_TIMING=1; it prints the median of 5 runs per step.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["KVSTORE_RESTORE_TIMING"] != nil))
struct RestorePathTimingTests {
    static func median(_ f: () async throws -> Void) async rethrows -> Double {
        var times: [Double] = []
        for _ in 0..<5 {
            let start = ContinuousClock.now
            try await f()
            let d = ContinuousClock.now - start
            times.append(Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15)
        }
        return times.sorted()[2]
    }

    @Test func stepsOfA4096TokenHit() async throws {
        let n = 4096
        let server = try await LlamaServerProcess(slots: 1, context: n + 256)
        defer { server.stop() }
        let model = try GGUFModel(path: LlamaServerProcess.modelPath)
        var text = try String(contentsOfFile: TestSupport.repositoryRoot + "/tools/texts/emma_ch1.txt", encoding: .utf8)
        text += try String(contentsOfFile: TestSupport.repositoryRoot + "/tools/texts/persuasion_ch1.txt", encoding: .utf8)
        let doc = Array((try await server.call("/tokenize", ["content": text, "add_special": true])["tokens"] as! [Int]).prefix(n))
        try #require(doc.count == n)
        _ = try await server.call("/completion", ["prompt": doc, "n_predict": 1, "id_slot": 0, "cache_prompt": true])
        _ = try await server.call("/slots/0?action=save", ["filename": "doc.bin"])
        let saved = try LlamaSlotFile.read(server.slotDirectory + "/doc.bin", shape: model.kvShape)
        let layout = LlamaEngineLayout(of: saved.state)
        let tokens = doc.map(Int32.init)

        let storeDir = TestSupport.scratchDirectory("timing-store")
        defer { TestSupport.removeTree(storeDir) }
        let store = try ChunkStore(root: storeDir, chunkTokens: 256)
        let ns = Namespace(model: model.identity, dtype: .f16, shape: model.kvShape, chunkTokens: 256)
        _ = try store.put(try saved.state.context(tokens: tokens, count: n, model: model), namespace: ns, levels: [0])
        let query = tokens + [13]
        let path = server.slotDirectory + "/kvstore-restore-0.bin"
        func restore() async throws {
            let reply = try await server.call("/slots/0?action=restore", ["filename": "kvstore-restore-0.bin"])
            #expect(reply["n_restored"] as? Int == n)
        }

        // Sequential: the store's get (lookup, decode chunk by chunk, join), encode, write.
        var context: KVContext?
        let getSeq = try await Self.median { context = try store.get(query, namespace: ns)?.context }
        var bytes: [UInt8] = []
        let encodeSeq = try await Self.median { bytes = try LlamaSlotFile(context: context!, layout: layout).encoded() }
        let writeSeq = try await Self.median { try FileIO.writeAtomically([bytes], to: path, tempDirectory: server.slotDirectory, sync: false) }
        let restoreSeq = try await Self.median { try await restore() }
        let expected = bytes

        // The sidecar's: lookup (index and chunk bytes), parallel decode, slot file from the chunks, write.
        let source = PrefixSource.embedded(store, levels: [0])
        let threads = ProcessInfo.processInfo.activeProcessorCount
        var found: PrefixSource.Found?
        let lookup = try await Self.median { found = try await source.lookup(query, model: model, layout: layout) }
        var prefix: PrefixSource.StoredPrefix?
        let decode = try await Self.median { prefix = try await source.decode(found!, threads: threads) }
        let encode = try await Self.median {
            bytes = try LlamaSlotFile.encoded(tokens: prefix!.tokens, parts: prefix!.parts, layout: layout, threads: threads)
        }
        #expect(bytes == expected)
        let write = try await Self.median { try FileIO.writeAtomically([bytes], to: path, tempDirectory: server.slotDirectory, sync: false) }
        let restoreNew = try await Self.median { try await restore() }
        let f = { (x: Double) in String(format: "%.1f", x) }
        print("""
            restore path of a \(n)-token SmolLM2 hit (\(found.map { $0.detail } ?? "?"), \(bytes.count) bytes, \(layout), \(threads) threads), median of 5, ms:
              sequential: get (lookup + decode + join) \(f(getSeq)), slot file encode \(f(encodeSeq)) + write \(f(writeSeq)) = slot_write \(f(encodeSeq + writeSeq)), restore \(f(restoreSeq)); total \(f(getSeq + encodeSeq + writeSeq + restoreSeq))
              sidecar:    lookup \(f(lookup)), decode \(f(decode)), slot file build \(f(encode)) + write \(f(write)) = slot_write \(f(encode + write)), restore \(f(restoreNew)); total \(f(lookup + decode + encode + write + restoreNew))
            """)
    }
}
