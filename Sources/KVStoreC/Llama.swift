import Foundation
import KVEngineLlama
import KVTensor

// llama.cpp in-process states (include/kvstore.h, "llama.cpp sequence states"): thin calls into
// KVEngineLlama, so a Python engine moves KV between libllama and kvstore without a second parser.

/// The C struct `kvs_llama_layout`, field for field.
struct CLlamaLayout {
    var streamCount: UInt32
    var vTransposed: Int32
    var dtype: Int32
}

/// The `sliding` / `window` arguments as the model's caches.
func cacheLayoutArgument(_ sliding: UnsafePointer<UInt8>?, _ window: Int64, layers: Int) throws -> LlamaCacheLayout {
    guard let sliding else { return .single }
    guard window > 0, window <= Int64(KVTensor.maxTokens) else {
        throw CError.Argument(description: "window \(window) outside 1...\(KVTensor.maxTokens) for a model with sliding layers")
    }
    let layout = LlamaCacheLayout(slidingLayers: (0..<layers).map { sliding[$0] != 0 }, window: Int(window))
    try layout.validate(layers: layers)
    return layout
}

@_cdecl("kvs_llama_state_decode")
public func kvs_llama_state_decode(_ data: UnsafeRawPointer?, _ length: Int, _ layers: Int64, _ kvHeads: Int64,
                                   _ headDim: Int64, _ sliding: UnsafePointer<UInt8>?, _ window: Int64, _ count: Int64,
                                   _ layout: UnsafeMutableRawPointer?, _ windowStart: UnsafeMutablePointer<Int64>?,
                                   _ kv: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let raw = try input(data, length)
        let kv = try require(kv, "kv")
        guard let shape = boundedShape(layers, kvHeads, headDim) else {
            throw CError.Argument(description: "shape [\(layers) layers, \(kvHeads) KV heads, \(headDim) head dim] is out of bounds")
        }
        let caches = try cacheLayoutArgument(sliding, window, layers: shape.layers)
        let state = try LlamaMemoryState(decodingMemory: Array(raw), shape: shape, layout: caches)
        let n = count < 0 ? state.cellCount : Int(clamping: count)
        let (tensor, start) = try state.kv(count: n)
        hand(TensorBox(tensor), to: kv)
        let engine = state.engineLayout
        layout?.storeBytes(of: CLlamaLayout(streamCount: engine.streamCount, vTransposed: engine.vTransposed ? 1 : 0,
                                            dtype: Int32(engine.dtype.code)), as: CLlamaLayout.self)
        windowStart?.pointee = Int64(start)
        return 0
    }
}

@_cdecl("kvs_llama_state_encode")
public func kvs_llama_state_encode(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64,
                                   _ kvHeads: Int64, _ headDim: Int64, _ tokens: Int64, _ sliding: UnsafePointer<UInt8>?,
                                   _ window: Int64, _ layout: UnsafeRawPointer?,
                                   _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try require(out, "out")
        let l = try require(layout, "layout").loadUnaligned(as: CLlamaLayout.self)
        // Every layout field is checked before the KV is copied or anything is sized from them.
        guard let cacheType = UInt8(exactly: l.dtype).flatMap(DType.init(code:)) else {
            throw CError.Argument(description: "layout dtype \(l.dtype) is not 1 (F16) or 3 (F32)")
        }
        guard l.vTransposed == 0 || l.vTransposed == 1 else {
            throw CError.Argument(description: "layout v_transposed \(l.vTransposed) is not 0 or 1")
        }
        let engine = LlamaEngineLayout(streamCount: l.streamCount, vTransposed: l.vTransposed != 0, dtype: cacheType)
        try engine.validate()
        let tensor = try tensorArgument(kv, nbytes, dtype, layers, kvHeads, headDim, tokens)
        let caches = try cacheLayoutArgument(sliding, window, layers: tensor.shape.layers)
        hand(BytesBox(try LlamaMemoryState(kv: tensor, layout: caches, engine: engine).memoryBytes()), to: out)
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
                                   "kv_heads": model.kvShape.kvHeads, "head_dim": model.kvShape.headDim,
                                   "sliding_window": model.cacheLayout.window, "sliding_layers": model.cacheLayout.slidingLayers]
        hand(BytesBox(Array(try JSONSerialization.data(withJSONObject: json, options: [.sortedKeys]))), to: out)
        return 0
    }
}
