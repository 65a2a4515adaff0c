import Crypto
import Foundation
import KVTensor

/// An activated-LoRA (aLoRA) request: the adapter changes the weights only from token
/// `invocationStart` on, so every chunk that ends at or before it is the base model's KV.
/// The adapter is named by a content digest (SHA-256 of its weights, or one the caller computed),
/// so an adapter reloaded under the same name with new weights never hits stale KV.
public struct AdapterSpan: Hashable, Sendable, Codable {
    /// Lowercase hex content digest of the adapter.
    public var digest: String
    /// Index of the first token computed with the adapter's weights.
    public var invocationStart: Int

    public init(digest: String, invocationStart: Int) throws {
        let d = digest.lowercased()
        guard d.count >= 32, d.count <= 128, d.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
            throw StoreError.invalidInput("adapter digest must be 32 to 128 hex digits, got \"\(digest.prefix(80))\"")
        }
        guard invocationStart >= 0 else { throw StoreError.invalidInput("invocation start \(invocationStart) is negative") }
        self.digest = d
        self.invocationStart = invocationStart
    }

    /// SHA-256 of a file (an adapter's weights), read in 4 MiB pieces.
    public static func digest(ofFile path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw StoreError.invalidInput("cannot read adapter file \(path): \(FileIO.errnoMessage())")
        }
        defer { try? handle.close() }
        var h = SHA256()
        while true {
            let piece: Data?
            do { piece = try handle.read(upToCount: 4 << 20) } catch {
                throw StoreError.invalidInput("cannot read adapter file \(path): \(error)")
            }
            guard let piece, !piece.isEmpty else { break }
            h.update(data: piece)
        }
        return Hash32(digest: h.finalize()).hex
    }
}
