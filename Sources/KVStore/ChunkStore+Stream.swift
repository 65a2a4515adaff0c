import KVCodec
import KVTensor

extension ChunkStore {
    /// The stored container bytes of a matched chunk at `level`, for streaming: the SHA-256 re-hash
    /// is skipped (the receiver checks the container's own checksum when it decodes), but the
    /// header is checked so a truncated or foreign file is never sent. Nil when the chunk was
    /// removed since the lookup, or is not stored at `level`.
    public func streamBytes(_ chunk: MatchedChunk, level: UInt8) throws -> [UInt8]? {
        guard let blob = chunk.record.blob(level: level) else { return nil }
        let bytes: [UInt8]
        do { bytes = try FileIO.readAll(blobs.path(of: blob.blob), limit: blob.bytes) } catch {
            let stillIndexed = try env.read { try $0.get(chunkDB, chunk.hash.bytes) != nil }
            if stillIndexed { throw StoreError.missingBlob("\(blob.blob.hex) (chunk \(chunk.record.position) is still indexed)") }
            return nil
        }
        guard bytes.count == blob.bytes, let header = try? bytes.withUnsafeBytes({ try ChunkHeader.parse($0, available: bytes.count - ChunkHeader.size) }),
              header.level == level, header.tokens == chunk.range.count else {
            throw StoreError.corruptBlob("\(blob.blob.hex) is not a \(chunk.range.count)-token level-\(level) chunk of \(blob.bytes) bytes")
        }
        return bytes
    }
}
