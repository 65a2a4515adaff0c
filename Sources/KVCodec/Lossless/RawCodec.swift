import KVTensor

/// Stores elements as they are. Reference point for sizes and a debugging aid.
public struct RawCodec: ChunkCodec {
    public init() {}
    public var id: CodecID { .raw }

    public func encode(_ tensor: KVTensor, level: UInt8) throws -> [UInt8] { tensor.bytes }

    public func decode(_ payload: UnsafeRawBufferPointer, header: ChunkHeader) throws -> KVTensor {
        guard payload.count == header.rawByteCount else { throw CodecError.corrupt("raw payload of \(payload.count) bytes, expected \(header.rawByteCount)") }
        do { return try KVTensor(shape: header.shape, tokens: header.tokens, dtype: header.dtype, bytes: Array(payload)) }
        catch { throw CodecError.corrupt("\(error)") }
    }
}
