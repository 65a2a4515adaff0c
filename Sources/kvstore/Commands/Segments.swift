import ArgumentParser
import KVStore

/// Independently encoded segments (`put --independent`): list and remove.
struct Segments: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List or remove independently encoded segments.",
        subcommands: [SegmentList.self, SegmentRemove.self], defaultSubcommand: SegmentList.self)
}

struct SegmentInfo: Encodable {
    var id: String
    var tokens: Int
    var start: Int
    var sharedPrefix: String?
    var rope: RoPEConfig
    var storedBytes: Int
    var created: Int
}

struct SegmentList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "ls", abstract: "List stored segments.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let list = try storeOptions.open().segments().map { id, r in
            SegmentInfo(id: id.hex, tokens: r.tokens, start: r.start, sharedPrefix: r.prefix?.hex, rope: r.rope,
                        storedBytes: r.storedBytes, created: r.created)
        }.sorted { $0.created < $1.created }
        output.emit(list) {
            var lines = ["ID                TOKENS  START  PREFIX            ROPE                      STORED"]
            for s in list {
                let rope = "\(s.rope.pairs.rawValue) θ=\(s.rope.theta) r=\(s.rope.rotaryDim)"
                lines.append("\(s.id.prefix(16))  \(String(s.tokens).leftPad(6))  \(String(s.start).leftPad(5))  \((s.sharedPrefix?.prefix(16)).map(String.init) ?? "-".padding(toLength: 16, withPad: " ", startingAt: 0))  \(rope.padding(toLength: 24, withPad: " ", startingAt: 0))  \(Format.bytes(s.storedBytes).leftPad(9))")
            }
            if list.isEmpty { lines.append("(no segments)") }
            return lines.joined(separator: "\n")
        }
    }
}

struct SegmentRemove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a stored segment.")

    @Argument(help: "Segment id (or a unique prefix of at least 6 hex digits).")
    var segment: String

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try storeOptions.open()
        let query = segment.lowercased()
        let matches = try store.segments().map(\.id).filter { $0.hex == query || (query.count >= 6 && $0.hex.hasPrefix(query)) }
        guard !matches.isEmpty else { throw StoreError.notFound("no segment \(segment)") }
        guard matches.count == 1 else { throw StoreError.invalidInput("\(segment) names \(matches.count) segments; give more of the id") }
        let report = try store.removeSegment(matches[0])
        output.emit(report) { "removed 1 segment; freed \(report.blobs) blobs, \(Format.bytes(report.bytes))" }
    }
}
