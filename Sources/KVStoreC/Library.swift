#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KVCodec
import KVTensor

// Version, errors and the owned-result handles of include/kvstore.h.

let abiVersion: Int32 = 3
nonisolated(unsafe) private let versionString: UnsafePointer<CChar> = UnsafePointer(strdup(
    "kvstore_c abi \(abiVersion); chunk container v\(ChunkHeader.version); levels \(CodecLevel.all.lowerBound)-\(CodecLevel.all.upperBound); frames KVF1")!)

@_cdecl("kvs_abi_version")
public func kvs_abi_version() -> Int32 { abiVersion }

@_cdecl("kvs_version_string")
public func kvs_version_string() -> UnsafePointer<CChar> { versionString }

@_cdecl("kvs_last_error")
public func kvs_last_error() -> UnsafePointer<CChar> { CError.current }

@_cdecl("kvs_tensor_info")
public func kvs_tensor_info(_ t: OpaquePointer?, _ out: UnsafeMutableRawPointer?) {
    guard let t, let out else { return }
    let tensor = borrowed(t, as: TensorBox.self).tensor
    out.storeBytes(of: CInfo(shape: tensor.shape, tokens: tensor.tokens, dtype: tensor.dtype, level: -1), as: CInfo.self)
}

@_cdecl("kvs_tensor_data")
public func kvs_tensor_data(_ t: OpaquePointer?) -> UnsafeRawPointer? {
    guard let t else { return nil }
    // The box never mutates its tensor, so the array's storage stays where it is until the box goes.
    return borrowed(t, as: TensorBox.self).tensor.bytes.withUnsafeBytes { $0.baseAddress }
}

@_cdecl("kvs_tensor_copy")
public func kvs_tensor_copy(_ t: OpaquePointer?, _ dst: UnsafeMutableRawPointer?, _ capacity: Int) -> Int32 {
    guarded {
        let tensor = borrowed(try require(t, "tensor"), as: TensorBox.self).tensor
        let dst = try require(dst, "dst")
        guard capacity >= tensor.bytes.count else {
            throw CError.Argument(description: "buffer of \(capacity) bytes, the tensor needs \(tensor.bytes.count)")
        }
        tensor.bytes.withUnsafeBytes { if let base = $0.baseAddress { dst.copyMemory(from: base, byteCount: $0.count) } }
        return 0
    }
}

@_cdecl("kvs_tensor_free")
public func kvs_tensor_free(_ t: OpaquePointer?) { release(t, as: TensorBox.self) }

@_cdecl("kvs_bytes_data")
public func kvs_bytes_data(_ b: OpaquePointer?) -> UnsafePointer<UInt8>? {
    guard let b else { return nil }
    return borrowed(b, as: BytesBox.self).bytes.withUnsafeBufferPointer { $0.baseAddress }
}

@_cdecl("kvs_bytes_length")
public func kvs_bytes_length(_ b: OpaquePointer?) -> Int {
    guard let b else { return 0 }
    return borrowed(b, as: BytesBox.self).bytes.count
}

@_cdecl("kvs_bytes_free")
public func kvs_bytes_free(_ b: OpaquePointer?) { release(b, as: BytesBox.self) }
