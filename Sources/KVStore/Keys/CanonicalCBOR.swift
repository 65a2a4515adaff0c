/// The few CBOR items vLLM's block hash input is made of, encoded canonically (RFC 8949 §4.2.1:
/// shortest-form heads, definite lengths), byte for byte as Python's `cbor2.dumps(..., canonical=True)`.
public indirect enum CBORItem: Equatable, Sendable {
    case unsigned(UInt64)
    case bytes([UInt8])
    case text(String)
    case array([CBORItem])
    case null

    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        append(to: &out)
        return out
    }

    func append(to out: inout [UInt8]) {
        switch self {
        case .unsigned(let v): Self.head(0, v, &out)
        case .bytes(let b):
            Self.head(2, UInt64(b.count), &out)
            out += b
        case .text(let s):
            let u = Array(s.utf8)
            Self.head(3, UInt64(u.count), &out)
            out += u
        case .array(let items):
            Self.head(4, UInt64(items.count), &out)
            for item in items { item.append(to: &out) }
        case .null: out.append(0xF6)
        }
    }

    static func head(_ major: UInt8, _ v: UInt64, _ out: inout [UInt8]) {
        let m = major << 5
        switch v {
        case 0..<24: out.append(m | UInt8(v))
        case 24...0xFF: out += [m | 24, UInt8(v)]
        case 0x100...0xFFFF: out.append(m | 25); out += withUnsafeBytes(of: UInt16(v).bigEndian) { Array($0) }
        case 0x10000...0xFFFF_FFFF: out.append(m | 26); out += withUnsafeBytes(of: UInt32(v).bigEndian) { Array($0) }
        default: out.append(m | 27); out += withUnsafeBytes(of: v.bigEndian) { Array($0) }
        }
    }
}
