import Foundation
import KVEngineLlama
import KVTensor

// llama.cpp in-process states (include/kvstore.h, "llama.cpp sequence states"): thin calls into
// KVEngineLlama, so a Python engine moves KV between libllama and kvstore without a second parser.

/// The C struct `kvs_llama_layout`, field for field.
struct CLlamaLayout {
    var streamCount: UInt32
    var vTransposed: Int32
}

@_cdecl("kvs_llama_state_decode")
public func kvs_llama_state_decode(_ data: UnsafeRawPointer?, _ length: Int, _ layers: Int64, _ kvHeads: Int64,
                                   _ headDim: Int64, _ count: Int64, _ layout: UnsafeMutableRawPointer?,
                                   _ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let raw = try input(data, length)
        let kv = try require(kv, "kv")
        guard let shape = boundedShape(layers, kvHeads, headDim) else {
            throw CError.Argument(description: "shape [\(layers) layers, \(kvHeads) KV heads, \(headDim) head dim] is out of bounds")
        }
        let state = try LlamaSequenceState(decodingMemory: Array(raw), shape: shape)
        let n = count < 0 ? state.cellCount : Int(clamping: count)
        hand(TensorBox(try state.prefixKV(count: n)), to: kv)
        layout?.storeBytes(of: CLlamaLayout(streamCount: state.streamCount, vTransposed: state.vTransposed ? 1 : 0), as: CLlamaLayout.self)
        return 0
    }
}

@_cdecl("kvs_llama_state_encode")
public func kvs_llama_state_encode(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64,
                                   _ kvHeads: Int64, _ headDim: Int64, _ tokens: Int64, _ layout: UnsafeRawPointer?,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try require(out, "out")
        let l = try require(layout, "layout").loadUnaligned(as: CLlamaLayout.self)
        let tensor = try tensorArgument(kv, nbytes, dtype, layers, kvHeads, headDim, tokens)
        let state = try LlamaSequenceState(streamCount: l.streamCount, stream: 0, seqID: 0,
                                           positions: (0..<Int32(tokens)).map { $0 }, vTransposed: l.vTransposed != 0, kv: tensor)
        hand(BytesBox(state.memoryBytes()), to: out)
        return 0
    }
}

@_cdecl("kvs_gguf_model")
public func kvs_gguf_model(_ path: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try require(out, "out")
        let model = try GGUFModel(path: String(cString: try require(path, "path")))
        let json: [String: Any] = ["identity": model.identity, "architecture": model.architecture, "name": model.name,
                                   "sha256": model.sha256, "layers": model.kvShape.layers,
                                   "kv_heads": model.kvShape.kvHeads, "head_dim": model.kvShape.headDim]
        hand(BytesBox(Array(try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))), to: out)
        return 0
    }
}
