import CLMDB
import KVCodec
import Foundation

/// A pinned context: GC never evicts its chunks until the pin expires or is removed.
public struct PinInfo: Sendable, Codable, Equatable {
    public var context: String
    /// Seconds since 1970; nil = never expires.
    public var expires: Int?
}

/// Pin values: u64 little-endian expiry, 0 = never.
enum PinRecord {
    static func encode(expires: Int?) -> [UInt8] {
        var w = ByteWriter(capacity: 8)
        w.append(UInt64(expires ?? 0))
        return w.bytes
    }

    static func decode(_ raw: [UInt8]) -> Int?? {
        guard raw.count == 8 else { return nil }
        var r = RecordReader(raw)
        let v = Int(r.u64())
        return .some(v == 0 ? nil : v)
    }
}

extension ChunkStore {
    var pinDB: MDB_dbi { env.database("pins") }

    /// Pins a context, for `duration` seconds or forever. Pinning again replaces the expiry.
    @discardableResult
    public func pin(context id: Hash32, duration: Int? = nil) throws -> PinInfo {
        let expires = duration.map { clock() + $0 }
        try env.write { txn in
            guard try txn.get(contextDB, id.bytes) != nil else { throw StoreError.notFound("no context \(id.hex)") }
            try txn.put(pinDB, id.bytes, PinRecord.encode(expires: expires))
        }
        return PinInfo(context: id.hex, expires: expires)
    }

    /// Removes a pin. Returns whether there was one.
    @discardableResult
    public func unpin(context id: Hash32) throws -> Bool {
        try env.write { txn in try txn.delete(pinDB, id.bytes) }
    }

    public func pins() throws -> [PinInfo] {
        try env.read { txn in
            var out: [PinInfo] = []
            try txn.scan(pinDB) { key, value in
                if let id = Hash32(bytes: key), let expires = PinRecord.decode(value) {
                    out.append(PinInfo(context: id.hex, expires: expires))
                }
                return true
            }
            return out
        }
    }
}
