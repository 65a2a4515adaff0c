import ArgumentParser
import KVStore

struct Stat: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show store totals.")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let s = try storeOptions.open().stats()
        output.emit(s) {
            """
            store:      \(s.path)
            chunk size: \(s.chunkTokens) tokens
            contexts:   \(s.contexts)
            chunks:     \(s.chunks)
            blobs:      \(s.blobs) (\(Format.bytes(s.blobBytes)))
            index:      \(Format.bytes(s.indexBytes))
            models:     \(s.namespaces.map { "\($0.model) \($0.dtype.rawValue) \($0.shape)" }.joined(separator: ", "))
            uncalibrated: \(s.uncalibratedModels.isEmpty ? "none" : s.uncalibratedModels.joined(separator: ", ") + " (lossy levels on the default profile; see kvstore profile)")
            """
        }
    }
}
