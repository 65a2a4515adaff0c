import Foundation
import KVCodec
import KVTensor

/// The receiving side of a frame stream, one frame at a time: checks the order and shape of what
/// arrives and decodes chunk payloads. `StreamClient` and the C library (`KVStoreC`, hence the
/// Python package) both use it, so every client accepts and rejects exactly the same streams.
public struct StreamAssembly: Sendable {
    /// What one frame meant.
    public enum Event: Sendable {
        case header(StreamHeader)
        /// `kv` is nil when decoding was not asked for.
        case chunk(index: Int, tokens: Range<Int>, level: UInt8, kv: KVTensor?)
        case recompute(index: Int, tokens: Range<Int>)
        case end(StreamSummary?)
    }

    public private(set) var header: StreamHeader?
    public private(set) var summary: StreamSummary?
    public private(set) var chunkCount = 0
    public private(set) var ended = false
    private var nextTokenStart = 0

    public init() {}

    /// Takes the next frame; an `error` frame throws the server's message.
    public mutating func take(_ frame: Frame, payload: [UInt8], decode: Bool = true) throws -> Event {
        guard !ended else { throw TransportError.badFrame("frame after the end frame") }
        switch frame.kind {
        case .header:
            guard header == nil else { throw TransportError.badFrame("a second header frame") }
            let h = try JSONDecoder().decode(StreamHeader.self, from: Data(payload))
            header = h
            return .header(h)
        case .chunk, .recompute:
            guard let h = header else { throw TransportError.badFrame("chunk frame before the header frame") }
            guard frame.index == chunkCount, frame.tokens.lowerBound == nextTokenStart else {
                throw TransportError.badFrame("frame \(frame.index) for tokens \(frame.tokens) is out of order")
            }
            chunkCount += 1
            nextTokenStart = frame.tokens.upperBound
            guard frame.kind == .chunk else { return .recompute(index: frame.index, tokens: frame.tokens) }
            var kv: KVTensor?
            if decode {
                let (t, level) = try Self.decodePayload(payload, header: h, tokens: frame.tokens.count)
                guard level == frame.level else {
                    throw TransportError.badFrame("chunk \(frame.index) is sent as level \(frame.level) but its container is level \(level)")
                }
                guard t.tokens == frame.tokens.count, [t.shape.layers, t.shape.kvHeads, t.shape.headDim] == h.shape,
                      t.dtype.rawValue == h.dtype else {
                    throw TransportError.badFrame("chunk \(frame.index) decodes to \(t.tokens) tokens of \(t.shape), not \(frame.tokens.count) of \(h.shape)")
                }
                kv = t
            }
            return .chunk(index: frame.index, tokens: frame.tokens, level: frame.level, kv: kv)
        case .end:
            ended = true
            summary = try? JSONDecoder().decode(StreamSummary.self, from: Data(payload))
            return .end(summary)
        case .error:
            ended = true
            let msg = (try? JSONSerialization.jsonObject(with: Data(payload)) as? [String: Any])?["error"] as? String
            throw TransportError.http(status: 500, message: msg ?? "stream failed")
        }
    }

    /// Checks that the stream was complete once its body has ended.
    public func finish() throws {
        guard let header else { throw TransportError.badFrame("the stream ended before its header frame") }
        guard ended, summary != nil else { throw TransportError.badFrame("the stream ended without an end frame") }
        guard chunkCount == header.chunks else { throw TransportError.badFrame("got \(chunkCount) of \(header.chunks) chunk frames") }
    }

    /// The chunk's KV and the level its container says it was encoded at.
    static func decodePayload(_ payload: [UInt8], header: StreamHeader, tokens: Int) throws -> (KVTensor, level: UInt8) {
        let container: [UInt8]
        switch header.encoding ?? "stored" {
        case "zstd":
            // Baseline: zstd of a raw container, whose size follows from the header's shape.
            guard header.shape.count == 3, let dtype = DType(rawValue: header.dtype) else {
                throw TransportError.badFrame("header shape \(header.shape) / dtype \(header.dtype) is unusable")
            }
            let shape = KVShape(layers: header.shape[0], kvHeads: header.shape[1], headDim: header.shape[2])
            let size = ChunkHeader.size + KVTensor.byteCount(shape: shape, tokens: tokens, dtype: dtype)
            container = try payload.withUnsafeBytes { try Zstd.decompress($0, size: size) }
        default:
            container = payload
        }
        let kv = try ChunkContainer.decode(container)
        // Decoding checked the header, so it parses.
        let level = try container.withUnsafeBytes { try ChunkHeader.parse($0, available: $0.count - ChunkHeader.size).level }
        return (kv, level)
    }
}
