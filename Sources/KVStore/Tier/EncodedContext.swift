import KVCodec
import KVTensor
import Synchronization

/// A context ready to be stored in any tier: checked against its namespace, with the profile its
/// lossy levels are encoded with. Chunks are encoded here and nowhere else (`encode(tokens:level:)`),
/// so every tier stores the same bytes for the same chunk. Made by `ChunkStore.encode`, which
/// supplies the profile the store holds for the model.
public final class EncodedContext: Sendable {
    public let context: KVContext
    public let namespace: Namespace
    /// Requested levels, deduplicated and sorted.
    public let levels: [UInt8]
    /// Nil when every level is lossless (no profile is read).
    public let profile: CodecProfile?
    /// Threads that may encode this context's chunks at once (the bytes do not depend on it).
    public let threads: Int
    private let encodes = Mutex(0)

    /// `stored`: the model's profile, which must be for the context's shape; without one, a
    /// profile derived from this KV (`CodecProfile.uncalibrated`) is used, as the embedded store does.
    public init(_ context: KVContext, namespace: Namespace, levels: [UInt8], storedProfile stored: CodecProfile?,
                threads: Int = 1) throws {
        guard !context.tokens.isEmpty else { throw StoreError.invalidInput("context holds no tokens") }
        guard namespace.shape == context.kv.shape, namespace.dtype == context.kv.dtype else {
            throw StoreError.invalidInput("namespace shape or dtype does not match the context")
        }
        let levels = Array(Set(levels)).sorted()
        guard !levels.isEmpty else { throw StoreError.invalidInput("no levels requested") }
        for l in levels { _ = try ChunkContainer.codec(forLevel: l) }
        try NameRules.checkModelID(namespace.model)
        var profile: CodecProfile?
        if levels.contains(where: { $0 != CodecLevel.lossless }) {
            if let stored {
                do { try stored.check(matches: context.kv.shape) } catch { throw StoreError.invalidInput("\(error)") }
                profile = stored
            } else {
                profile = CodecProfile.uncalibrated(model: namespace.model, kv: context.kv, metadata: context.metadata)
            }
        }
        self.context = context
        self.namespace = namespace
        self.levels = levels
        self.profile = profile
        self.threads = max(1, threads)
    }

    /// The container bytes of the chunk over `range` at `level`.
    public func encode(tokens range: Range<Int>, level: UInt8) throws -> [UInt8] {
        encodes.withLock { $0 += 1 }
        return try ChunkContainer.encode(context.kv.slice(tokens: range), level: level, model: profile)
    }

    /// Chunk encodings made so far (a context put into two tiers is still encoded once per chunk and level).
    public var encodeCount: Int { encodes.withLock { $0 } }
}

extension ChunkStore {
    /// `context` prepared for `storeContext` on any tier, encoded with the profile this store holds
    /// for the namespace's model (`kvstore profile add`).
    public func encode(_ context: KVContext, namespace: Namespace, levels: [UInt8], threads: Int = 1) throws -> EncodedContext {
        let lossy = levels.contains { $0 != CodecLevel.lossless }
        return try EncodedContext(context, namespace: namespace, levels: levels,
                                  storedProfile: lossy ? try profile(model: namespace.model) : nil, threads: threads)
    }
}
