@testable import KVCodec
import KVTensor
import TestSupport

/// Codec profiles the codec tests encode with.
enum Profiles {
    /// SmolLM2-135M's calibrated profile, from the file the repository ships.
    static func smolLM2() throws -> CodecProfile { try CodecProfile.load(TestSupport.profile("SmolLM2-135M-Instruct")) }

    /// One step per group with the RoPE the payload flag undoes (θ 100000, adjacent pairs, head_dim 64).
    static func flatWithRoPE(_ shape: KVShape) -> CodecProfile {
        var p = CodecProfile.flat(shape: shape)
        p.rope = .init(theta: 100_000, pairs: "adjacent", dim: 64)
        return p
    }
}
