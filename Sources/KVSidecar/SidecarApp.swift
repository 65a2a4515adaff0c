import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

extension Sidecar {
    /// Completion routes the sidecar serves; each is forwarded to the same path on llama-server.
    public static let routes = ["/v1/completions", "/v1/chat/completions", "/completion"]

    public func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        for route in Self.routes {
            router.post(RouterPath(route)) { request, _ in try await self.respond(route: route, request: request) }
        }
        router.get("/metrics") { [metrics] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render())))
        }
        // Ready once llama-server answered the sidecar's probe; 503 with the reason until then.
        router.get("/healthz") { _, _ in
            let body: [String: Any] = if let info = self.ready { ["status": "ok", "model": info.model.identity] }
                else { ["status": "waiting for llama-server", "detail": self.waitingReason ?? ""] }
            return Response(status: self.ready == nil ? .serviceUnavailable : .ok, headers: [.contentType: "application/json"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body))))
        }
        return router
    }

    func respond(route: String, request: Request) async throws -> Response {
        // A client that hangs up cancels its request (`handle` then closes the upstream connection,
        // which makes llama-server stop the task, and frees the slot), rather than leaving a slot
        // busy with a prefill nobody will read (issue 27 F9).
        try await request.body.consumeWithCancellationOnInboundClose { body in
            try await respond(route: route, body: try await body.collect(upTo: 64 << 20))
        }
    }

    func respond(route: String, body: ByteBuffer) async throws -> Response {
        let forwarded: Forwarded
        do {
            forwarded = try await handle(route: route, body: Array(buffer: body))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            // The client's own mistake is 400 (OpenAI's error type for it); 503 while llama-server is
            // not there (as llama-server answers while it loads); anything else went wrong upstream.
            let (status, type): (HTTPResponse.Status, String) = switch error {
            case SidecarError.request: (.badRequest, "invalid_request_error")
            case SidecarError.notReady: (.serviceUnavailable, "unavailable_error")
            default: (.badGateway, "kvstore_sidecar")
            }
            let message = try JSONSerialization.data(withJSONObject: ["error": ["message": "\(error)", "type": type]])
            var headers: HTTPFields = [.contentType: "application/json"]
            if status == .serviceUnavailable { headers[.retryAfter] = "1" }
            return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: message)))
        }
        var headers: HTTPFields = [:]
        if !forwarded.contentType.isEmpty { headers[.contentType] = forwarded.contentType }
        if let name = HTTPFields.Element.Name("X-KVStore-Restored-Tokens") { headers[name] = String(forwarded.restoredTokens) }
        return Response(status: HTTPResponse.Status(code: forwarded.status), headers: headers,
                        body: ResponseBody(asyncSequence: forwarded.body))
    }

    /// The application `kvstore sidecar` runs; `onRunning` gets the bound port (useful with port 0).
    public func application(host: String, port: Int, logLevel: Logger.Level = .info,
                            onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        var logger = Logger(label: "kvstore.sidecar.http")
        logger.logLevel = .warning
        return Application(router: router(),
                           configuration: .init(address: .hostname(host, port: port), serverName: "kvstore-sidecar"),
                           onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
                           logger: logger)
    }
}
