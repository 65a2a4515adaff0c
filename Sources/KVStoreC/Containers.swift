import Foundation
import KVCodec
import KVTensor

// Chunk containers and context files (include/kvstore.h): thin calls into KVCodec and KVTensor.

@_cdecl("kvs_chunk_info")
public func kvs_chunk_info(_ data: UnsafeRawPointer?, _ length: Int, _ out: UnsafeMutableRawPointer?) -> Int32 {
    guarded {
        let raw = try input(data, length)
        let out = try require(out, "out")
        let h = try ChunkHeader.parse(raw, available: max(0, length - ChunkHeader.size))
        out.storeBytes(of: CInfo(shape: h.shape, tokens: h.tokens, dtype: h.dtype, level: Int32(h.level)), as: CInfo.self)
        return 0
    }
}

@_cdecl("kvs_chunk_decode")
public func kvs_chunk_decode(_ data: UnsafeRawPointer?, _ length: Int, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let raw = try input(data, length)
        let out = try require(out, "out")
        hand(TensorBox(try ChunkContainer.decode(raw)), to: out)
        return 0
    }
}

@_cdecl("kvs_chunk_encode")
public func kvs_chunk_encode(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64, _ kvHeads: Int64,
                             _ headDim: Int64, _ tokens: Int64, _ level: Int32,
                             _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    kvs_chunk_encode_profile(kv, nbytes, dtype, layers, kvHeads, headDim, tokens, level, nil, 0, out)
}

/// A chunk gets the profile a file of it would: the given one, else the default derived from its KV
/// (not the flat profile, whose levels keep no model's floors).
@_cdecl("kvs_chunk_encode_profile")
public func kvs_chunk_encode_profile(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64,
                                     _ kvHeads: Int64, _ headDim: Int64, _ tokens: Int64, _ level: Int32,
                                     _ profileJSON: UnsafePointer<UInt8>?, _ profileLength: Int64,
                                     _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try require(out, "out")
        let level = try levelArgument(level)
        let tensor = try tensorArgument(kv, nbytes, dtype, layers, kvHeads, headDim, tokens)
        let profile = try CodecProfile.forEncoding(tensor, given: try profileArgument(profileJSON, profileLength))
        hand(BytesBox(try ChunkContainer.encode(tensor, level: level, model: profile)), to: out)
        return 0
    }
}

@_cdecl("kvs_file_decode")
public func kvs_file_decode(_ data: UnsafeRawPointer?, _ length: Int, _ kv: UnsafeMutablePointer<OpaquePointer?>?,
                            _ tokens: UnsafeMutablePointer<OpaquePointer?>?,
                            _ metadata: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let raw = try input(data, length)
        try handContext(try ContextFile.decode(Array(raw)), kv: try require(kv, "kv"), tokens: tokens, metadata: metadata)
        return 0
    }
}

@_cdecl("kvs_safetensors_decode")
public func kvs_safetensors_decode(_ data: UnsafeRawPointer?, _ length: Int, _ kv: UnsafeMutablePointer<OpaquePointer?>?,
                                   _ tokens: UnsafeMutablePointer<OpaquePointer?>?,
                                   _ metadata: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let raw = try input(data, length)
        let ctx = try SafetensorsFile(bytes: Array(raw)).context()
        try handContext(ctx, kv: try require(kv, "kv"), tokens: tokens, metadata: metadata)
        return 0
    }
}

/// A decoded context's three outputs (tokens and metadata only where asked for).
func handContext(_ ctx: KVContext, kv: UnsafeMutablePointer<OpaquePointer?>, tokens: UnsafeMutablePointer<OpaquePointer?>?,
                 metadata: UnsafeMutablePointer<OpaquePointer?>?) throws {
    let json = try JSONSerialization.data(withJSONObject: ctx.metadata, options: [.sortedKeys])
    if let tokens { hand(BytesBox(ctx.tokens.map(\.littleEndian).withUnsafeBytes { Array($0) }), to: tokens) }
    if let metadata { hand(BytesBox(Array(json)), to: metadata) }
    hand(TensorBox(ctx.kv), to: kv)
}

@_cdecl("kvs_file_encode")
public func kvs_file_encode(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64, _ kvHeads: Int64,
                            _ headDim: Int64, _ tokens: UnsafePointer<Int32>?, _ tokenCount: Int64,
                            _ model: UnsafePointer<CChar>?, _ level: Int32, _ chunkTokens: Int64,
                            _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    kvs_file_encode_profile(kv, nbytes, dtype, layers, kvHeads, headDim, tokens, tokenCount, model, level, chunkTokens,
                            nil, 0, out)
}

@_cdecl("kvs_file_encode_profile")
public func kvs_file_encode_profile(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64, _ kvHeads: Int64,
                                    _ headDim: Int64, _ tokens: UnsafePointer<Int32>?, _ tokenCount: Int64,
                                    _ model: UnsafePointer<CChar>?, _ level: Int32, _ chunkTokens: Int64,
                                    _ profileJSON: UnsafePointer<UInt8>?, _ profileLength: Int64,
                                    _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try require(out, "out")
        let level = try levelArgument(level)
        let ctx = try contextArgument(kv, nbytes, dtype, layers, kvHeads, headDim, tokens, tokenCount, model)
        guard chunkTokens > 0, chunkTokens <= ChunkContainer.maxTokens else {
            throw CError.Argument(description: "chunk_tokens \(chunkTokens) outside 1...\(ChunkContainer.maxTokens)")
        }
        let profile = try CodecProfile.forEncoding(ctx, given: try profileArgument(profileJSON, profileLength))
        hand(BytesBox(try ContextFile.encode(ctx, level: level, chunkTokens: Int(chunkTokens), model: profile)), to: out)
        return 0
    }
}

/// A profile file's bytes (NULL: none given); parsed and validated by `CodecProfile.parse`.
func profileArgument(_ json: UnsafePointer<UInt8>?, _ length: Int64) throws -> CodecProfile? {
    guard let json else {
        guard length == 0 else { throw CError.Argument(description: "profile_json is NULL but profile_len is \(length)") }
        return nil
    }
    guard length >= 0, length <= Int64(CodecProfile.maxFileBytes) else {
        throw CError.Argument(description: "codec profile of \(length) bytes, at most \(CodecProfile.maxFileBytes)")
    }
    return try CodecProfile.parse(Array(UnsafeBufferPointer(start: json, count: Int(length))))
}

@_cdecl("kvs_safetensors_encode")
public func kvs_safetensors_encode(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64, _ kvHeads: Int64,
                                   _ headDim: Int64, _ tokens: UnsafePointer<Int32>?, _ tokenCount: Int64,
                                   _ model: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    guarded {
        let out = try require(out, "out")
        let ctx = try contextArgument(kv, nbytes, dtype, layers, kvHeads, headDim, tokens, tokenCount, model)
        hand(BytesBox(Safetensors.serialize(ctx).flatMap { $0 }), to: out)
        return 0
    }
}

func levelArgument(_ level: Int32) throws -> UInt8 {
    guard let l = UInt8(exactly: level), CodecLevel.all.contains(l) else {
        throw CError.Argument(description: "level \(level) is not in \(CodecLevel.all.lowerBound)...\(CodecLevel.all.upperBound)")
    }
    return l
}

func contextArgument(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64, _ kvHeads: Int64,
                     _ headDim: Int64, _ tokens: UnsafePointer<Int32>?, _ tokenCount: Int64,
                     _ model: UnsafePointer<CChar>?) throws -> KVContext {
    guard tokenCount > 0 else { throw CError.Argument(description: "a context needs at least one token") }
    let tensor = try tensorArgument(kv, nbytes, dtype, layers, kvHeads, headDim, tokenCount)
    let ids = try tokensArgument(tokens, tokenCount)
    return try KVContext(kv: tensor, tokens: ids, metadata: model.map { ["model": String(cString: $0)] } ?? [:])
}
