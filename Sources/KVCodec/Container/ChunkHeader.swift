import KVTensor

/// Identifies the codec that wrote a chunk payload. Values are part of the file format: never reuse one.
public enum CodecID: UInt8, Sendable, CaseIterable {
    /// Raw little-endian elements, for debugging and as a reference.
    case raw = 0
    /// Lossless: byte planes compressed with zstd.
    case bytePlaneZstd = 1
    /// Lossy CacheGen-style quantization + range coding (levels 1...4).
    case cacheGen = 2
    /// Lossless with context-modelled entropy coding.
    case losslessContext = 3
}

/// The fixed 48-byte header in front of every chunk payload (see schemas/chunk-container.md).
public struct ChunkHeader: Sendable, Equatable {
    public static let magic: [UInt8] = Array("KVCK".utf8)
    public static let version: UInt16 = 1
    public static let size = 48

    public var codec: CodecID
    public var level: UInt8
    public var dtype: DType
    public var shape: KVShape
    public var tokens: Int
    public var payloadLength: Int
    public var checksum: UInt64

    public init(codec: CodecID, level: UInt8, dtype: DType, shape: KVShape, tokens: Int, payloadLength: Int = 0, checksum: UInt64 = 0) {
        self.codec = codec
        self.level = level
        self.dtype = dtype
        self.shape = shape
        self.tokens = tokens
        self.payloadLength = payloadLength
        self.checksum = checksum
    }

    /// Bytes of the decoded tensor; follows from checked dimensions only.
    public var rawByteCount: Int { KVTensor.byteCount(shape: shape, tokens: tokens, dtype: dtype) }

    /// The first 40 bytes: everything but the checksum, which covers them too.
    func serializedPrefix() -> [UInt8] {
        var w = ByteWriter(capacity: Self.size)
        w.append(Self.magic)
        w.append(Self.version)
        w.append(UInt16(Self.size))
        w.append(codec.rawValue)
        w.append(level)
        w.append(dtype.code)
        w.append(UInt8(0))
        w.append(UInt32(shape.layers))
        w.append(UInt32(shape.kvHeads))
        w.append(UInt32(shape.headDim))
        w.append(UInt32(tokens))
        w.append(UInt32(0))
        w.append(UInt64(payloadLength))
        return w.bytes
    }

    /// Parses and checks a header. `available` is the number of bytes after it.
    public static func parse(_ raw: UnsafeRawBufferPointer, available: Int) throws -> ChunkHeader {
        guard raw.count >= size else { throw CodecError.truncated("\(raw.count) bytes, the header needs \(size)") }
        var r = ByteReader(raw)
        guard r.bytes(4) == magic else { throw CodecError.corrupt("bad magic, not a kvstore chunk") }
        let version: UInt16 = r.read()
        guard version == Self.version else { throw CodecError.unsupported("container version \(version), this build reads \(Self.version)") }
        let headerSize: UInt16 = r.read()
        guard headerSize == UInt16(size) else { throw CodecError.corrupt("header size \(headerSize), expected \(size)") }
        let codecRaw: UInt8 = r.read()
        guard let codec = CodecID(rawValue: codecRaw) else { throw CodecError.unsupported("codec id \(codecRaw)") }
        let level: UInt8 = r.read()
        let dtypeRaw: UInt8 = r.read()
        guard let dtype = DType(code: dtypeRaw) else { throw CodecError.unsupported("dtype code \(dtypeRaw)") }
        let _: UInt8 = r.read()
        let layers = Int(r.read() as UInt32), heads = Int(r.read() as UInt32), dim = Int(r.read() as UInt32)
        let tokens = Int(r.read() as UInt32)
        let _: UInt32 = r.read()
        let payload: UInt64 = r.read()
        let checksum: UInt64 = r.read()
        let shape = KVShape(layers: layers, kvHeads: heads, headDim: dim)
        do { try shape.validate() } catch { throw CodecError.corrupt("header shape: \(error)") }
        guard tokens <= ChunkContainer.maxTokens else { throw CodecError.limit("\(tokens) tokens in one chunk, at most \(ChunkContainer.maxTokens)") }
        let raw = KVTensor.byteCount(shape: shape, tokens: tokens, dtype: dtype)
        guard raw <= ChunkContainer.maxRawBytes else {
            throw CodecError.limit("chunk of \(raw) decoded bytes, at most \(ChunkContainer.maxRawBytes)")
        }
        guard payload == UInt64(available) else {
            throw payload > UInt64(available)
                ? CodecError.truncated("payload declares \(payload) bytes, \(available) present")
                : CodecError.corrupt("payload declares \(payload) bytes, \(available) present")
        }
        return ChunkHeader(codec: codec, level: level, dtype: dtype, shape: shape, tokens: tokens,
                           payloadLength: Int(payload), checksum: checksum)
    }
}
