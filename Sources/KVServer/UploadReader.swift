import Hummingbird
import KVTensor
import NIOCore
import Synchronization

/// Bytes held by uploads in progress. Each upload reserves its exact size once its header has
/// said what that is, so concurrent uploads together never hold more than `limit` in memory.
public final class UploadBudget: Sendable {
    public let limit: Int
    private let used = Mutex<Int>(0)

    public init(limit: Int) { self.limit = limit }

    public var inUse: Int { used.withLock { $0 } }

    func reserve(_ bytes: Int) -> Bool {
        used.withLock { u in
            guard u + bytes <= limit else { return false }
            u += bytes
            return true
        }
    }

    func release(_ bytes: Int) { used.withLock { $0 -= bytes } }
}

/// Reads a safetensors upload from a request body as it arrives, trusting nothing it declares:
/// a declared length over the limit is refused before any body byte is read; the 8-byte length and
/// the JSON header are judged as soon as they are in (a bad one is refused at once); the body is
/// then read into one buffer of exactly the size the header describes, reserved from `budget`, and
/// a body that runs past that size is refused when the first extra byte arrives.
struct UploadReader {
    /// Real headers are a few hundred bytes; a long one is a hostile one.
    static let maxHeaderBytes = 1 << 20

    let maxBytes: Int
    let budget: UploadBudget

    /// Calls `body` with the parsed upload, holding its reservation until `body` returns.
    func read<T>(_ request: Request, check: (SafetensorsHeader) throws -> Void,
                 _ body: (SafetensorsFile) async throws -> T) async throws -> T {
        let declared = try request.headers[.contentLength].map { text in
            guard let n = Int(text), n >= 0 else { throw APIError.badRequest("Content-Length is not a byte count") }
            return n
        }
        if let declared, declared > maxBytes { throw Self.tooLarge(declared, maxBytes) }

        var buffer: [UInt8] = []
        var headerEnd = 0        // known once the first 8 bytes are in
        var total: Int?          // known once the header is parsed
        var reserved = 0
        defer { if reserved > 0 { budget.release(reserved) } }
        for try await piece in request.body {
            var piece = piece
            while piece.readableBytes > 0 {
                guard let total else {
                    // Header phase: take only what the header needs, judging each part once it is in.
                    if buffer.count < 8 {
                        buffer.append(contentsOf: piece.readBytes(length: min(8 - buffer.count, piece.readableBytes))!)
                        if buffer.count < 8 { continue }
                        headerEnd = 8 + (try Self.badRequest { try SafetensorsFile.headerLength(buffer[0..<8], limit: Self.maxHeaderBytes) })
                    }
                    buffer.append(contentsOf: piece.readBytes(length: min(headerEnd - buffer.count, piece.readableBytes))!)
                    if buffer.count == headerEnd {
                        let header = try Self.badRequest { try SafetensorsHeader(json: buffer[8..<headerEnd]) }
                        try check(header)
                        let size = headerEnd + header.dataBytes
                        guard size <= maxBytes else { throw Self.tooLarge(size, maxBytes) }
                        if let declared, declared != size {
                            throw APIError.badRequest("Content-Length is \(declared) bytes but the safetensors header describes \(size)")
                        }
                        guard budget.reserve(size) else {
                            throw APIError(.serviceUnavailable, "uploads in progress hold the server's upload memory; retry later")
                        }
                        reserved = size
                        buffer.reserveCapacity(size)
                        total = size
                    }
                    continue
                }
                guard buffer.count + piece.readableBytes <= total else {
                    throw APIError.badRequest("the body continues past the \(total) bytes its safetensors header describes")
                }
                piece.withUnsafeReadableBytes { buffer.append(contentsOf: $0) }
                piece.moveReaderIndex(to: piece.writerIndex)
            }
        }
        guard let total, buffer.count == total else {
            let end = total.map { "\($0)-byte context its header describes" }
                ?? (headerEnd > 0 ? "\(headerEnd - 8)-byte header" : "8-byte header length")
            throw APIError.badRequest("body is not a safetensors context: it ends after \(buffer.count) bytes, inside its \(end)")
        }
        let file = try Self.badRequest { try SafetensorsFile(bytes: buffer) }
        buffer = []
        return try await body(file)
    }

    static func tooLarge(_ size: Int, _ limit: Int) -> APIError {
        APIError(.contentTooLarge, "request body of \(size) bytes is larger than the server accepts (\(limit))")
    }

    static func badRequest<T>(_ parse: () throws -> T) throws -> T {
        do { return try parse() } catch let e as TensorError { throw APIError.badRequest("body is not a safetensors context: \(e)") }
    }
}
