import ArgumentParser
import Foundation
import KVStore

struct Pin: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep a context from GC eviction, forever or for a while; --list shows pins.")

    @Argument(help: "Context id (or a unique prefix of at least 6 hex digits) or name.")
    var context: String?

    @Option(name: .customLong("for"), help: "Pin expiry, e.g. 12h or 7d (default: never).")
    var duration: String?

    @Flag(help: "List pins instead.")
    var list = false

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if list == (context != nil) { throw ValidationError(list ? "--list takes no context" : "give a context to pin, or --list") }
        _ = try usage { try duration.map(DurationText.parse) }
    }

    func run() throws {
        let store = try storeOptions.open()
        if list {
            let pins = try store.pins()
            output.emit(pins) {
                pins.isEmpty ? "(no pins)" : pins.map { "\($0.context.prefix(16))  \(Pin.describe($0.expires))" }.joined(separator: "\n")
            }
            return
        }
        let seconds = try duration.map(DurationText.parse)
        let pin = try store.pin(context: store.resolveContext(context!), duration: seconds)
        output.emit(pin) { "pinned \(pin.context.prefix(16)) \(Pin.describe(pin.expires))" }
    }

    static func describe(_ expires: Int?) -> String {
        guard let expires else { return "until unpinned" }
        return "until " + ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(expires)))
    }
}

struct Unpin: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Let GC evict a pinned context again.")

    @Argument(help: "Context id (or a unique prefix of at least 6 hex digits) or name.")
    var context: String

    @OptionGroup var storeOptions: StoreOptions

    func run() throws {
        let store = try storeOptions.open()
        let id = try store.resolveContext(context)
        guard try store.unpin(context: id) else { throw StoreError.notFound("context \(id.hex.prefix(16)) is not pinned") }
        print("unpinned \(id.hex.prefix(16))")
    }
}
