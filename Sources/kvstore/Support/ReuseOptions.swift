import ArgumentParser
import KVStore

/// Tenant and aLoRA options shared by put and get.
struct ReuseOptions: ParsableArguments {
    @Option(help: "Cache salt / tenant: chunks stored under one salt are never found under another.")
    var salt: String?

    @Option(help: "Content digest (hex) of an aLoRA adapter.")
    var adapterDigest: String?

    @Option(help: "aLoRA adapter weights file; its SHA-256 identifies the adapter.")
    var adapterFile: String?

    @Option(help: "Index of the first token the aLoRA adapter computes (its invocation point).")
    var invocationStart: Int?

    func adapter() throws -> AdapterSpan? {
        if adapterDigest != nil, adapterFile != nil { throw ValidationError("give --adapter-digest or --adapter-file, not both") }
        let digest = try adapterDigest ?? adapterFile.map { try AdapterSpan.digest(ofFile: $0) }
        switch (digest, invocationStart) {
        case (nil, nil): return nil
        case (nil, _?): throw ValidationError("--invocation-start needs --adapter-digest or --adapter-file")
        case (_?, nil): throw ValidationError("an aLoRA adapter needs --invocation-start")
        case let (d?, n?): return try AdapterSpan(digest: d, invocationStart: n)
        }
    }

    /// The request's salt; an empty salt means none.
    var tenant: String? { salt?.isEmpty == false ? salt : nil }
}

/// Options of vLLM block-hash indexing.
struct VLLMOptions: ParsableArguments {
    @Option(help: "Index (put) or look up (get) by vLLM sha256_cbor block hashes, with vLLM's PYTHONHASHSEED.")
    var vllmSeed: String?

    @Option(help: "vLLM block size (must divide the store's chunk size).")
    var vllmBlockSize = VLLMBlockHash.defaultBlockSize

    @Option(help: "vLLM LoRA name to hash into every block (vLLM keys LoRA by name).")
    var vllmLoraName: String?

    func hashing(salt: String?) -> VLLMHashing? {
        vllmSeed.map { VLLMHashing(seed: $0, blockSize: vllmBlockSize, loraName: vllmLoraName, salt: salt) }
    }
}
