import Foundation
import KVTensor

/// A codec turns a chunk tensor into a payload and back. The container adds the header and checksum;
/// a codec only ever sees a header whose dimensions have been checked.
public protocol ChunkCodec: Sendable {
    var id: CodecID { get }
    func encode(_ tensor: KVTensor, level: UInt8) throws -> [UInt8]
    /// Must produce a tensor of exactly the header's shape, tokens and dtype, or throw.
    func decode(_ payload: UnsafeRawBufferPointer, header: ChunkHeader) throws -> KVTensor
}

/// Compression levels: 0 is lossless, 1...4 trade quality for size (see schemas/codec-design.md).
public enum CodecLevel {
    public static let lossless: UInt8 = 0
    public static let all: ClosedRange<UInt8> = 0...4
    /// What `put` and uploads store unless told otherwise: lossless for exact reuse, and two lossy
    /// levels (about 6x and 11x smaller) so a stream can trade quality for bandwidth per chunk by
    /// picking stored bytes, with no encoding on the hot path.
    public static let storedByDefault: [UInt8] = [0, 2, 4]
    public static var storedByDefaultText: String { storedByDefault.map(String.init).joined(separator: ",") }

    /// Why a level list was refused, as one line.
    public struct ListError: Error, Equatable, CustomStringConvertible {
        public let description: String
        public init(description: String) { self.description = description }
    }

    /// Parses a level list such as "0,2,4", as `put --levels` and uploads take it.
    public static func parseList(_ text: String) throws -> [UInt8] {
        let parts = text.split(separator: ",")
        guard !parts.isEmpty, parts.count <= all.count else {
            throw ListError(description: "levels must list 1 to \(all.count) levels, e.g. 0,2")
        }
        return try parts.map {
            guard let l = UInt8($0.trimmingCharacters(in: .whitespaces)), all.contains(l) else {
                throw ListError(description: "level \($0) is not in \(all.lowerBound)...\(all.upperBound)")
            }
            return l
        }
    }
}
