import Hummingbird
import HummingbirdCore
import Logging
import NIOCore

/// HTTP/1.1 child channels with a fixed socket send buffer (see `ServerConfiguration.sendBufferBytes`).
struct SendBufferHTTP1Channel: ServerChildChannel {
    typealias Value = HTTP1Channel.Value
    let inner: HTTP1Channel
    let sendBufferBytes: Int

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        channel.setOption(ChannelOptions.socketOption(.so_sndbuf), value: SocketOptionValue(sendBufferBytes))
            .flatMap { inner.setup(channel: channel, logger: logger) }
    }

    func handle(value: Value, logger: Logger) async {
        await inner.handle(value: value, logger: logger)
    }
}

extension KVService {
    /// The router with every route and middleware, for the server and for in-process tests.
    public func router() -> Router<ServeContext> {
        let router = Router(context: ServeContext.self)
        router.add(middleware: ErrorMiddleware(metrics: metrics, drainLimit: config.maxUploadBytes))
        router.add(middleware: CanonicalPathMiddleware())
        addRoutes(to: router)
        return router
    }

    /// The application `kvstore serve` runs. `onRunning` gets the bound port (useful with port 0).
    public func application(logLevel: Logger.Level = .warning,
                            onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        try config.validate()
        var logger = Logger(label: "kvstore.serve")
        logger.logLevel = logLevel
        let sendBuffer = config.sendBufferBytes
        return Application(
            router: router(),
            server: HTTPServerBuilder { responder in
                SendBufferHTTP1Channel(inner: HTTP1Channel(responder: responder, configuration: .init(idleTimeout: .seconds(120))),
                                       sendBufferBytes: sendBuffer)
            },
            configuration: .init(address: .hostname(config.host, port: config.port), serverName: "kvstore"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }
}
