import Crypto

/// One chunk of a planned chain: its key, the key it chains from, and its tokens.
public struct ChainLink: Sendable, Equatable {
    public var hash: Hash32
    public var parent: Hash32
    public var range: Range<Int>
    /// True when the chunk lives in the adapter's namespace (aLoRA), false for the base model's.
    public var adapter: Bool
}

/// Prefix chains with an optional aLoRA adapter (see schemas/reuse.md):
/// chunks ending at or before the invocation start chain from the base namespace's root exactly as
/// a plain base request's do, so base, and every adapter share them. The chunk containing the
/// invocation start and all after it chain from a *bridge* hash
///   `b = SHA-256("kvstore-alora-bridge-v1" || adapterRoot || lastBaseHash || u64le(invocationStart))`
/// where `lastBaseHash` is the last base chunk's hash (the base root when there is none) and
/// `adapterRoot` the root of the base namespace with the adapter digest set. Adapter chunk keys
/// therefore commit to the whole prefix, the namespace (salt included), the adapter's content and
/// the invocation point (the KV of a chunk depends on where the adapter starts inside it).
public enum ReuseChain {
    static let bridgeTag = Array("kvstore-alora-bridge-v1".utf8)

    public static func bridge(parent: Hash32, adapterRoot: Hash32, invocationStart: Int) -> Hash32 {
        var h = SHA256()
        h.update(data: bridgeTag)
        h.update(data: adapterRoot.bytes)
        h.update(data: parent.bytes)
        withUnsafeBytes(of: UInt64(invocationStart).littleEndian) { h.update(bufferPointer: $0) }
        return Hash32(digest: h.finalize())
    }

    /// The namespace an adapter span's chunks after its invocation point live in.
    public static func adapterNamespace(_ namespace: Namespace, _ adapter: AdapterSpan) -> Namespace {
        var n = namespace.base
        n.adapter = adapter.digest
        return n
    }

    /// The chain of `tokens` in `namespace`, split at the adapter's invocation point when given.
    /// Without an adapter this is exactly `PrefixChain.hashes(root: namespace.root, ...)`.
    public static func plan(tokens: [Int32], namespace: Namespace, adapter: AdapterSpan?) -> [ChainLink] {
        let ranges = PrefixChain.chunkRanges(count: tokens.count, chunkTokens: namespace.chunkTokens)
        var parent = adapter == nil ? namespace.root : namespace.base.root
        let adapterRoot = adapter.map { adapterNamespace(namespace, $0).root }
        var bridged = false
        return ranges.map { range in
            if let adapter, let adapterRoot, !bridged, range.upperBound > adapter.invocationStart {
                parent = bridge(parent: parent, adapterRoot: adapterRoot, invocationStart: adapter.invocationStart)
                bridged = true
            }
            let h = PrefixChain.next(parent, tokens: tokens[range])
            defer { parent = h }
            return ChainLink(hash: h, parent: parent, range: range, adapter: bridged)
        }
    }
}
