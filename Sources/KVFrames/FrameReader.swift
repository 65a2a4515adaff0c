/// Incremental frame parser: feed it bytes as they arrive, take out whole frames.
/// It keeps at most one partial frame, so memory is bounded by `Frame.maxPayload`.
public struct FrameReader: Sendable {
    private var buffer: [UInt8] = []
    private var start = 0
    private var pending: Frame?
    public private(set) var finished = false

    public init() {}

    public mutating func append(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete frame and its payload, or nil when more bytes are needed.
    public mutating func next() throws -> (frame: Frame, payload: [UInt8])? {
        if pending == nil {
            guard buffer.count - start >= Frame.headerSize else { return nil }
            pending = try buffer[start..<(start + Frame.headerSize)].withUnsafeBytes { try Frame.parseHeader($0) }
            start += Frame.headerSize
        }
        guard let frame = pending, buffer.count - start >= frame.payloadLength else { return nil }
        let payload = Array(buffer[start..<(start + frame.payloadLength)])
        start += frame.payloadLength
        pending = nil
        if frame.kind == .end || frame.kind == .error { finished = true }
        // Compact once the consumed part dominates, so appends stay amortized O(n).
        if start > 1 << 20, start * 2 > buffer.count {
            buffer.removeSubrange(0..<start)
            start = 0
        }
        return (frame, payload)
    }

    /// Bytes received but not yet returned as frames.
    public var buffered: Int { buffer.count - start }
}
