import KVCodec
import KVTensor

/// `kvs_tensor`: a decoded KV tensor handed to C. The codec's output buffer is kept as is, so
/// `kvs_tensor_data` lends it without a copy.
final class TensorBox {
    let tensor: KVTensor
    init(_ tensor: KVTensor) { self.tensor = tensor }
}

/// `kvs_bytes`: an owned byte string (an encoded container or file, token ids, JSON).
final class BytesBox {
    let bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
}

/// The C struct `kvs_info` (include/kvstore.h), laid out field for field.
struct CInfo {
    var dtype: Int32
    var level: Int32
    var layers: Int64
    var kvHeads: Int64
    var headDim: Int64
    var tokens: Int64
    var nbytes: Int64

    init(shape: KVShape, tokens: Int, dtype: DType, level: Int32) {
        self.dtype = Int32(dtype.code)
        self.level = level
        layers = Int64(shape.layers)
        kvHeads = Int64(shape.kvHeads)
        headDim = Int64(shape.headDim)
        self.tokens = Int64(tokens)
        nbytes = Int64(KVTensor.byteCount(shape: shape, tokens: tokens, dtype: dtype))
    }
}

func retained(_ object: AnyObject) -> OpaquePointer { OpaquePointer(Unmanaged.passRetained(object).toOpaque()) }

func borrowed<T: AnyObject>(_ handle: OpaquePointer, as: T.Type) -> T {
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).takeUnretainedValue()
}

func release<T: AnyObject>(_ handle: OpaquePointer?, as: T.Type) {
    guard let handle else { return }
    Unmanaged<T>.fromOpaque(UnsafeRawPointer(handle)).release()
}

/// Stores a new handle into a caller's out-pointer.
func hand(_ object: AnyObject, to out: UnsafeMutablePointer<OpaquePointer?>) {
    out.pointee = retained(object)
}

/// A KV tensor described by C arguments, checked before its bytes are read.
func tensorArgument(_ kv: UnsafeRawPointer?, _ nbytes: Int, _ dtype: Int32, _ layers: Int64, _ kvHeads: Int64,
                    _ headDim: Int64, _ tokens: Int64) throws -> KVTensor {
    guard let dt = UInt8(exactly: dtype).flatMap(DType.init(code:)) else {
        throw CError.Argument(description: "dtype \(dtype) is not 1 (F16), 2 (BF16) or 3 (F32)")
    }
    guard tokens > 0, tokens <= Int64(KVTensor.maxTokens), let shape = boundedShape(layers, kvHeads, headDim) else {
        throw CError.Argument(description: "shape [\(layers), 2, \(tokens), \(kvHeads), \(headDim)] is out of bounds")
    }
    let expected = KVTensor.byteCount(shape: shape, tokens: Int(tokens), dtype: dt)
    guard nbytes == expected else {
        throw CError.Argument(description: "\(nbytes) bytes of KV, shape [\(layers), 2, \(tokens), \(kvHeads), \(headDim)] of \(dt.rawValue) needs \(expected)")
    }
    let p = try require(kv, "kv")
    return try KVTensor(shape: shape, tokens: Int(tokens), dtype: dt, bytes: Array(UnsafeRawBufferPointer(start: p, count: nbytes)))
}

/// The KV shape of C dimensions, nil when one is outside 1...KVShape.maxDimension.
func boundedShape(_ layers: Int64, _ kvHeads: Int64, _ headDim: Int64) -> KVShape? {
    let dims = 1...Int64(KVShape.maxDimension)
    guard dims.contains(layers), dims.contains(kvHeads), dims.contains(headDim) else { return nil }
    return KVShape(layers: Int(layers), kvHeads: Int(kvHeads), headDim: Int(headDim))
}

func tokensArgument(_ tokens: UnsafePointer<Int32>?, _ count: Int64) throws -> [Int32] {
    guard count >= 0, count <= Int64(KVTensor.maxTokens) else { throw CError.Argument(description: "token count \(count)") }
    if count == 0 { return [] }
    let p = try require(tokens, "tokens")
    let ids = Array(UnsafeBufferPointer(start: p, count: Int(count)))
    if let i = ids.firstIndex(where: { $0 < 0 }) { throw CError.Argument(description: "token id \(ids[i]) at \(i) is negative") }
    return ids
}

func input(_ data: UnsafeRawPointer?, _ length: Int) throws -> UnsafeRawBufferPointer {
    if length == 0 { return UnsafeRawBufferPointer(start: nil, count: 0) }
    return UnsafeRawBufferPointer(start: try require(data, "data"), count: length)
}
