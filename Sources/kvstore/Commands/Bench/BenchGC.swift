import ArgumentParser
import Foundation
import KVStore
import KVTensor

struct BenchGC: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Time GC and fsck on a synthetic store of many chunks cut from real KV.")

    @Option(help: "Chunk records to create.")
    var chunks = 100_000

    @Option(help: "F16 safetensors context to cut chunks from.")
    var source = "Tests/Fixtures/smollm2_ctx96_f16.safetensors"

    @Option(help: "Store directory to build (default: a temporary one, removed afterwards).")
    var store: String?

    @Flag(help: "Only build the store (with --store, to time gc runs by hand).")
    var populateOnly = false

    @OptionGroup var output: OutputOptions

    struct Step: Encodable { var step: String; var seconds: Double; var chunksEvicted: Int; var bytesAfter: Int }
    struct Report: Encodable { var chunks: Int; var contexts: Int; var blobBytes: Int; var populateSeconds: Double; var steps: [Step] }

    func run() throws {
        let kv = try Safetensors.readContext(source).kv
        let root = store ?? NSTemporaryDirectory() + "kvstore-bench-gc-\(getpid())"
        defer { if store == nil { try? FileManager.default.removeItem(atPath: root) } }
        let s = try ChunkStore(root: root, chunkTokens: 4)
        let t0 = Date()
        let summary = try SyntheticStore.populate(s, source: kv, chunks: chunks)
        let populate = Date().timeIntervalSince(t0)
        if populateOnly {
            print("built \(summary.chunks) chunks in \(summary.contexts) contexts in " + String(format: "%.1f s", populate))
            return
        }
        var steps: [Step] = []
        func time(_ name: String, _ body: () throws -> GCReport) rethrows {
            let r = try body()
            steps.append(Step(step: name, seconds: r.seconds, chunksEvicted: r.chunksEvicted, bytesAfter: r.bytesAfter))
        }
        try time("usedBytes (evictIfNeeded check)") {
            let t = Date()
            var r = GCReport()
            r.bytesAfter = try s.usedBytes()
            r.seconds = Date().timeIntervalSince(t)
            return r
        }
        try time("gc, nothing to evict") { try s.collectGarbage(GCPolicy()) }
        try time("gc --dry-run --max-bytes 50%") { try s.collectGarbage(GCPolicy(maxBytes: summary.blobBytes / 2, dryRun: true)) }
        try time("gc --ttl 15d") { try s.collectGarbage(GCPolicy(ttl: 15 * 86400)) }
        try time("gc --max-bytes 25%") { try s.collectGarbage(GCPolicy(maxBytes: summary.blobBytes / 4)) }
        let f = try s.fsck()
        steps.append(Step(step: "fsck (\(f.blobsChecked) blobs, \(f.problems.count) problems)", seconds: f.seconds, chunksEvicted: 0, bytesAfter: 0))
        let report = Report(chunks: summary.chunks, contexts: summary.contexts, blobBytes: summary.blobBytes,
                            populateSeconds: populate, steps: steps)
        output.emit(report) {
            var lines = ["built \(summary.chunks) chunks in \(summary.contexts) contexts (\(Format.bytes(summary.blobBytes)) of blobs) in "
                         + String(format: "%.1f s", populate)]
            for st in steps {
                lines.append(st.step.padding(toLength: 36, withPad: " ", startingAt: 0)
                             + String(format: "%8.3f s  evicted %6d chunks", st.seconds, st.chunksEvicted))
            }
            return lines.joined(separator: "\n")
        }
    }
}
