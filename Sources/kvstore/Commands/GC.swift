import ArgumentParser
import Foundation
import KVStore

struct GC: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evict chunks by age and size, and collect what crashes left behind.",
        discussion: """
        Policies compose: --ttl drops chunks whose chain tail was not read for that long, then
        --max-bytes evicts least recently used chunks until indexed blob bytes fit. A chunk goes
        together with every chunk after it in any chain (a prefix lookup stops at the first gap).
        Pinned contexts are never evicted. Safe to run from cron while other processes use the store.
        """)

    @Option(help: "Evict least recently used chunks until stored blobs fit, e.g. 10G, 500M, 1.5GiB.")
    var maxBytes: String?

    @Option(help: "Evict chunks not read for this long, e.g. 7d, 12h, 30m.")
    var ttl: String?

    @Option(help: "Leave orphan blobs and temp files younger than this to puts in flight.")
    var grace = "10m"

    @Flag(help: "Report what would be evicted without changing anything.")
    var dryRun = false

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { _ = try policy() }

    func policy() throws -> GCPolicy {
        try usage {
            GCPolicy(maxBytes: try maxBytes.map(ByteSize.parse), ttl: try ttl.map(DurationText.parse),
                     grace: try DurationText.parse(grace), dryRun: dryRun)
        }
    }

    func run() throws {
        let policy = try policy()
        let r = try storeOptions.open().collectGarbage(policy)
        output.emit(r) {
            let verb = r.dryRun ? "would evict" : "evicted"
            var lines = [
                "\(verb) \(r.chunksEvicted) chunks (\(r.contextsDropped) contexts dropped, \(r.contextsTruncated) shortened), freeing \(r.blobsFreed) blobs, \(Format.bytes(r.bytesFreed))",
                "stored blobs: \(Format.bytes(r.bytesBefore)) -> \(Format.bytes(r.bytesAfter)); \(r.pinnedChunks) pinned chunks kept",
            ]
            if r.orphanBlobs + r.tempFiles + r.restoredBlobs + r.expiredPins > 0 {
                lines.append("\(r.dryRun ? "would collect" : "collected") \(r.orphanBlobs) orphan blobs (\(Format.bytes(r.orphanBytes))), \(r.tempFiles) temp files, \(r.expiredPins) expired pins; restored \(r.restoredBlobs) blobs")
            }
            lines.append(String(format: "took %.3f s", r.seconds))
            return lines.joined(separator: "\n")
        }
    }
}

/// Reports a bad option value as a usage error (exit 64) with the parser's one-line message.
func usage<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch StoreError.invalidInput(let why) { throw ValidationError(why) }
}
