import ArgumentParser
import Foundation
import Hummingbird
import KVServer
import KVCluster
import KVStore
import KVTensor

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the store over HTTP: upload, prefix lookup, and deadline-aware streaming (schemas/openapi.yaml).",
        discussion: "Without --auth-tokens only loopback addresses are allowed.")

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen = "127.0.0.1:7070"

    @Option(help: "File of `TOKEN TENANT` lines; every request then needs `Authorization: Bearer TOKEN` and sees only its tenant's data.")
    var authTokens: String?

    @Option(help: "Largest upload body in bytes.")
    var maxUploadBytes = 1 << 30

    @Option(help: "Upload bytes all requests in progress may hold in memory together; past it uploads get 503.")
    var maxUploadInflightBytes = 2 << 30

    @Option(help: "File of `TOKEN NAME` lines for operators: with --auth-tokens, only these may read /metrics.")
    var metricsTokens: String?

    @Option(help: "Socket send buffer per connection, bytes (small keeps the bandwidth measurement honest).")
    var sendBuffer = 128 << 10

    @Option(help: "Bandwidth assumed before a stream has measured any, Mbit/s.")
    var priorMbps = 100.0

    @Option(help: "Seconds a tenant's measured bandwidth serves as its next stream's prior (0: never).")
    var priorLifetime = 60.0

    @Option(help: "Fraction of each deadline kept in reserve for what the server cannot measure.")
    var deadlineSafety = 0.1

    @Option(help: "Evict least-recently used contexts once the store exceeds this many bytes.")
    var maxBytes: Int?

    @Option(help: "Write the bound port to this file once listening (for scripts using port 0).")
    var portFile: String?

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var clusterOptions: ClusterOptions

    func run() async throws {
        var config = ServerConfiguration()
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw ValidationError("--listen \(listen) is not HOST:PORT")
        }
        config.host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        config.port = port
        config.tokens = try authTokens.map { try TokenTable(file: $0) }
        config.maxUploadBytes = maxUploadBytes
        config.maxUploadInflightBytes = maxUploadInflightBytes
        config.metricsTokens = try metricsTokens.map { try TokenTable(file: $0) }
        guard maxUploadInflightBytes >= maxUploadBytes else { throw ValidationError("--max-upload-inflight-bytes must be at least --max-upload-bytes") }
        config.sendBufferBytes = sendBuffer
        config.priorBitsPerSecond = priorMbps * 1e6
        guard priorLifetime >= 0, priorLifetime.isFinite else { throw ValidationError("--prior-lifetime must be 0 or more seconds") }
        config.priorLifetimeSeconds = priorLifetime
        config.maxStoreBytes = maxBytes
        guard (0..<1).contains(deadlineSafety) else { throw ValidationError("--deadline-safety must be in 0..<1") }
        config.deadlineSafety = deadlineSafety
        do { try config.validate() } catch let e as ServeError { throw ValidationError(e.description) }
        let store = try storeOptions.open(create: true)
        let tier = try clusterOptions.tier(store: store, background: true)
        // What the cluster's eviction policy means for expiries and pins, said once at startup.
        for warning in tier?.clusterTier.policyWarnings() ?? [] {
            FileHandle.standardError.write(Data("kvstore: warning: \(warning)\n".utf8))
        }
        let service = KVService(store: store, config: config, tier: tier.map { $0 as any ChunkTier })
        let host = config.host, portFile = portFile, tenants = config.tokens?.count
        let app = try service.application { bound in
            if let portFile { try? FileIO.writeAtomically([Array("\(bound)\n".utf8)], to: portFile, tempDirectory: FileIO.directoryOf(portFile)) }
            let auth = tenants.map { " (\($0) tokens)" } ?? " (no auth, loopback only)"
            FileHandle.standardOutput.write(Data("kvstore serving \(service.store.root) on http://\(host):\(bound)\(auth)\n".utf8))
        }
        try await app.runService()
    }
}
