import ArgumentParser
import KVStore

struct Remove: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a stored context.")

    @Argument(help: "Context id (or a unique prefix of at least 6 hex digits) or name.")
    var context: String

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let store = try storeOptions.open()
        let report = try store.remove(context: store.resolveContext(context))
        output.emit(report) {
            "removed 1 context; freed \(report.chunks) chunks, \(report.blobs) blobs, \(Format.bytes(report.bytes))"
        }
    }
}
