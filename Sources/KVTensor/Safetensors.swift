import Foundation

/// Reads and writes the safetensors container: an 8-byte little-endian header length, a JSON header
/// (`name -> {dtype, shape, data_offsets}`, optional `__metadata__`), then the tensor bytes.
/// Every size and offset read from a file is checked against the file before it is used.
public struct SafetensorsFile: Sendable {
    public struct Entry: Sendable, Equatable {
        public var dtype: String
        public var shape: [Int]
        /// Byte range inside `bytes`.
        public var range: Range<Int>
    }

    public let entries: [String: Entry]
    public let metadata: [String: String]
    public let bytes: [UInt8]

    /// Largest JSON header accepted: real files carry a few KB.
    public static let maxHeaderBytes = 16 << 20

    static let widths: [String: Int] = ["F16": 2, "BF16": 2, "F32": 4, "F64": 8, "I8": 1, "U8": 1, "I16": 2, "I32": 4, "I64": 8, "BOOL": 1]

    public init(bytes: [UInt8]) throws {
        guard bytes.count >= 8 else { throw TensorError.truncated("\(bytes.count) bytes, the header length alone needs 8") }
        let headerEnd = 8 + (try Self.headerLength(bytes[0..<8], limit: Self.maxHeaderBytes))
        guard headerEnd <= bytes.count else { throw TensorError.truncated("header length \(headerEnd - 8) runs past the end of the \(bytes.count)-byte file") }
        let header = try SafetensorsHeader(json: bytes[8..<headerEnd])
        let dataCount = bytes.count - headerEnd
        var entries: [String: Entry] = [:]
        for (name, e) in header.entries {
            guard e.range.upperBound <= dataCount else {
                throw TensorError.truncated("tensor \(name) ends at byte \(e.range.upperBound) but the data section holds \(dataCount)")
            }
            entries[name] = Entry(dtype: e.dtype, shape: e.shape, range: (headerEnd + e.range.lowerBound)..<(headerEnd + e.range.upperBound))
        }
        self.entries = entries
        self.metadata = header.metadata
        self.bytes = bytes
    }

    /// The JSON header's length from the file's first 8 bytes, refused above `limit`.
    public static func headerLength(_ prefix: ArraySlice<UInt8>, limit: Int) throws -> Int {
        precondition(prefix.count == 8)
        var n: UInt64 = 0
        for (i, b) in prefix.enumerated() { n |= UInt64(b) << (8 * UInt64(i)) }
        guard n <= UInt64(limit) else { throw TensorError.badHeader("header length \(n) exceeds \(limit)") }
        return Int(n)
    }

    static func integer(_ any: Any) -> Int? {
        if let n = any as? NSNumber, CFGetTypeIDIfBool(n) == false {
            let d = n.doubleValue
            guard d == d.rounded(), abs(d) < 9e15 else { return nil }
            return n.intValue
        }
        return nil
    }

    /// JSON `true` decodes as an NSNumber too; sizes and ids refuse it.
    static func CFGetTypeIDIfBool(_ n: NSNumber) -> Bool {
        // JSON `true` decodes as an NSNumber too; reject it as a size.
        String(cString: n.objCType) == "c"
    }

    /// The `tokens` tensor as Int32 ids (I32 or I64; ids must fit in Int32).
    public func tokens() throws -> [Int32] {
        guard let e = entries["tokens"] else { throw TensorError.missingTensor("no `tokens` tensor") }
        guard e.shape.count == 1 else { throw TensorError.badShape("tokens has rank \(e.shape.count), expected 1") }
        let n = e.shape[0]
        var out = [Int32](repeating: 0, count: n)
        switch e.dtype {
        case "I32":
            bytes.withUnsafeBytes { raw in
                for i in 0..<n { out[i] = Int32(littleEndian: raw.loadUnaligned(fromByteOffset: e.range.lowerBound + 4 * i, as: Int32.self)) }
            }
        case "I64":
            for i in 0..<n {
                let v = bytes.withUnsafeBytes { Int64(littleEndian: $0.loadUnaligned(fromByteOffset: e.range.lowerBound + 8 * i, as: Int64.self)) }
                guard v >= 0, v <= Int64(Int32.max) else { throw TensorError.badShape("token id \(v) at \(i) is outside 0...\(Int32.max)") }
                out[i] = Int32(v)
            }
        default:
            throw TensorError.unknownDType("tokens has dtype \(e.dtype), expected I32 or I64")
        }
        for (i, t) in out.enumerated() where t < 0 { throw TensorError.badShape("token id \(t) at \(i) is negative") }
        return out
    }

    /// The `kv` tensor, checked to be `[layers, 2, tokens, kv_heads, head_dim]`.
    public func kv() throws -> KVTensor {
        guard let e = entries["kv"] else { throw TensorError.missingTensor("no `kv` tensor") }
        guard let dtype = DType(rawValue: e.dtype) else { throw TensorError.unknownDType("kv has dtype \(e.dtype), expected F16, BF16 or F32") }
        guard e.shape.count == 5 else { throw TensorError.badShape("kv has rank \(e.shape.count), expected 5 [layers, 2, tokens, kv_heads, head_dim]") }
        guard e.shape[1] == 2 else { throw TensorError.badShape("kv axis 1 is \(e.shape[1]), expected 2 (keys, values)") }
        let shape = KVShape(layers: e.shape[0], kvHeads: e.shape[3], headDim: e.shape[4])
        return try KVTensor(shape: shape, tokens: e.shape[2], dtype: dtype, bytes: Array(bytes[e.range]))
    }

    public func context() throws -> KVContext {
        let kv = try kv()
        let tokens = try tokens()
        guard tokens.count == kv.tokens else {
            throw TensorError.mismatch("kv holds \(kv.tokens) tokens but the tokens tensor holds \(tokens.count)")
        }
        return try KVContext(kv: kv, tokens: tokens, metadata: metadata)
    }
}

/// A parsed safetensors JSON header: every tensor's dtype, shape and byte range inside the data
/// section, checked for consistency. Parsing needs only the header, so an upload is judged (and a
/// bad one refused) before its data arrives.
public struct SafetensorsHeader: Sendable {
    public let entries: [String: SafetensorsFile.Entry]
    public let metadata: [String: String]
    /// Bytes the data section must hold: the end of the last tensor.
    public let dataBytes: Int

    public init(json: ArraySlice<UInt8>) throws {
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: Data(json)) } catch {
            throw TensorError.badHeader("header is not valid JSON")
        }
        guard let object = parsed as? [String: Any] else { throw TensorError.badHeader("header is not a JSON object") }
        var entries: [String: SafetensorsFile.Entry] = [:]
        var metadata: [String: String] = [:]
        var dataBytes = 0
        for (name, value) in object {
            if name == "__metadata__" {
                guard let m = value as? [String: Any] else { throw TensorError.badHeader("__metadata__ is not an object") }
                for (k, v) in m {
                    guard let s = v as? String else { throw TensorError.badHeader("__metadata__[\(k)] is not a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let t = value as? [String: Any],
                  let dtype = t["dtype"] as? String,
                  let shapeAny = t["shape"] as? [Any],
                  let offsAny = t["data_offsets"] as? [Any], offsAny.count == 2
            else { throw TensorError.badHeader("tensor \(name) lacks dtype, shape or data_offsets") }
            guard let width = SafetensorsFile.widths[dtype] else { throw TensorError.unknownDType("tensor \(name) has dtype \(dtype)") }
            var shape: [Int] = []
            var count = 1
            for d in shapeAny {
                guard let v = SafetensorsFile.integer(d), v >= 0 else { throw TensorError.badHeader("tensor \(name) has a non-integer or negative dimension") }
                let (m, overflow) = count.multipliedReportingOverflow(by: v)
                guard !overflow, m <= 1 << 40 else { throw TensorError.tooLarge("tensor \(name) shape \(shapeAny) is too large") }
                count = m
                shape.append(v)
            }
            guard let begin = SafetensorsFile.integer(offsAny[0]), let end = SafetensorsFile.integer(offsAny[1]), begin >= 0, begin <= end else {
                throw TensorError.badHeader("tensor \(name) has invalid data_offsets")
            }
            guard end - begin == count * width else {
                throw TensorError.mismatch("tensor \(name) spans \(end - begin) bytes but shape \(shape) of \(dtype) needs \(count * width)")
            }
            entries[name] = SafetensorsFile.Entry(dtype: dtype, shape: shape, range: begin..<end)
            dataBytes = max(dataBytes, end)
        }
        self.entries = entries
        self.metadata = metadata
        self.dataBytes = dataBytes
    }
}

public enum Safetensors {
    public static func read(_ path: String) throws -> SafetensorsFile {
        try SafetensorsFile(bytes: FileIO.readAll(path))
    }

    public static func readContext(_ path: String) throws -> KVContext {
        try read(path).context()
    }

    /// Header and data of a context file, in the order they are written.
    public static func serialize(_ context: KVContext) -> [[UInt8]] {
        let kv = context.kv
        var tokenBytes = [UInt8](repeating: 0, count: context.tokens.count * 4)
        tokenBytes.withUnsafeMutableBytes { raw in
            for (i, t) in context.tokens.enumerated() { raw.storeBytes(of: t.littleEndian, toByteOffset: 4 * i, as: Int32.self) }
        }
        let kvShape = [kv.shape.layers, 2, kv.tokens, kv.shape.kvHeads, kv.shape.headDim]
        var header = "{"
        if !context.metadata.isEmpty {
            let pairs = context.metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(context.metadata[$0]!))" }
            header += "\"__metadata__\":{\(pairs.joined(separator: ","))},"
        }
        header += "\"kv\":{\"dtype\":\"\(kv.dtype.rawValue)\",\"shape\":\(kvShape),\"data_offsets\":[0,\(kv.bytes.count)]},"
        header += "\"tokens\":{\"dtype\":\"I32\",\"shape\":[\(context.tokens.count)],\"data_offsets\":[\(kv.bytes.count),\(kv.bytes.count + tokenBytes.count)]}}"
        var headerBytes = Array(header.utf8)
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }
        var prefix = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { prefix[i] = UInt8(truncatingIfNeeded: UInt64(headerBytes.count) >> (8 * UInt64(i))) }
        return [prefix + headerBytes, kv.bytes, tokenBytes]
    }

    public static func write(_ context: KVContext, to path: String) throws {
        try FileIO.writeAtomically(serialize(context), to: path, sync: false)
    }

    static func jsonString(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}
