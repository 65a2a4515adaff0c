import Foundation
import KVCodec
import KVTensor
import NIOCore
import NIOHTTP1

/// What the client asks `/v1/stream` for.
public struct StreamRequest: Sendable {
    public var tokens: [Int32]
    public var model: String?
    public var dtype: String?
    public var sloMs: Double
    /// Pin every chunk to this level (no adaptation).
    public var level: UInt8?
    public var bandwidthHintMbps: Double?
    /// `stored` (default) or a baseline: `raw` (uncompressed) or `zstd` (generic zstd of raw).
    public var encoding: String?

    public init(tokens: [Int32], model: String? = nil, dtype: String? = nil, sloMs: Double = 1000, level: UInt8? = nil,
                bandwidthHintMbps: Double? = nil, encoding: String? = nil) {
        self.tokens = tokens
        self.model = model
        self.dtype = dtype
        self.sloMs = sloMs
        self.level = level
        self.bandwidthHintMbps = bandwidthHintMbps
        self.encoding = encoding
    }

    var path: String {
        var q = ["slo_ms=\(sloMs)"]
        if let level { q.append("level=\(level)") }
        if let bandwidthHintMbps { q.append("bandwidth_hint_mbps=\(bandwidthHintMbps)") }
        if let encoding { q.append("encoding=\(encoding)") }
        return "/v1/stream?" + q.joined(separator: "&")
    }

    var body: [UInt8] {
        var o: [String: Any] = ["tokens": tokens.map(Int.init)]
        if let model { o["model"] = model }
        if let dtype { o["dtype"] = dtype }
        return Array((try? JSONSerialization.data(withJSONObject: o)) ?? Data())
    }
}

/// One chunk as received.
public struct ReceivedChunk: Sendable {
    public var index: Int
    public var tokens: Range<Int>
    public var choice: LevelChoice
    public var bytes: Int
    /// Seconds from sending the request to this frame's last byte.
    public var arrived: Double
    /// Decoded KV (nil for recompute chunks).
    public var kv: KVTensor?
}

/// What a streamed load delivered and how fast.
public struct StreamResult: Sendable {
    public var header: StreamHeader
    public var chunks: [ReceivedChunk]
    public var summary: StreamSummary?
    public var bytes: Int
    public var timeToFirstByte: Double
    public var timeToLastByte: Double
    /// Seconds until the last chunk was decoded (decoding overlaps the download).
    public var timeToDecoded: Double

    /// The decoded KV of the contiguous prefix before the first recompute chunk.
    public func contiguousKV() throws -> KVTensor? {
        let parts = chunks.prefix { $0.kv != nil }.compactMap(\.kv)
        return parts.isEmpty ? nil : try KVTensor.concatenate(parts)
    }

    public var contiguousTokens: Int { chunks.prefix { $0.kv != nil }.last?.tokens.upperBound ?? 0 }
    public var deadlineMet: Bool { timeToLastByte * 1000 <= header.sloMs }
    /// Token ranges the client must prefill from text.
    public var recomputeRanges: [Range<Int>] { chunks.filter { $0.choice == .recompute }.map(\.tokens) }
}

/// Streams a prefix from a `kvstore serve`, decoding each chunk frame in a separate task while
/// the next ones download.
public struct StreamClient: Sendable {
    public var exchange: HTTPExchange

    public init(exchange: HTTPExchange) { self.exchange = exchange }

    /// Nil when the server holds no prefix of the query (404).
    public func stream(_ request: StreamRequest, decode: Bool = true) async throws -> StreamResult? {
        let clock = ContinuousClock()
        let start = clock.now
        let (frames, sink) = AsyncStream.makeStream(of: (Frame, [UInt8], Double).self)
        // The decoder: frames in order, checked against the header's shape.
        let decoder = Task { () throws -> (StreamHeader, [ReceivedChunk], StreamSummary?, Double) in
            var header: StreamHeader?
            var chunks: [ReceivedChunk] = []
            var summary: StreamSummary?
            var decodedAt = 0.0
            for await (frame, payload, arrived) in frames {
                switch frame.kind {
                case .header:
                    header = try JSONDecoder().decode(StreamHeader.self, from: Data(payload))
                case .chunk, .recompute:
                    guard let h = header else { throw TransportError.badFrame("chunk frame before the header frame") }
                    guard frame.index == chunks.count, frame.tokens.lowerBound == (chunks.last?.tokens.upperBound ?? 0) else {
                        throw TransportError.badFrame("frame \(frame.index) for tokens \(frame.tokens) is out of order")
                    }
                    var kv: KVTensor?
                    if frame.kind == .chunk, decode {
                        let t = try Self.decodePayload(payload, header: h, tokens: frame.tokens.count)
                        guard t.tokens == frame.tokens.count, [t.shape.layers, t.shape.kvHeads, t.shape.headDim] == h.shape,
                              t.dtype.rawValue == h.dtype else {
                            throw TransportError.badFrame("chunk \(frame.index) decodes to \(t.tokens) tokens of \(t.shape), not \(frame.tokens.count) of \(h.shape)")
                        }
                        kv = t
                    }
                    chunks.append(ReceivedChunk(index: frame.index, tokens: frame.tokens,
                                                choice: frame.kind == .chunk ? .level(frame.level) : .recompute,
                                                bytes: payload.count, arrived: arrived, kv: kv))
                    decodedAt = (clock.now - start).seconds
                case .end:
                    summary = try? JSONDecoder().decode(StreamSummary.self, from: Data(payload))
                case .error:
                    let msg = (try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])?["error"] as? String
                    throw TransportError.http(status: 500, message: msg ?? "stream failed")
                }
            }
            guard let header else { throw TransportError.badFrame("the stream ended before its header frame") }
            guard summary != nil else { throw TransportError.badFrame("the stream ended without an end frame") }
            guard chunks.count == header.chunks else { throw TransportError.badFrame("got \(chunks.count) of \(header.chunks) chunk frames") }
            return (header, chunks, summary, decodedAt)
        }

        var status = 0
        var errorBody: [UInt8] = []
        var reader = FrameReader()
        var bytes = 0
        var firstByte = 0.0, lastByte = 0.0
        do {
            try await exchange.send(method: .POST, path: request.path, contentType: "application/json", body: request.body,
                                    onHead: { s, _ in status = s },
                                    onBody: { piece in
                                        let now = (clock.now - start).seconds
                                        if bytes == 0 { firstByte = now }
                                        lastByte = now
                                        bytes += piece.readableBytes
                                        if status != 200 {
                                            if errorBody.count < 1 << 16 { errorBody.append(contentsOf: piece.readableBytesView) }
                                            return
                                        }
                                        reader.append(piece.readableBytesView)
                                        while let f = try reader.next() { sink.yield((f.frame, f.payload, now)) }
                                    })
        } catch {
            sink.finish()
            decoder.cancel()
            throw error
        }
        sink.finish()
        if status == 404 {
            decoder.cancel()
            return nil
        }
        guard status == 200 else {
            decoder.cancel()
            let msg = (try? JSONSerialization.jsonObject(with: Data(errorBody)) as? [String: Any])?["error"] as? String
            throw TransportError.http(status: status, message: msg ?? String(decoding: errorBody.prefix(200), as: UTF8.self))
        }
        guard reader.finished, reader.buffered == 0 else { throw TransportError.badFrame("the stream was cut off mid-frame") }
        let (header, chunks, summary, decodedAt) = try await decoder.value
        return StreamResult(header: header, chunks: chunks, summary: summary, bytes: bytes, timeToFirstByte: firstByte,
                            timeToLastByte: lastByte, timeToDecoded: max(decodedAt, lastByte))
    }

    static func decodePayload(_ payload: [UInt8], header: StreamHeader, tokens: Int) throws -> KVTensor {
        switch header.encoding ?? "stored" {
        case "zstd":
            // Baseline: zstd of a raw container, whose size follows from the header's shape.
            guard header.shape.count == 3, let dtype = DType(rawValue: header.dtype) else {
                throw TransportError.badFrame("header shape \(header.shape) / dtype \(header.dtype) is unusable")
            }
            let shape = KVShape(layers: header.shape[0], kvHeads: header.shape[1], headDim: header.shape[2])
            let size = ChunkHeader.size + KVTensor.byteCount(shape: shape, tokens: tokens, dtype: dtype)
            let raw = try payload.withUnsafeBytes { try Zstd.decompress($0, size: size) }
            return try ChunkContainer.decode(raw)
        default:
            return try ChunkContainer.decode(payload)
        }
    }
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
