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

    @Option(help: "Compression levels to store, e.g. 0 or 0,1,2,3,4 (0 = lossless).")
    var levels = CodecLevel.storedByDefaultText

    @Option(help: "A name to find the context by in ls and rm.")
    var name = ""

    @Option(help: "Codec profile file for the model, stored for this and later puts (kvstore profile add).")
    var profile: String?

    @OptionGroup var reuse: ReuseOptions
    @OptionGroup var segmentOptions: SegmentPutOptions
    @OptionGroup var vllm: VLLMOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var clusterOptions: ClusterOptions
    @OptionGroup var threads: ThreadsOption
    @OptionGroup var output: OutputOptions

    func run() throws {
        let levels = try parseLevels(self.levels)
        let ctx = try Safetensors.readContext(context)
        guard let model = model ?? ctx.metadata["model"], !model.isEmpty else {
            throw ValidationError("\(context) names no model in __metadata__.model; pass --model")
        }
        if segmentOptions.independent { return try putSegment(ctx, model: model, levels: levels) }
        let adapter = try reuse.adapter()
        let store = try storeOptions.open(create: true)
        try storeProfile(in: store, for: ctx, model: model)
        let namespace = store.namespace(for: ctx, model: model, salt: reuse.tenant)
        if let tier = try clusterOptions.tier(store: store, background: false) {
            guard adapter == nil, vllm.hashing(salt: reuse.tenant) == nil else {
                throw ValidationError("--cluster stores plain contexts (no aLoRA adapters or vLLM hashes)")
            }
            return emit(try tier.storeContext(try store.encode(ctx, namespace: namespace, levels: levels, threads: threads.count), name: name))
        }
        let bar = ProgressBar("put", enabled: !output.json)
        var report = try store.put(ctx, namespace: namespace, adapter: adapter, levels: levels,
                                   name: name, threads: threads.count, progress: bar.update)
        if let hashing = vllm.hashing(salt: reuse.tenant) {
            report.vllmBlocks = try store.indexVLLM(ctx.tokens, namespace: namespace, adapter: adapter, hashing: hashing)
        }
        emit(report)
    }

    func emit(_ report: PutReport) {
        output.emit(report) {
            """
            stored context \(report.contextID.prefix(16)) (\(report.tokens) tokens, \(report.chunks) chunks)\(report.alreadyStored ? ", already stored" : "")
            chunks: \(report.chunks - report.deduplicatedChunks) new, \(report.deduplicatedChunks) deduplicated
            wrote \(report.blobsWritten) blobs, \(Format.bytes(report.bytesWritten)); \(Format.bytes(report.inputBytes)) of KV stored as \(levelSizes(report))\(report.vllmBlocks.map { "\nindexed \($0) vLLM block hashes" } ?? "")
            """
        }
    }

    /// `--profile FILE`: checked against the context, then kept by the store for the model.
    func storeProfile(in store: ChunkStore, for ctx: KVContext, model: String) throws {
        guard let profile else { return }
        let p = try CodecProfile.load(profile)
        guard p.model == model else { throw ValidationError("\(profile) is the profile of \(p.model), not \(model)") }
        try p.check(matches: ctx.kv.shape)
        try store.addProfile(p)
    }

    /// "L0 19.5 MiB (1.16x), L2 3.8 MiB (5.97x)": each level's size and ratio to the input.
    func levelSizes(_ report: PutReport) -> String {
        report.storedBytesByLevel.sorted { $0.key < $1.key }
            .map { "L\($0.key) \(Format.bytes($0.value)) (\(Format.ratio(report.inputBytes, $0.value)))" }
            .joined(separator: ", ")
    }
}
