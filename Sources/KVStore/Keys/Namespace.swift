import KVTensor

/// Everything that must match for two chunks with the same tokens to be interchangeable.
/// Encoded as tagged, length-prefixed fields, so no two different field lists give the same bytes
/// (an adapter named "x" can never collide with a salt "x": the tags differ).
public struct Namespace: Hashable, Sendable, Codable {
    public static let scheme = "kvstore-chain-v1"

    public var model: String
    public var dtype: DType
    public var shape: KVShape
    public var chunkTokens: Int
    /// Content digest of an adapter (aLoRA): chunks after its invocation point live here.
    public var adapter: String?
    /// Cache salt / tenant: separates users that must never see each other's chunks.
    public var salt: String?

    public init(model: String, dtype: DType, shape: KVShape, chunkTokens: Int, adapter: String? = nil, salt: String? = nil) {
        self.model = model
        self.dtype = dtype
        self.shape = shape
        self.chunkTokens = chunkTokens
        self.adapter = adapter
        self.salt = salt
    }

    enum Tag: UInt8 {
        case scheme = 1, model, dtype, layers, kvHeads, headDim, chunkTokens, adapter, salt
    }

    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        func field(_ tag: Tag, _ value: [UInt8]) {
            out.append(tag.rawValue)
            withUnsafeBytes(of: UInt32(value.count).littleEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: value)
        }
        func int(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(v).littleEndian) { Array($0) } }
        field(.scheme, Array(Self.scheme.utf8))
        field(.model, Array(model.utf8))
        field(.dtype, [dtype.code])
        field(.layers, int(shape.layers))
        field(.kvHeads, int(shape.kvHeads))
        field(.headDim, int(shape.headDim))
        field(.chunkTokens, int(chunkTokens))
        if let adapter { field(.adapter, Array(adapter.utf8)) }
        if let salt { field(.salt, Array(salt.utf8)) }
        return out
    }

    /// `h_0` of the prefix chain.
    public var root: Hash32 { Hash32.sha256(encoded()) }

    /// The same namespace for the base model (no adapter): where tokens before an aLoRA invocation live.
    public var base: Namespace {
        var n = self
        n.adapter = nil
        return n
    }
}
