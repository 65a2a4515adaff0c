import KVTensor

/// Frames a codec payload with a `ChunkHeader`: the unit stored as a blob, sent as a stream frame
/// and written by `kvstore encode`.
public enum ChunkContainer {
    /// Most tokens a single chunk may hold.
    public static let maxTokens = 1 << 16

    /// The codec that serves each level; levels it does not list are rejected with a clear error.
    public static let codecs: [UInt8: any ChunkCodec] = [
        CodecLevel.lossless: BytePlaneZstdCodec(),
        1: QuantizedRANSCodec(), 2: QuantizedRANSCodec(), 3: QuantizedRANSCodec(), 4: QuantizedRANSCodec(),
    ]
    /// Every codec this build decodes, including ones no level encodes with any more.
    static let byID: [CodecID: any ChunkCodec] = [
        .bytePlaneZstd: BytePlaneZstdCodec(), .raw: RawCodec(), .cacheGen: QuantizedRANSCodec(),
    ]
    /// Largest decoded chunk accepted (1 GiB): bounds every allocation a header can ask for.
    public static let maxRawBytes = 1 << 30

    public static func codec(forLevel level: UInt8) throws -> any ChunkCodec {
        guard let c = codecs[level] else {
            throw CodecError.unsupported("level \(level); this build encodes levels \(codecs.keys.sorted())")
        }
        return c
    }

    static func codec(for id: CodecID) throws -> any ChunkCodec {
        if let c = byID[id] { return c }
        if let c = codecs.values.first(where: { $0.id == id }) { return c }
        throw CodecError.unsupported("codec \(id) is not built in")
    }

    /// Encodes at `level`; lossy levels use `model`, the model's codec profile (nil: `CodecProfile.flat`).
    public static func encode(_ tensor: KVTensor, level: UInt8, model: CodecProfile? = nil) throws -> [UInt8] {
        do {
            var codec = try codec(forLevel: level)
            if let m = model, var lossy = codec as? QuantizedRANSCodec {
                lossy.model = m
                codec = lossy
            }
            return try encode(tensor, level: level, codec: codec)
        } catch CodecError.nonFinite where level != CodecLevel.lossless {
            // NaN or infinity cannot be quantised: keep such a chunk exact rather than fail the store.
            return try encode(tensor, level: level, codec: codec(forLevel: CodecLevel.lossless))
        }
    }

    public static func encode(_ tensor: KVTensor, level: UInt8, codec: any ChunkCodec) throws -> [UInt8] {
        guard tensor.tokens <= maxTokens else { throw CodecError.limit("\(tensor.tokens) tokens in one chunk, at most \(maxTokens)") }
        let payload = try codec.encode(tensor, level: level)
        var header = ChunkHeader(codec: codec.id, level: level, dtype: tensor.dtype, shape: tensor.shape,
                                 tokens: tensor.tokens, payloadLength: payload.count)
        let prefix = header.serializedPrefix()
        header.checksum = XXHash64.hash(payload, seed: XXHash64.hash(prefix))
        var w = ByteWriter(capacity: ChunkHeader.size + payload.count)
        w.append(prefix)
        w.append(header.checksum)
        w.append(payload)
        return w.bytes
    }

    /// Parses and verifies the header and checksum without decoding.
    public static func header(of bytes: UnsafeRawBufferPointer) throws -> ChunkHeader {
        let header = try ChunkHeader.parse(bytes, available: max(0, bytes.count - ChunkHeader.size))
        let prefix = UnsafeRawBufferPointer(rebasing: bytes[0..<40])
        let payload = UnsafeRawBufferPointer(rebasing: bytes[ChunkHeader.size...])
        guard XXHash64.hash(payload, seed: XXHash64.hash(prefix)) == header.checksum else {
            throw CodecError.corrupt("checksum mismatch")
        }
        return header
    }

    public static func decode(_ bytes: [UInt8]) throws -> KVTensor {
        try bytes.withUnsafeBytes { (raw) throws in try decode(raw) }
    }

    public static func decode(_ raw: UnsafeRawBufferPointer) throws -> KVTensor {
        let header = try header(of: raw)
        let codec = try codec(for: header.codec)
        let tensor = try codec.decode(UnsafeRawBufferPointer(rebasing: raw[ChunkHeader.size...]), header: header)
        guard tensor.shape == header.shape, tensor.tokens == header.tokens, tensor.dtype == header.dtype else {
            throw CodecError.corrupt("codec \(header.codec) returned a tensor that does not match its header")
        }
        return tensor
    }
}
