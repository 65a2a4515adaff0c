import ArgumentParser
import KVStore

struct Fsck: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Verify every blob against its hash and the index against the blobs.",
        discussion: """
        Exit status 0 when the index is consistent (orphan blob files left by a crashed put are
        reported, not counted as damage), 2 when damage was found and not repaired.
        --repair drops broken entries, fixes reference counts and collects orphans and temp files
        older than --grace.
        """)

    @Flag(help: "Fix what is found.")
    var repair = false

    @Option(help: "Leave orphan blobs and temp files younger than this to puts in flight.")
    var grace = "10m"

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func validate() throws { _ = try usage { try DurationText.parse(grace) } }

    func run() throws {
        let r = try storeOptions.open().fsck(repair: repair, grace: DurationText.parse(grace))
        output.emit(r) {
            var lines = ["checked \(r.blobsChecked) blobs, \(r.chunks) chunks, \(r.contexts) contexts in \(String(format: "%.2f", r.seconds)) s"]
            let shown = r.problems.prefix(20)
            lines += shown.map { "problem: \($0)" }
            if r.problems.count > shown.count { lines.append("… and \(r.problems.count - shown.count) more problems") }
            lines.append(r.clean ? "index consistent" : "\(r.problems.count) problems\(r.repaired ? ", repaired" : "; run fsck --repair")")
            let verb = r.repaired ? "collected" : "found"
            lines.append("\(verb) \(r.orphanBlobs) orphan blobs (\(Format.bytes(r.orphanBytes))) and \(r.tempFiles) temp files; \(r.recentOrphans) recent orphans left to puts in flight")
            if r.restoredBlobs > 0 { lines.append("restored \(r.restoredBlobs) blobs from an interrupted removal") }
            return lines.joined(separator: "\n")
        }
        if !r.clean && !r.repaired { throw ExitCode(2) }
    }
}
