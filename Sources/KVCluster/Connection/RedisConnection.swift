import KVRESP
import NIOCore
import NIOPosix

/// One connection to one Redis node. Commands are pipelined: a batch is written at once and its
/// replies arrive in order. A batch that takes longer than `timeout` closes the connection (so a
/// late reply can never be taken for another request's) and fails.
public final class RedisConnection: Sendable {
    public let address: String
    let channel: Channel
    let timeout: TimeAmount

    public struct Credentials: Sendable, Equatable {
        public var user: String?
        public var password: String
        public init(user: String? = nil, password: String) { self.user = user; self.password = password }
    }

    init(address: String, channel: Channel, timeout: TimeAmount) {
        self.address = address
        self.channel = channel
        self.timeout = timeout
    }

    /// Connects and authenticates (AUTH [user] password) when `credentials` are given.
    public static func connect(_ address: String, group: EventLoopGroup, credentials: Credentials?,
                               parser: RESPParser = RESPParser(), timeout: TimeAmount = .seconds(5)) -> EventLoopFuture<RedisConnection> {
        let loop = group.next()
        guard let (host, port) = parse(address) else { return loop.makeFailedFuture(ClusterError.badAddress(address)) }
        return ClientBootstrap(group: loop)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RESPDecoder(parser: parser)))
                    try channel.pipeline.syncOperations.addHandler(RESPPipelineHandler())
                }
            }
            .connect(host: host, port: port)
            .flatMap { channel in
                let connection = RedisConnection(address: address, channel: channel, timeout: timeout)
                guard let credentials else { return channel.eventLoop.makeSucceededFuture(connection) }
                let auth = ([Array("AUTH".utf8)] + (credentials.user.map { [Array($0.utf8)] } ?? []) + [Array(credentials.password.utf8)])
                return connection.send([auth]).flatMapThrowing { replies in
                    if let e = replies[0].errorMessage {
                        connection.close()
                        throw ClusterError.server("AUTH on \(address): \(e)")
                    }
                    return connection
                }
            }
    }

    /// "host:port" or "[v6]:port".
    static func parse(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    public var isActive: Bool { channel.isActive }

    /// Sends the commands as one pipelined write; the future holds one reply per command (server
    /// errors are `.error` values, not failures; failures are transport errors and timeouts).
    public func send(_ commands: [[[UInt8]]]) -> EventLoopFuture<[RESPValue]> {
        var bytes: [UInt8] = []
        for c in commands { RESPEncoder.append(c.map { [$0] }, to: &bytes) }
        return send(encoded: bytes, count: commands.count)
    }

    /// Sends commands already encoded with `RESPEncoder` (`count` of them).
    public func send(encoded bytes: [UInt8], count: Int) -> EventLoopFuture<[RESPValue]> {
        let loop = channel.eventLoop
        let promises = (0..<count).map { _ in loop.makePromise(of: RESPValue.self) }
        let all = EventLoopFuture.whenAllSucceed(promises.map(\.futureResult), on: loop)
        let channel = self.channel, timeout = self.timeout, address = self.address
        let timer = loop.scheduleTask(in: timeout) {
            for p in promises { p.fail(ClusterError.timeout("\(count) command(s) on \(address)")) }
            channel.close(promise: nil)
        }
        all.whenComplete { _ in timer.cancel() }
        channel.writeAndFlush(RESPRequest(bytes: bytes, replies: promises)).whenFailure { error in
            for p in promises { p.fail(error) }
        }
        return all
    }

    public func close() { channel.close(promise: nil) }
}
