@testable import KVCodec
import KVTensor
import TestSupport

/// Codec profiles the codec tests encode with.
enum Profiles {
    /// SmolLM2-135M's numpy-calibrated profile (the tables that were Swift constants), frozen as a
    /// fixture: the encoder's pinned bytes and the fixture context's model use it.
    static func smolLM2() throws -> CodecProfile { try CodecProfile.load(TestSupport.numpyProfile) }

    /// One step per group with the RoPE the payload flag undoes (θ 100000, adjacent pairs, head_dim 64).
    static func flatWithRoPE(_ shape: KVShape) -> CodecProfile {
        var p = CodecProfile.flat(shape: shape)
        p.rope = .init(theta: 100_000, pairs: "adjacent", dim: 64)
        return p
    }
}
