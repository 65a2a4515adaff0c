/// vLLM's prefix-caching block hashes with `prefix_caching_hash_algo = "sha256_cbor"`
/// (vllm/v1/core/kv_cache_utils.py, `hash_block_tokens`):
///   `h_i = SHA-256(cbor2.dumps((h_{i-1}, tuple(block_token_ids), extra_keys), canonical=True))`
/// over full blocks only (`block_size`, 16 by default), with `h_{-1} = NONE_HASH`. vLLM seeds
/// `NONE_HASH` in `init_none_hash`: `sha256_cbor(os.getenv("PYTHONHASHSEED"))` when that variable
/// is set, 32 random bytes otherwise (so only a fixed PYTHONHASHSEED gives hashes another process
/// can reproduce; the seed is therefore a parameter here). `extra_keys` (from
/// `generate_block_hash_extra_keys`) is `(lora_name, cache_salt)` with the LoRA name on every
/// block, the salt on the first block only, and `None` when both are absent.
public enum VLLMBlockHash {
    public static let defaultBlockSize = 16

    public static func sha256CBOR(_ item: CBORItem) -> Hash32 { Hash32.sha256(item.encoded()) }

    /// `NONE_HASH` for `PYTHONHASHSEED=seed`.
    public static func noneHash(seed: String) -> Hash32 { sha256CBOR(.text(seed)) }

    public static func extraKeys(blockStart: Int, loraName: String?, salt: String?) -> CBORItem {
        var keys: [CBORItem] = []
        if let loraName { keys.append(.text(loraName)) }
        if blockStart == 0, let salt, !salt.isEmpty { keys.append(.text(salt)) }
        return keys.isEmpty ? .null : .array(keys)
    }

    public static func block(parent: Hash32, tokens: ArraySlice<Int32>, extraKeys: CBORItem) -> Hash32 {
        sha256CBOR(.array([.bytes(parent.bytes), .array(tokens.map { .unsigned(UInt64(UInt32(bitPattern: $0))) }), extraKeys]))
    }

    /// Hashes of the full blocks of `tokens`.
    public static func hashes(tokens: [Int32], blockSize: Int = defaultBlockSize, noneHash: Hash32,
                              loraName: String? = nil, salt: String? = nil) -> [Hash32] {
        precondition(blockSize > 0)
        var parent = noneHash
        return stride(from: 0, to: tokens.count - blockSize + 1, by: blockSize).map { start in
            parent = block(parent: parent, tokens: tokens[start..<(start + blockSize)],
                           extraKeys: extraKeys(blockStart: start, loraName: loraName, salt: salt))
            return parent
        }
    }
}
