import Foundation
import Hummingbird
import HummingbirdTesting
import KVServer
import KVStore
import KVTensor
import KVFrames
import KVTransport
import TestSupport

/// A fresh store in a temporary directory with the real SmolLM2 fixture, and helpers to talk to
/// the server in-process.
struct ServerFixture {
    static let fixturesDirectory = TestSupport.fixtures
    static let contextPath = fixturesDirectory + "/smollm2_ctx96_f16.safetensors"

    let root: String
    let service: KVService

    init(chunkTokens: Int = 32, tokens: TokenTable? = nil, configure: (inout ServerConfiguration) -> Void = { _ in }) throws {
        root = NSTemporaryDirectory() + "kvserve-test-" + UUID().uuidString
        var config = ServerConfiguration()
        config.tokens = tokens
        configure(&config)
        service = KVService(store: try ChunkStore(root: root, chunkTokens: chunkTokens), config: config)
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: root) }

    var app: some ApplicationProtocol { Application(router: service.router()) }

    static func contextBytes() throws -> [UInt8] { try FileIO.readAll(contextPath) }
    static func context() throws -> KVContext { try Safetensors.readContext(contextPath) }

    static func tokensJSON(_ tokens: [Int32], model: String? = nil) -> ByteBuffer {
        var o: [String: Any] = ["tokens": tokens.map(Int.init)]
        if let model { o["model"] = model }
        return ByteBuffer(bytes: try! JSONSerialization.data(withJSONObject: o))
    }

    static func bearer(_ token: String?) -> HTTPFields {
        var h: HTTPFields = [.contentType: "application/json"]
        if let token { h[.authorization] = "Bearer \(token)" }
        return h
    }

    static func errorMessage(_ body: ByteBuffer) -> String? {
        (try? JSONSerialization.jsonObject(with: Data(buffer: body)) as? [String: Any])?["error"] as? String
    }

    /// Parses a whole frame stream.
    static func frames(_ body: ByteBuffer) throws -> [(frame: Frame, payload: [UInt8])] {
        var reader = FrameReader()
        reader.append(body.readableBytesView)
        var out: [(Frame, [UInt8])] = []
        while let f = try reader.next() { out.append((f.frame, f.payload)) }
        return out
    }
}
