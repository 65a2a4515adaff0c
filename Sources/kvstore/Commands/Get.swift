import ArgumentParser
import KVCluster
import KVStore
import KVTensor

struct Get: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the KV of the longest stored prefix of a token query.",
        discussion: "Exits with status 3 when no prefix is stored.")

    @Option(help: "Query: a safetensors file with `tokens`, a file with a JSON array, or an inline JSON array.")
    var tokens: String?

    @Option(name: .shortAndLong, help: "Output safetensors file.")
    var output: String

    @Option(help: "Model id (needed when the store holds several).")
    var model: String?

    @Option(help: "Stored dtype to match (F16, BF16, F32), when the store holds several.")
    var dtype: String?

    @Option(help: "Compression level to read (default: the best stored; with --remote: pin every chunk to it).")
    var level: UInt8?

    @OptionGroup var reuse: ReuseOptions
    @OptionGroup var segmentOptions: SegmentGetOptions
    @OptionGroup var vllm: VLLMOptions
    @OptionGroup var remoteOptions: RemoteOptions
    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var clusterOptions: ClusterOptions
    @OptionGroup var out: OutputOptions

    struct Report: Encodable {
        var matchedTokens: Int
        var queryTokens: Int
        var chunks: Int
        var output: String?
    }

    func run() async throws {
        let modes = [tokens != nil, !segmentOptions.segments.isEmpty, segmentOptions.vllmHashes != nil].filter { $0 }.count
        guard modes == 1 else { throw ValidationError("give exactly one of --tokens, --segments, --vllm-hashes") }
        if remoteOptions.remote != nil {
            guard let tokens else { throw ValidationError("--remote takes --tokens") }
            return try await runRemote(query: try TokenQuery.parse(tokens))
        }
        if segmentOptions.vllmHashes != nil { return try getVLLM() }
        let dtype = try dtype.map { d in
            guard let t = DType(rawValue: d.uppercased()) else { throw ValidationError("unknown dtype \(d)") }
            return t
        }
        if !segmentOptions.segments.isEmpty { return try getSegments(dtype: dtype) }
        let query = try TokenQuery.parse(tokens!)
        let adapter = try reuse.adapter()
        // With a cluster the local store is its cache (or unused in cluster mode): made on first use.
        let store = try storeOptions.open(create: clusterOptions.cluster != nil)
        if let tier = try clusterOptions.tier(store: store, background: false) {
            guard adapter == nil else { throw ValidationError("--cluster reads plain contexts (no aLoRA adapters)") }
            return try getFromTier(tier, query: query, dtype: dtype)
        }
        let spaces: [Namespace]
        do { spaces = try store.resolveNamespaces(model: model, dtype: dtype, salt: reuse.tenant) } catch StoreError.notFound(let why) {
            out.emit(Report(matchedTokens: 0, queryTokens: query.count, chunks: 0)) { "no stored prefix: \(why)" }
            throw Exit.miss
        }
        let bar = ProgressBar("get", enabled: !out.json)
        let namespace = try store.longestMatch(query, in: spaces, adapter: adapter)?.namespace ?? spaces[0]
        try finish(try store.get(query, namespace: namespace, adapter: adapter, level: level, progress: bar.update), query: query)
    }

    /// Writes the prefix and reports it, or reports the miss (exit status 3).
    func finish(_ got: (context: KVContext, match: PrefixMatch)?, query: [Int32]) throws {
        guard let (context, match) = got else {
            out.emit(Report(matchedTokens: 0, queryTokens: query.count, chunks: 0)) {
                "no stored prefix for the query (0 of \(query.count) tokens)"
            }
            throw Exit.miss
        }
        try Safetensors.write(context, to: output)
        out.emit(Report(matchedTokens: match.tokens, queryTokens: query.count, chunks: match.chunks.count, output: output)) {
            "matched \(match.tokens) of \(query.count) tokens (\(match.chunks.count) chunks) -> \(output)"
        }
    }
}

extension Get {
    /// `get` through a cluster tier: the same answers and exit statuses as from the local store.
    func getFromTier(_ tier: any ChunkTier, query: [Int32], dtype: DType?) throws {
        let spaces: [Namespace]
        do { spaces = try tier.resolveNamespaces(model: model, dtype: dtype, salt: reuse.tenant) } catch StoreError.notFound(let why) {
            out.emit(Report(matchedTokens: 0, queryTokens: query.count, chunks: 0)) { "no stored prefix: \(why)" }
            throw Exit.miss
        }
        let namespace = try tier.longestPrefix(query, in: spaces)?.namespace ?? spaces[0]
        let got = try tier.getContextFilling(query, namespace: namespace, level: level)
        try finish(got, query: query)
    }
}
