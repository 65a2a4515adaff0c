import Crypto

/// A 32-byte SHA-256 digest used as a key: prefix hashes, blob ids, namespace roots.
public struct Hash32: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    init(digest: SHA256.Digest) { bytes = Array(digest) }

    public static func sha256(_ data: [UInt8]) -> Hash32 { Hash32(digest: SHA256.hash(data: data)) }
    public static func sha256(_ data: UnsafeRawBufferPointer) -> Hash32 { Hash32(digest: SHA256.hash(data: data)) }

    public var hex: String { String(decoding: hexASCII, as: UTF8.self) }

    /// `hex` as ASCII bytes (keys are built from it on hot paths, without a String in between).
    public var hexASCII: [UInt8] {
        [UInt8](unsafeUninitializedCapacity: 64) { out, n in
            @inline(__always) func digit(_ v: UInt8) -> UInt8 { v < 10 ? 48 + v : 87 + v }
            for (i, b) in bytes.enumerated() {
                out[2 * i] = digit(b >> 4)
                out[2 * i + 1] = digit(b & 15)
            }
            n = 64
        }
    }

    public init?(hex: String) {
        let u = Array(hex.utf8)
        guard u.count == 64 else { return nil }
        var out = [UInt8](); out.reserveCapacity(32)
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case 48...57: c - 48
            case 97...102: c - 87
            case 65...70: c - 55
            default: nil
            }
        }
        for i in stride(from: 0, to: 64, by: 2) {
            guard let hi = nibble(u[i]), let lo = nibble(u[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        bytes = out
    }

    public var description: String { hex }
    public static func < (a: Hash32, b: Hash32) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}
