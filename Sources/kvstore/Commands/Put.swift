import ArgumentParser
import KVCodec
import KVStore
import KVTensor

struct Put: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Store a context (safetensors with `kv` and `tokens`).")

    @Argument(help: "Context file: tensors `kv` [layers, 2, tokens, kv_heads, head_dim] and `tokens`.")
    var context: String

    @Option(help: "Model id (default: the file's __metadata__.model).")
    var model: String?

    @Option(help: "Compression levels to store, e.g. 0 or 0,2,4 (0 = lossless).")
    var levels = "0"

    @Option(help: "A name to find the context by in ls and rm.")
    var name = ""

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var output: OutputOptions

    func run() throws {
        let levels = try parseLevels(self.levels)
        let ctx = try Safetensors.readContext(context)
        guard let model = model ?? ctx.metadata["model"], !model.isEmpty else {
            throw ValidationError("\(context) names no model in __metadata__.model; pass --model")
        }
        let store = try storeOptions.open()
        let bar = ProgressBar("put", enabled: !output.json)
        let report = try store.put(ctx, namespace: store.namespace(for: ctx, model: model), levels: levels,
                                   name: name, progress: bar.update)
        output.emit(report) {
            """
            stored context \(report.contextID.prefix(16)) (\(report.tokens) tokens, \(report.chunks) chunks)\(report.alreadyStored ? ", already stored" : "")
            chunks: \(report.chunks - report.deduplicatedChunks) new, \(report.deduplicatedChunks) deduplicated
            wrote \(report.blobsWritten) blobs, \(Format.bytes(report.bytesWritten)); stored \(Format.bytes(report.storedBytes)) for \(Format.bytes(report.inputBytes)) of KV (\(Format.ratio(report.inputBytes, report.storedBytes)))
            """
        }
    }
}
