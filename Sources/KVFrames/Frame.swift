import KVCodec

/// One frame of a prefix stream (see schemas/stream-frames.md). A stream is a `header` frame, one
/// `chunk` or `recompute` frame per matched chunk in order, then an `end` frame (or an `error`).
public struct Frame: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        /// Payload: JSON `StreamHeader`.
        case header = 0
        /// Payload: the stored ChunkContainer bytes of the chunk at `level`.
        case chunk = 1
        /// No payload: the chunk could not arrive before the deadline; prefill its tokens from text.
        case recompute = 2
        /// Payload: JSON `StreamSummary`.
        case end = 3
        /// Payload: JSON `{"error": "..."}`; the stream stops here.
        case error = 4
    }

    public static let magic: [UInt8] = Array("KVF1".utf8)
    public static let headerSize = 32
    /// Bound on one frame's payload, so a reader never allocates what a broken peer claims.
    public static let maxPayload = 1 << 30
    /// `level` of frames that carry no chunk encoding.
    public static let noLevel: UInt8 = 0xFF

    public var kind: Kind
    public var level: UInt8
    /// Chunk index in the matched prefix (0 for header/end/error).
    public var index: Int
    /// Token range of the chunk inside the query.
    public var tokens: Range<Int>
    public var payloadLength: Int

    public init(kind: Kind, level: UInt8 = Frame.noLevel, index: Int = 0, tokens: Range<Int> = 0..<0, payloadLength: Int = 0) {
        self.kind = kind
        self.level = level
        self.index = index
        self.tokens = tokens
        self.payloadLength = payloadLength
    }

    /// The 32-byte little-endian frame header.
    public func encodedHeader() -> [UInt8] {
        var w = ByteWriter(capacity: Self.headerSize)
        w.append(Self.magic)
        w.append(kind.rawValue)
        w.append(level)
        w.append(UInt16(0))
        w.append(UInt32(index))
        w.append(UInt32(tokens.lowerBound))
        w.append(UInt32(tokens.upperBound))
        w.append(UInt64(payloadLength))
        w.append(UInt32(0))
        return w.bytes
    }

    /// Parses a frame header; `bytes` must hold at least `headerSize` bytes.
    public static func parseHeader(_ bytes: UnsafeRawBufferPointer) throws -> Frame {
        guard bytes.count >= headerSize else { throw TransportError.badFrame("frame header needs \(headerSize) bytes, got \(bytes.count)") }
        var r = ByteReader(bytes)
        guard r.bytes(4) == magic else { throw TransportError.badFrame("bad frame magic (not a kvstore stream)") }
        let rawKind: UInt8 = r.read()
        guard let kind = Kind(rawValue: rawKind) else { throw TransportError.badFrame("unknown frame kind \(rawKind)") }
        let level: UInt8 = r.read()
        let reserved: UInt16 = r.read()
        let index = Int(r.read() as UInt32)
        let start = Int(r.read() as UInt32), end = Int(r.read() as UInt32)
        let length: UInt64 = r.read()
        let reservedTail: UInt32 = r.read()
        guard reserved == 0, reservedTail == 0 else { throw TransportError.badFrame("frame header has non-zero reserved fields") }
        if kind == .chunk {
            guard CodecLevel.all.contains(level) else { throw TransportError.badFrame("chunk frame level \(level) is not in \(CodecLevel.all)") }
        } else if level != noLevel {
            throw TransportError.badFrame("\(kind) frame level \(level) is not \(noLevel)")
        }
        if kind == .header || kind == .end, index != 0 { throw TransportError.badFrame("\(kind) frame index \(index) is not 0") }
        guard start <= end else { throw TransportError.badFrame("frame token range \(start)..<\(end) is reversed") }
        guard length <= UInt64(maxPayload) else { throw TransportError.badFrame("frame payload of \(length) bytes exceeds \(maxPayload)") }
        if kind == .recompute, length != 0 { throw TransportError.badFrame("recompute frame carries \(length) payload bytes") }
        return Frame(kind: kind, level: level, index: index, tokens: start..<end, payloadLength: Int(length))
    }
}

/// What the `header` frame says about the stream.
public struct StreamHeader: Codable, Sendable, Equatable {
    public var matchedTokens: Int
    public var queryTokens: Int
    public var chunks: Int
    public var model: String
    public var dtype: String
    /// [layers, kv_heads, head_dim]
    public var shape: [Int]
    public var chunkTokens: Int
    public var sloMs: Double
    public var pinnedLevel: UInt8?
    /// `stored` (chunk containers as stored) or a benchmark baseline: `raw`, `zstd`.
    public var encoding: String?
    /// Server time spent preparing baseline payloads before the clock started, milliseconds.
    public var prepareMs: Double?

    public init(matchedTokens: Int, queryTokens: Int, chunks: Int, model: String, dtype: String, shape: [Int],
                chunkTokens: Int, sloMs: Double, pinnedLevel: UInt8?, encoding: String? = nil, prepareMs: Double? = nil) {
        self.encoding = encoding
        self.prepareMs = prepareMs
        self.matchedTokens = matchedTokens
        self.queryTokens = queryTokens
        self.chunks = chunks
        self.model = model
        self.dtype = dtype
        self.shape = shape
        self.chunkTokens = chunkTokens
        self.sloMs = sloMs
        self.pinnedLevel = pinnedLevel
    }

    enum CodingKeys: String, CodingKey {
        case matchedTokens = "matched_tokens", queryTokens = "query_tokens", chunks, model, dtype, shape
        case chunkTokens = "chunk_tokens", sloMs = "slo_ms", pinnedLevel = "pinned_level"
        case encoding, prepareMs = "prepare_ms"
    }
}

/// What the `end` frame says: the sender's view of the stream.
public struct StreamSummary: Codable, Sendable, Equatable {
    public var payloadBytes: Int
    /// Seconds from the first byte handed to the connection to the last one accepted.
    public var senderSeconds: Double
    public var levels: [String]
    public var recomputeChunks: [Int]
    /// Smoothed bandwidth estimate at the end, bits per second.
    public var estimatedBitsPerSecond: Double

    public init(payloadBytes: Int, senderSeconds: Double, levels: [String], recomputeChunks: [Int], estimatedBitsPerSecond: Double) {
        self.payloadBytes = payloadBytes
        self.senderSeconds = senderSeconds
        self.levels = levels
        self.recomputeChunks = recomputeChunks
        self.estimatedBitsPerSecond = estimatedBitsPerSecond
    }

    enum CodingKeys: String, CodingKey {
        case payloadBytes = "payload_bytes", senderSeconds = "sender_seconds", levels
        case recomputeChunks = "recompute_chunks", estimatedBitsPerSecond = "estimated_bits_per_second"
    }
}
