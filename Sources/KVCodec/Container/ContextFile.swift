import KVTensor

/// The standalone `.kvc` file of `kvstore encode`: a context's token ids and metadata, then its
/// chunks as containers, so a file decodes without a store (see schemas/chunk-container.md).
/// Version 2 adds an XXH64 of the header, metadata and token ids (containers carry their own), so
/// every byte `decode` returns is checked; version 1 files still decode.
public enum ContextFile {
    public static let magic: [UInt8] = Array("KVCF".utf8)
    public static let version: UInt16 = 2
    static let maxMetadataBytes = 1 << 16

    /// Chunks are encoded on up to `threads` threads (the bytes do not depend on it).
    public static func encode(_ context: KVContext, level: UInt8, chunkTokens: Int = 256, model: CodecProfile? = nil,
                              threads: Int = 1) throws -> [UInt8] {
        guard chunkTokens > 0, chunkTokens <= ChunkContainer.maxTokens else {
            throw CodecError.limit("chunk size \(chunkTokens) outside 1...\(ChunkContainer.maxTokens)")
        }
        var meta = ""
        for key in context.metadata.keys.sorted() { meta += "\(key)=\(context.metadata[key]!)\n" }
        let metaBytes = Array(meta.utf8)
        guard metaBytes.count <= maxMetadataBytes else { throw CodecError.limit("metadata over \(maxMetadataBytes) bytes") }
        var w = ByteWriter(capacity: context.kv.bytes.count / 2)
        w.append(magic)
        w.append(version)
        w.append(UInt16(0))
        w.append(UInt32(context.tokens.count))
        w.append(UInt32(chunkTokens))
        w.append(UInt32(metaBytes.count))
        w.append(metaBytes)
        for t in context.tokens { w.append(UInt32(bitPattern: t)) }
        w.append(XXHash64.hash(w.bytes))
        let starts = Array(stride(from: 0, to: context.tokens.count, by: chunkTokens))
        w.append(UInt32(starts.count))
        let chunks = try Parallel.map(starts.count, threads: threads) { i in
            try ChunkContainer.encode(context.kv.slice(tokens: starts[i]..<min(starts[i] + chunkTokens, context.tokens.count)),
                                      level: level, model: model)
        }
        for chunk in chunks {
            w.append(UInt64(chunk.count))
            w.append(chunk)
        }
        return w.bytes
    }

    /// Chunks are decoded on up to `threads` threads.
    public static func decode(_ bytes: [UInt8], threads: Int = 1) throws -> KVContext {
        try bytes.withUnsafeBytes { raw in
            var r = ByteReader(raw)
            guard r.remaining >= 20 else { throw CodecError.truncated("\(raw.count) bytes, a .kvc header needs 20") }
            guard r.bytes(4) == magic else { throw CodecError.corrupt("not a .kvc file (bad magic)") }
            let v: UInt16 = r.read()
            guard v == 1 || v == version else { throw CodecError.unsupported(".kvc version \(v)") }
            let _: UInt16 = r.read()
            let tokenCount = Int(r.read() as UInt32)
            let chunkTokens = Int(r.read() as UInt32)
            let metaLength = Int(r.read() as UInt32)
            guard tokenCount <= KVTensor.maxTokens else { throw CodecError.limit("\(tokenCount) tokens") }
            guard chunkTokens > 0, chunkTokens <= ChunkContainer.maxTokens else { throw CodecError.corrupt("chunk size \(chunkTokens)") }
            let checksumBytes = v >= 2 ? 8 : 0
            guard metaLength <= maxMetadataBytes, r.remaining >= metaLength + 4 * tokenCount + checksumBytes + 4 else {
                throw CodecError.truncated("header declares more than the file holds")
            }
            var metadata: [String: String] = [:]
            for line in String(decoding: r.bytes(metaLength), as: UTF8.self).split(separator: "\n") {
                if let eq = line.firstIndex(of: "=") { metadata[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
            }
            var tokens = [Int32](repeating: 0, count: tokenCount)
            for i in 0..<tokenCount { tokens[i] = Int32(bitPattern: r.read() as UInt32) }
            if v >= 2 {
                let covered = UnsafeRawBufferPointer(rebasing: raw[0..<(20 + metaLength + 4 * tokenCount)])
                guard r.read() as UInt64 == XXHash64.hash(covered) else {
                    throw CodecError.corrupt("checksum mismatch in the .kvc header, metadata or token ids")
                }
            }
            let chunkCount = Int(r.read() as UInt32)
            guard chunkCount == (tokenCount + chunkTokens - 1) / chunkTokens else {
                throw CodecError.corrupt("\(chunkCount) chunks for \(tokenCount) tokens of \(chunkTokens)")
            }
            // Every chunk's bounds first, then the chunks decoded in parallel.
            var slices: [UnsafeRawBufferPointer] = []
            for i in 0..<chunkCount {
                guard r.remaining >= 8 else { throw CodecError.truncated("chunk \(i) length missing") }
                let length: UInt64 = r.read()
                guard length <= UInt64(r.remaining) else { throw CodecError.truncated("chunk \(i) declares \(length) bytes, \(r.remaining) left") }
                slices.append(r.slice(Int(length)))
            }
            guard r.remaining == 0 else { throw CodecError.corrupt("\(r.remaining) trailing bytes") }
            let parts = try Parallel.map(chunkCount, threads: threads) { i in
                let part = try ChunkContainer.decode(slices[i])
                guard part.tokens == min(chunkTokens, tokenCount - i * chunkTokens) else {
                    throw CodecError.corrupt("chunk \(i) holds \(part.tokens) tokens")
                }
                return part
            }
            guard !parts.isEmpty else { throw CodecError.corrupt("no chunks") }
            do { return try KVContext(kv: KVTensor.concatenate(parts), tokens: tokens, metadata: metadata) }
            catch { throw CodecError.corrupt("\(error)") }
        }
    }
}
