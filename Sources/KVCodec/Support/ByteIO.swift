/// Little-endian append-only writer over one growing buffer.
public struct ByteWriter {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func append(_ b: [UInt8]) { bytes.append(contentsOf: b) }
    public mutating func append(_ b: UnsafeRawBufferPointer) { bytes.append(contentsOf: b) }
    public mutating func append<T: FixedWidthInteger>(_ v: T) {
        withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) }
    }
    public mutating func append(_ f: Float) { append(f.bitPattern) }
}

/// Little-endian reader over a checked buffer. Callers check lengths with `remaining` before reading;
/// reads past the end trap, so a missing check is a bug caught by tests and the fuzzer, not silent garbage.
public struct ByteReader {
    public let buffer: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ buffer: UnsafeRawBufferPointer) { self.buffer = buffer }

    public var remaining: Int { buffer.count - offset }

    public mutating func read<T: FixedWidthInteger>() -> T {
        precondition(remaining >= MemoryLayout<T>.size, "read past end")
        let v = T(littleEndian: buffer.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return v
    }

    public mutating func readFloat() -> Float { Float(bitPattern: read()) }

    public mutating func bytes(_ n: Int) -> [UInt8] {
        precondition(n >= 0 && remaining >= n, "read past end")
        defer { offset += n }
        return Array(UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + n)]))
    }

    public mutating func slice(_ n: Int) -> UnsafeRawBufferPointer {
        precondition(n >= 0 && remaining >= n, "read past end")
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: buffer[offset..<(offset + n)])
    }
}
