import CLMDB
#if canImport(Glibc)
import Glibc
#endif

/// A thin owner of an LMDB environment. LMDB gives one writer and many lock-free readers across
/// processes; every write happens inside `write`, which commits on return and aborts on throw.
public final class LMDBEnvironment: @unchecked Sendable {
    let env: OpaquePointer
    private var handles: [String: MDB_dbi] = [:]

    public init(path: String, mapSize: Int, databases: [String]) throws {
        var e: OpaquePointer?
        try Self.check(mdb_env_create(&e), "create environment")
        env = e!
        do {
            try Self.check(mdb_env_set_mapsize(env, mapSize), "set map size")
            try Self.check(mdb_env_set_maxdbs(env, MDB_dbi(databases.count + 2)), "set max databases")
            try Self.check(mdb_env_set_maxreaders(env, 512), "set max readers")
            // NOTLS: read transactions are not tied to threads, which Swift tasks hop between.
            try Self.check(mdb_env_open(env, path, UInt32(MDB_NOTLS), 0o644), "open \(path)")
            try write { txn in
                for name in databases {
                    var dbi: MDB_dbi = 0
                    try Self.check(mdb_dbi_open(txn.txn, name, UInt32(MDB_CREATE), &dbi), "open database \(name)")
                    handles[name] = dbi
                }
            }
        } catch {
            mdb_env_close(env)
            throw error
        }
    }

    deinit { mdb_env_close(env) }

    public func database(_ name: String) -> MDB_dbi { handles[name]! }

    public func read<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        var t: OpaquePointer?
        try Self.check(mdb_txn_begin(env, nil, UInt32(MDB_RDONLY), &t), "begin read")
        defer { mdb_txn_abort(t) }
        return try body(LMDBTransaction(txn: t!))
    }

    public func write<T>(_ body: (LMDBTransaction) throws -> T) throws -> T {
        var t: OpaquePointer?
        try Self.check(mdb_txn_begin(env, nil, 0, &t), "begin write")
        let result: T
        do { result = try body(LMDBTransaction(txn: t!)) } catch {
            mdb_txn_abort(t)
            throw error
        }
        try Self.check(mdb_txn_commit(t), "commit")
        return result
    }

    /// Bytes used by the map file.
    public func usedBytes() -> Int {
        var info = MDB_envinfo()
        var st = MDB_stat()
        mdb_env_info(env, &info)
        mdb_env_stat(env, &st)
        return (Int(info.me_last_pgno) + 1) * Int(st.ms_psize)
    }

    static func check(_ rc: Int32, _ what: String) throws {
        guard rc != 0 else { return }
        let msg = "\(what): \(String(cString: mdb_strerror(rc)))"
        switch rc {
        case ENOSPC, EFBIG, MDB_MAP_FULL: throw StoreError.noSpace(msg)
        case EACCES, EROFS, EPERM: throw StoreError.notWritable(msg)
        default: throw StoreError.index(msg)
        }
    }
}

/// One LMDB transaction. Byte views handed to callbacks are valid only inside the callback.
public struct LMDBTransaction {
    let txn: OpaquePointer

    public func get(_ db: MDB_dbi, _ key: [UInt8]) throws -> [UInt8]? {
        try key.withUnsafeBytes { k in
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            var v = MDB_val()
            let rc = mdb_get(txn, db, &kv, &v)
            if rc == MDB_NOTFOUND { return nil }
            try LMDBEnvironment.check(rc, "get")
            return Array(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
        }
    }

    public func put(_ db: MDB_dbi, _ key: [UInt8], _ value: [UInt8]) throws {
        try key.withUnsafeBytes { k in
            try value.withUnsafeBytes { val in
                var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
                var vv = MDB_val(mv_size: val.count, mv_data: UnsafeMutableRawPointer(mutating: val.baseAddress))
                try LMDBEnvironment.check(mdb_put(txn, db, &kv, &vv, 0), "put")
            }
        }
    }

    @discardableResult
    public func delete(_ db: MDB_dbi, _ key: [UInt8]) throws -> Bool {
        try key.withUnsafeBytes { k in
            var kv = MDB_val(mv_size: k.count, mv_data: UnsafeMutableRawPointer(mutating: k.baseAddress))
            let rc = mdb_del(txn, db, &kv, nil)
            if rc == MDB_NOTFOUND { return false }
            try LMDBEnvironment.check(rc, "delete")
            return true
        }
    }

    /// Visits entries in key order, starting at the first key ≥ `from` and stopping when
    /// `body` returns false or a key no longer starts with `prefix`.
    public func scan(_ db: MDB_dbi, prefix: [UInt8] = [], _ body: (_ key: [UInt8], _ value: [UInt8]) throws -> Bool) throws {
        var c: OpaquePointer?
        try LMDBEnvironment.check(mdb_cursor_open(txn, db, &c), "open cursor")
        defer { mdb_cursor_close(c) }
        var k = MDB_val(), v = MDB_val()
        var rc: Int32
        if prefix.isEmpty {
            rc = mdb_cursor_get(c, &k, &v, MDB_FIRST)
        } else {
            rc = prefix.withUnsafeBytes { p in
                k = MDB_val(mv_size: p.count, mv_data: UnsafeMutableRawPointer(mutating: p.baseAddress))
                return mdb_cursor_get(c, &k, &v, MDB_SET_RANGE)
            }
        }
        while rc == 0 {
            let key = Array(UnsafeRawBufferPointer(start: k.mv_data, count: k.mv_size))
            if !prefix.isEmpty && !key.starts(with: prefix) { return }
            let value = Array(UnsafeRawBufferPointer(start: v.mv_data, count: v.mv_size))
            if try !body(key, value) { return }
            rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)
        }
        if rc != MDB_NOTFOUND { try LMDBEnvironment.check(rc, "cursor") }
    }

    public func count(_ db: MDB_dbi) throws -> Int {
        var st = MDB_stat()
        try LMDBEnvironment.check(mdb_stat(txn, db, &st), "stat")
        return Int(st.ms_entries)
    }
}
