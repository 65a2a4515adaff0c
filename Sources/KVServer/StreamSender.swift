import Foundation
import Hummingbird
import KVStore
import KVFrames
import KVTransport

/// Sends one prefix as frames, choosing each chunk's level just before sending it.
struct StreamSender: Sendable {
    static let contentType = "application/x-kvstore-frames"

    let store: any ChunkTier
    let match: PrefixMatch
    let controller: LevelController
    let header: StreamHeader
    let started: ContinuousClock.Instant
    /// Baseline payloads to send instead of the stored chunks.
    let payloads: [[UInt8]]?
    let prior: Double
    let config: ServerConfiguration
    let metrics: ServerMetrics

    /// Measures delivered bytes on the connection; nil where the kernel cannot tell (then the
    /// bytes the connection accepted are measured instead, minus a send-buffer allowance).
    let probe: DeliveryProbe?
    /// The tier's read-through fill (cache mode): handed the level-0 chunks sent, finished at the end.
    let fill: (any StreamFill)?

    /// Writes every frame; returns the final bandwidth estimate (bytes/s), or nil when the stream
    /// measured nothing (then the estimate is only the prior it started from).
    func send(to writer: inout any ResponseBodyWriter) async throws -> Double? {
        metrics.streamStarted()
        defer { metrics.streamEnded(); fill?.finish() }
        // Without a probe: bytes accepted but maybe undelivered are at most the doubled SO_SNDBUF
        // plus NIO's 64 KiB high watermark; that much is not measured and is assumed in flight.
        let allowance = 2 * config.sendBufferBytes + (64 << 10)
        let startDelivery = await probe?.delivery()
        let ackedBase = startDelivery?.acked
        var receiverLimited = startDelivery?.receiverLimited ?? 0
        var estimator = BandwidthEstimator(prior: prior, warmupBytes: ackedBase == nil ? allowance : 0)
        var sent = 0
        var delivered = 0
        var lastProbe = ContinuousClock.now
        var levels: [String] = []
        var recompute: [Int] = []

        /// Bytes written but not yet acknowledged by the peer (or the allowance, without a probe).
        func inFlight() -> Int { ackedBase == nil ? min(sent, allowance) : max(0, sent - delivered) }

        func write(_ buffer: ByteBuffer, writer: inout any ResponseBodyWriter) async throws {
            var offset = 0
            while offset < buffer.readableBytes {
                // About a millisecond of data per piece (one bandwidth sample each): small on slow
                // links so choices react quickly, large on fast ones so probing costs little.
                let piece = min(max(config.writePieceBytes, Int(estimator.bytesPerSecond / 1000)), 1 << 20)
                let n = min(piece, buffer.readableBytes - offset)
                let t0 = ContinuousClock.now
                try await writer.write(buffer.getSlice(at: buffer.readerIndex + offset, length: n)!)
                offset += n
                sent += n
                if let base = ackedBase, let d = await probe?.delivery() {
                    // Sample delivery only while the link had a backlog; an idle link says nothing.
                    let now = ContinuousClock.now
                    let busy = sent - delivered - n >= config.writePieceBytes
                    let newly = max(0, d.acked - base - delivered)
                    let stalled = max(0, d.receiverLimited - receiverLimited)
                    if busy { estimator.record(bytes: newly, seconds: (now - lastProbe).seconds, receiverLimited: stalled) }
                    receiverLimited = d.receiverLimited
                    delivered += newly
                    lastProbe = now
                } else if ackedBase == nil {
                    estimator.record(bytes: n, seconds: (ContinuousClock.now - t0).seconds)
                }
            }
            metrics.addSent(buffer.readableBytes)
        }
        func frame(_ f: Frame, _ payload: [UInt8] = []) -> ByteBuffer {
            var b = ByteBuffer()
            b.reserveCapacity(Frame.headerSize + payload.count)
            b.writeBytes(f.encodedHeader())
            b.writeBytes(payload)
            return b
        }
        func json<T: Encodable>(_ v: T) -> [UInt8] { (try? Array(JSONEncoder().encode(v))) ?? [] }

        let head = json(header)
        try await write(frame(Frame(kind: .header, payloadLength: head.count), head), writer: &writer)
        for (i, chunk) in match.chunks.enumerated() {
            let elapsed = (ContinuousClock.now - started).seconds
            let choice = controller.choose(index: i, elapsed: elapsed, bytesPerSecond: estimator.bytesPerSecond,
                                           inFlight: inFlight())
            if ProcessInfo.processInfo.environment["KVSTORE_TRACE"] != nil {
                FileHandle.standardError.write(Data("chunk \(i) at \(String(format: "%.1f", elapsed * 1000)) ms: est \(String(format: "%.1f", estimator.bitsPerSecond / 1e6)) Mbit/s, sent \(sent), in flight \(inFlight()), samples \(estimator.samples) -> \(choice)\n".utf8))
            }
            var payload: [UInt8]?
            if case .level(let l) = choice {
                do { payload = try payloads?[i] ?? store.streamBytes(chunk, level: l) } catch {
                    let msg = json(["error": "chunk \(i): \(error)"])
                    try await write(frame(Frame(kind: .error, index: i, payloadLength: msg.count), msg), writer: &writer)
                    return estimator.measured
                }
            }
            if case .level(let l) = choice, let payload {
                if l == 0, payloads == nil { fill?.offer(chunk, levelZero: payload) }
                try await write(frame(Frame(kind: .chunk, level: l, index: i, tokens: chunk.range, payloadLength: payload.count), payload),
                                writer: &writer)
                levels.append(String(l))
            } else {
                // Too late for any level, or removed since the lookup: the client prefills these tokens.
                try await write(frame(Frame(kind: .recompute, index: i, tokens: chunk.range)), writer: &writer)
                levels.append("recompute")
                recompute.append(i)
            }
            metrics.countLevel(levels.last!)
        }
        let drain = Double(inFlight()) / max(estimator.bytesPerSecond, 1)
        let senderSeconds = (ContinuousClock.now - started).seconds + drain
        metrics.countDeadline(met: senderSeconds * 1000 <= header.sloMs)
        let summary = StreamSummary(payloadBytes: sent, senderSeconds: senderSeconds, levels: levels,
                                    recomputeChunks: recompute, estimatedBitsPerSecond: estimator.bitsPerSecond)
        let tail = json(summary)
        try await write(frame(Frame(kind: .end, payloadLength: tail.count), tail), writer: &writer)
        return estimator.measured
    }
}
