import Crypto
import Foundation
import KVCodec
import KVTensor

/// What kvstore needs from a GGUF model file: its KV shape and an identity that names the exact
/// weights (general.name plus a SHA-256 of the whole file), so KV computed by one model file is
/// never served to another.
public struct GGUFModel: Sendable, Equatable {
    public var path: String
    public var architecture: String
    public var name: String
    /// SHA-256 of the file, hex.
    public var sha256: String
    public var kvShape: KVShape
    /// Which layers slide, and over how many tokens: how llama.cpp splits the KV into caches.
    public var cacheLayout: LlamaCacheLayout

    /// The store's model id for KV that llama.cpp computed with this file. "llama.cpp" is part of
    /// it: KV from another implementation of the same weights differs (see docs/llama.md). Model ids
    /// are `[A-Za-z0-9._:/@+-]` (schemas/openapi.yaml, ModelID), so other characters of the GGUF's
    /// name (spaces, say) become "-"; the file hash keeps the id exact.
    public var identity: String {
        let safe = String(String.UnicodeScalarView(name.prefix(128).unicodeScalars.map { s in
            s.isASCII && (s.properties.isAlphabetic || ("0"..."9").contains(s) || "._:/@+-".unicodeScalars.contains(s)) ? s : "-"
        }))
        return "llama.cpp/\(safe)@sha256:\(sha256.prefix(16))"
    }

    /// Largest header prefix read to find the metadata (vocabularies of large models fit well inside).
    static let headerLimit = 128 << 20

    public init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw LlamaStateError.io("cannot open \(path)") }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: Self.headerLimit)) ?? Data()
        let meta = try Self.metadata(Array(head))
        func string(_ k: String) throws -> String {
            guard case .string(let s)? = meta[k] else { throw LlamaStateError.malformed("GGUF \(path) has no string \(k)") }
            return s
        }
        func int(_ k: String) -> Int? { if case .int(let v)? = meta[k] { return v }; return nil }
        let arch = try string("general.architecture")
        self.path = path
        architecture = arch
        name = (try? string("general.name")) ?? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
        guard let layers = int("\(arch).block_count"), let heads = int("\(arch).attention.head_count"),
              let embd = int("\(arch).embedding_length"), heads > 0 else {
            throw LlamaStateError.unsupported("GGUF \(path) (\(arch)) lacks block_count, head_count or embedding_length")
        }
        guard let kvHeads = int("\(arch).attention.head_count_kv") ?? (meta["\(arch).attention.head_count_kv"] == nil ? heads : nil) else {
            throw LlamaStateError.unsupported("GGUF \(path): per-layer KV head counts are not supported")
        }
        let keyLength = int("\(arch).attention.key_length") ?? embd / heads
        let valueLength = int("\(arch).attention.value_length") ?? keyLength
        guard keyLength == valueLength else {
            throw LlamaStateError.unsupported("GGUF \(path): key length \(keyLength) differs from value length \(valueLength)")
        }
        kvShape = KVShape(layers: layers, kvHeads: kvHeads, headDim: keyLength)
        try kvShape.validate()
        cacheLayout = try Self.cacheLayout(meta, architecture: arch, layers: layers, path: path)

        try handle.seek(toOffset: 0)
        var hasher = SHA256()
        while let block = try handle.read(upToCount: 8 << 20), !block.isEmpty { hasher.update(data: block) }
        sha256 = hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// The sliding-window layers as llama.cpp finds them: `sliding_window` > 0, then the pattern
    /// as an array of flags, a number, or the architecture's default.
    static func cacheLayout(_ meta: [String: Value], architecture arch: String, layers: Int, path: String) throws -> LlamaCacheLayout {
        guard case .int(let window)? = meta["\(arch).attention.sliding_window"], window > 0 else { return .single }
        let flags: [Bool]
        switch meta["\(arch).attention.sliding_window_pattern"] {
        case .ints(let v)?: flags = v.map { $0 != 0 }
        case .int(let n)?: flags = LlamaCacheLayout.pattern(n, layers: layers)
        default:
            guard let n = LlamaCacheLayout.defaultPattern(architecture: arch) else {
                throw LlamaStateError.unsupported("GGUF \(path) (\(arch)) has sliding-window layers in a pattern kvstore does not know")
            }
            flags = LlamaCacheLayout.pattern(n, layers: layers)
        }
        let layout = LlamaCacheLayout(slidingLayers: flags, window: window)
        try layout.validate(layers: layers)
        return layout
    }

    enum Value: Equatable { case int(Int), ints([Int]), string(String), other }

    /// The key/value metadata of a GGUF header (scalars and strings; arrays skipped).
    static func metadata(_ bytes: [UInt8]) throws -> [String: Value] {
        try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            func need(_ n: Int, _ what: String) throws {
                guard n >= 0, r.remaining >= n else { throw LlamaStateError.truncated("GGUF \(what) needs \(n) bytes, \(r.remaining) remain") }
            }
            try need(24, "header")
            let magic: UInt32 = r.read()
            guard magic == 0x4655_4747 else { throw LlamaStateError.malformed("not a GGUF file (magic 0x\(String(magic, radix: 16)))") }
            let version: UInt32 = r.read()
            guard version == 2 || version == 3 else { throw LlamaStateError.unsupported("GGUF version \(version)") }
            let _: UInt64 = r.read()
            let count: UInt64 = r.read()
            guard count <= 1 << 20 else { throw LlamaStateError.malformed("GGUF claims \(count) metadata entries") }
            func readString(_ what: String) throws -> String {
                try need(8, what)
                let n: UInt64 = r.read()
                guard n <= UInt64(r.remaining) else { throw LlamaStateError.truncated("GGUF \(what) of \(n) bytes, \(r.remaining) remain") }
                return String(decoding: r.slice(Int(n)), as: UTF8.self)
            }
            let scalarSize: [UInt32: Int] = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8]
            func readValue(_ type: UInt32, _ key: String) throws -> Value {
                switch type {
                case 8: return .string(try readString("value of \(key)"))
                case 9:
                    try need(12, "array \(key)")
                    let inner: UInt32 = r.read()
                    let n: UInt64 = r.read()
                    if let size = scalarSize[inner] {
                        guard n <= UInt64(r.remaining / size) else { throw LlamaStateError.truncated("GGUF array \(key) of \(n) items") }
                        // Small arrays of bools or 32-bit ints (per-layer flags) are kept; others skipped.
                        if n <= 4096, [0, 1, 4, 5, 7].contains(inner) {
                            return .ints((0..<Int(n)).map { _ in
                                switch inner {
                                case 4: return Int(r.read() as UInt32)
                                case 5: return Int(r.read() as Int32)
                                case 1: return Int(r.read() as Int8)
                                default: return Int(r.read() as UInt8)
                                }
                            })
                        }
                        _ = r.slice(Int(n) * size)
                    } else if inner == 8 {
                        guard n <= UInt64(r.remaining / 8) else { throw LlamaStateError.truncated("GGUF array \(key) of \(n) strings") }
                        for _ in 0..<Int(n) { _ = try readString("item of \(key)") }
                    } else {
                        throw LlamaStateError.unsupported("GGUF array \(key) of type \(inner)")
                    }
                    return .other
                default:
                    guard let size = scalarSize[type] else { throw LlamaStateError.malformed("GGUF value type \(type) for \(key)") }
                    try need(size, "value of \(key)")
                    switch type {
                    case 0: return .int(Int(r.read() as UInt8))
                    case 1: return .int(Int(r.read() as Int8))
                    case 2: return .int(Int(r.read() as UInt16))
                    case 3: return .int(Int(r.read() as Int16))
                    case 4: return .int(Int(r.read() as UInt32))
                    case 5: return .int(Int(r.read() as Int32))
                    case 10: let v: UInt64 = r.read(); return v <= UInt64(Int.max) ? .int(Int(v)) : .other
                    case 11: return .int(Int(r.read() as Int64))
                    default: _ = r.slice(size); return .other
                    }
                }
            }
            var out: [String: Value] = [:]
            for _ in 0..<Int(count) {
                let key = try readString("key")
                try need(4, "type of \(key)")
                let type: UInt32 = r.read()
                out[key] = try readValue(type, key)
            }
            return out
        }
    }
}
