import Foundation
import KVCodec
import KVFrames
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
    /// What prefilling a token from text costs the client, so the server recomputes a chunk only
    /// when that is quicker than receiving it late.
    public var recomputeMsPerToken: Double?

    public init(tokens: [Int32], model: String? = nil, dtype: String? = nil, sloMs: Double = 1000, level: UInt8? = nil,
                bandwidthHintMbps: Double? = nil, encoding: String? = nil, recomputeMsPerToken: Double? = nil) {
        self.tokens = tokens
        self.model = model
        self.dtype = dtype
        self.sloMs = sloMs
        self.level = level
        self.bandwidthHintMbps = bandwidthHintMbps
        self.encoding = encoding
        self.recomputeMsPerToken = recomputeMsPerToken
    }

    var path: String {
        var q = ["slo_ms=\(sloMs)"]
        if let level { q.append("level=\(level)") }
        if let bandwidthHintMbps { q.append("bandwidth_hint_mbps=\(bandwidthHintMbps)") }
        if let encoding { q.append("encoding=\(encoding)") }
        if let recomputeMsPerToken { q.append("recompute_ms_per_token=\(recomputeMsPerToken)") }
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
        // The decoder: frames in order, checked and decoded by StreamAssembly.
        let decoder = Task { () throws -> (StreamHeader, [ReceivedChunk], StreamSummary?, Double) in
            var assembly = StreamAssembly()
            var chunks: [ReceivedChunk] = []
            var decodedAt = 0.0
            for await (frame, payload, arrived) in frames {
                switch try assembly.take(frame, payload: payload, decode: decode) {
                case .header, .end: break
                case .chunk(let index, let tokens, let level, let kv):
                    chunks.append(ReceivedChunk(index: index, tokens: tokens, choice: .level(level),
                                                bytes: payload.count, arrived: arrived, kv: kv))
                    decodedAt = (clock.now - start).seconds
                case .recompute(let index, let tokens):
                    chunks.append(ReceivedChunk(index: index, tokens: tokens, choice: .recompute,
                                                bytes: payload.count, arrived: arrived, kv: nil))
                    decodedAt = (clock.now - start).seconds
                }
            }
            try assembly.finish()
            return (assembly.header!, chunks, assembly.summary, decodedAt)
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
}

extension Duration {
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) * 1e-18 }
}
