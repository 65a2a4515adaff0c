/// Parses RESP2 replies from a byte buffer. Pure and bounded: every length read from the wire is
/// checked against `Limits` before anything is allocated, nesting depth is capped, and malformed
/// input throws `RESPError` (the connection is then closed; nothing stored is touched).
public struct RESPParser: Sendable {
    public struct Limits: Sendable {
        /// Largest bulk string accepted (Redis' own `proto-max-bulk-len` default is 512 MB).
        public var maxBulkBytes: Int = 512 << 20
        public var maxArrayCount: Int = 1 << 20
        public var maxDepth: Int = 8
        /// Longest simple string, error or integer line.
        public var maxLineBytes: Int = 64 << 10
        public init() {}
    }

    public let limits: Limits
    public init(limits: Limits = Limits()) { self.limits = limits }

    /// The first complete value in `buffer` and the bytes it used, or nil when more bytes are needed.
    public func parse(_ buffer: UnsafeRawBufferPointer) throws(RESPError) -> (value: RESPValue, consumed: Int)? {
        var i = 0
        guard let v = try value(buffer, &i, depth: 0) else { return nil }
        return (v, i)
    }

    public func parse(_ bytes: [UInt8]) throws(RESPError) -> (value: RESPValue, consumed: Int)? {
        do { return try bytes.withUnsafeBytes { try parse($0) } } catch let e as RESPError { throw e } catch { throw .protocolError("\(error)") }
    }

    private func value(_ b: UnsafeRawBufferPointer, _ i: inout Int, depth: Int) throws(RESPError) -> RESPValue? {
        guard i < b.count else { return nil }
        let type = b[i]
        var j = i + 1
        guard let line = try line(b, &j) else { return nil }
        switch type {
        case UInt8(ascii: "+"):
            i = j
            return .simple(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: "-"):
            i = j
            return .error(String(decoding: line, as: UTF8.self))
        case UInt8(ascii: ":"):
            i = j
            return .integer(try Self.integer(line))
        case UInt8(ascii: "$"):
            let n = try Self.integer(line)
            if n == -1 { i = j; return .null }
            guard n >= 0, n <= limits.maxBulkBytes else { throw .protocolError("bulk length \(n) outside 0...\(limits.maxBulkBytes)") }
            let len = Int(n)
            guard b.count - j >= len + 2 else { return nil }
            guard b[j + len] == 13, b[j + len + 1] == 10 else { throw .protocolError("bulk string of \(len) bytes not followed by CRLF") }
            let out = [UInt8](UnsafeRawBufferPointer(rebasing: b[j..<(j + len)]))
            i = j + len + 2
            return .bulk(out)
        case UInt8(ascii: "*"):
            let n = try Self.integer(line)
            if n == -1 { i = j; return .null }
            guard n >= 0, n <= limits.maxArrayCount else { throw .protocolError("array count \(n) outside 0...\(limits.maxArrayCount)") }
            guard depth < limits.maxDepth else { throw .protocolError("arrays nested deeper than \(limits.maxDepth)") }
            // Each element takes at least 3 bytes ("+\r\n"): an array that cannot fit yet is not
            // parsed element by element, and its count never sizes an allocation before that check.
            guard b.count - j >= Int(n) * 3 else { return nil }
            var items: [RESPValue] = []
            items.reserveCapacity(Int(n))
            for _ in 0..<n {
                guard let v = try value(b, &j, depth: depth + 1) else { return nil }
                items.append(v)
            }
            i = j
            return .array(items)
        default:
            throw .protocolError("unknown RESP type byte 0x\(String(type, radix: 16))")
        }
    }

    /// The bytes up to CRLF starting at `i` (advancing past it), nil when no CRLF arrived yet.
    private func line(_ b: UnsafeRawBufferPointer, _ i: inout Int) throws(RESPError) -> UnsafeRawBufferPointer? {
        let start = i
        let end = min(b.count, start + limits.maxLineBytes + 2)
        var k = start
        while k + 1 < end {
            if b[k] == 13 {
                guard b[k + 1] == 10 else { throw .protocolError("CR not followed by LF") }
                i = k + 2
                return UnsafeRawBufferPointer(rebasing: b[start..<k])
            }
            k += 1
        }
        if end - start >= limits.maxLineBytes + 2 { throw .protocolError("line longer than \(limits.maxLineBytes) bytes") }
        return nil
    }

    /// A signed decimal of at most 19 digits (no overflow possible).
    static func integer(_ line: UnsafeRawBufferPointer) throws(RESPError) -> Int64 {
        var digits = line[...]
        var negative = false
        if digits.first == UInt8(ascii: "-") { negative = true; digits = digits.dropFirst() }
        guard !digits.isEmpty, digits.count <= 18 else { throw .protocolError("bad integer '\(String(decoding: line.prefix(40), as: UTF8.self))'") }
        var v: Int64 = 0
        for d in digits {
            guard d >= 48, d <= 57 else { throw .protocolError("bad integer '\(String(decoding: line.prefix(40), as: UTF8.self))'") }
            v = v * 10 + Int64(d - 48)
        }
        return negative ? -v : v
    }
}

public enum RESPError: Error, Equatable, CustomStringConvertible {
    case protocolError(String)

    public var description: String {
        switch self { case .protocolError(let m): "RESP protocol error: \(m)" }
    }
}
