import ArgumentParser
import Foundation
import Hummingbird
import KVCodec
import KVSidecar
import KVStore
import KVTensor
import KVFrames
import KVTransport
import Logging

struct SidecarCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sidecar",
        abstract: "Serve llama-server's completion routes, restoring stored prompt prefixes into its slots (docs/llama.md).",
        discussion: "llama-server must run with --slot-save-path DIR; pass the same DIR here. Without --remote the embedded store is used.")

    @Option(help: "llama-server's base URL.")
    var llamaServer = "http://127.0.0.1:8080"

    @Option(help: "llama-server's --slot-save-path (the sidecar writes and reads slot files there).")
    var slotSavePath: String

    @Option(help: "The GGUF llama-server loaded (default: the model_path its /props reports).")
    var model: String?

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen = "127.0.0.1:8081"

    @Option(help: "A `kvstore serve` to fetch prefixes from and store chunks to, http://HOST:PORT.")
    var remote: String?

    @Option(help: "Deadline for a remote prefix, ms (the server picks levels per chunk to meet it).")
    var sloMs = 1000.0

    @Option(help: "The engine's prefill time per token, ms, told to a --remote store so it recomputes a chunk only when that is quicker than receiving it late (default: learnt from the requests the engine prefills).")
    var prefillMsPerToken: Double?

    @Option(help: "Compression levels new chunks are stored at.")
    var levels = CodecLevel.storedByDefaultText

    @Option(help: "Threads for decoding a stored prefix's chunks and writing its slot file (default: the cores available).")
    var threads = ProcessInfo.processInfo.activeProcessorCount

    @Option(help: "Write the bound port to this file once listening.")
    var portFile: String?

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw ValidationError("--listen \(listen) is not HOST:PORT")
        }
        let host = String(listen[..<colon])
        guard threads > 0 else { throw ValidationError("--threads \(threads) must be positive") }
        if let p = prefillMsPerToken, !(p > 0 && p <= 60_000) { throw ValidationError("--prefill-ms-per-token \(p) is not in (0, 60000]") }
        let levelList: [UInt8]
        do { levelList = try CodecLevel.parseList(levels) } catch { throw ValidationError("--levels: \(error)") }
        let source: PrefixSource
        if let remote {
            source = .remote(StreamClient(exchange: HTTPExchange(endpoint: try RemoteEndpoint(url: remote))), sloMs: sloMs, levels: levelList)
        } else {
            source = .embedded(try storeOptions.open(create: true), levels: levelList)
        }
        LoggingSystem.bootstrap { StreamLogHandler.standardError(label: $0) }
        var logger = Logger(label: "kvstore.sidecar")
        logger.logLevel = .info
        // Listening starts at once: llama-server may still be loading (or not started yet, as when
        // a service manager starts both); /healthz says 503 until it answers the sidecar's probe.
        let sidecar = try Sidecar(engineURL: llamaServer, slotSavePath: slotSavePath, source: source,
                                  modelPath: model, chunkTokens: storeOptions.chunkTokens ?? 256,
                                  prefillCost: PrefillCost(fixedSecondsPerToken: prefillMsPerToken.map { $0 / 1000 }),
                                  threads: threads, logger: logger)
        let supervisor = Task { await sidecar.superviseEngine() }
        defer { supervisor.cancel() }
        let portFile = portFile, url = llamaServer
        let app = sidecar.application(host: host, port: port) { bound in
            if let portFile { try? FileIO.writeAtomically([Array("\(bound)\n".utf8)], to: portFile, tempDirectory: FileIO.directoryOf(portFile)) }
            FileHandle.standardOutput.write(Data("kvstore sidecar for \(url) on http://\(host):\(bound) (ready once llama-server answers: GET /healthz)\n".utf8))
        }
        try await app.runService()
    }
}
