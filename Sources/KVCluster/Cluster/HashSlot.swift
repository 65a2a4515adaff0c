/// Redis Cluster key → slot: CRC16/XMODEM (poly 0x1021, init 0) of the key, or of its hash tag
/// (the bytes between the first `{` and the next `}`, when non-empty), modulo 16384.
public enum HashSlot {
    public static let count = 16384

    public static func slot<C: Collection>(_ key: C) -> Int where C.Element == UInt8 {
        let k = Array(key)
        if let open = k.firstIndex(of: UInt8(ascii: "{")),
           let close = k[(open + 1)...].firstIndex(of: UInt8(ascii: "}")), close > open + 1 {
            return Int(crc16(k[(open + 1)..<close]) & 0x3FFF)
        }
        return Int(crc16(k) & 0x3FFF)
    }

    public static func slot(_ key: String) -> Int { slot(Array(key.utf8)) }

    public static func crc16<C: Collection>(_ bytes: C) -> UInt16 where C.Element == UInt8 {
        var crc: UInt16 = 0
        for b in bytes { crc = (crc << 8) ^ table[Int((crc >> 8) ^ UInt16(b))] }
        return crc
    }

    static let table: [UInt16] = (0..<256).map { i -> UInt16 in
        var c = UInt16(i) << 8
        for _ in 0..<8 { c = c & 0x8000 != 0 ? (c << 1) ^ 0x1021 : c << 1 }
        return c
    }
}
