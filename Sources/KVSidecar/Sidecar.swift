import Foundation
import Synchronization
import KVEngineLlama
import KVTensor
import KVFrames
import KVTransport
import Logging
import NIOCore

/// The sidecar in front of one llama-server: per request it restores the longest stored prefix of
/// the prompt into a slot, forwards the request pinned to that slot, and afterwards stores the
/// prompt's new whole chunks from the slot's saved KV. Any failure of its own steps falls back to
/// llama-server's plain prefill; the request itself never fails because of kvstore.
public final class Sidecar: Sendable {
    public let engine: LlamaServerClient
    public let source: PrefixSource
    public let slotSavePath: String
    public let chunkTokens: Int
    public let metrics = SidecarMetrics()
    public let prefillCost: PrefillCost
    /// Threads for decoding a prefix's chunks and building its slot file.
    public let threads: Int
    /// The GGUF llama-server loaded, when the operator names it (else the path its /props reports).
    let modelPath: String?
    let engineState: Mutex<EngineState>
    let logger: Logger

    /// What the sidecar knows of llama-server: waiting for it (with the last reason), or what
    /// its last probe found.
    enum EngineState: Sendable {
        case waiting(String)
        case ready(EngineInfo)
    }

    /// What a probe learns of the running llama-server: its model (identity and KV shape), how
    /// its states are laid out, and its slots.
    public struct EngineInfo: Sendable {
        public let model: GGUFModel
        public let layout: LlamaEngineLayout
        public let modelFile: String
        public let totalSlots: Int
        let modelStamp: String?
        let slots: SlotPool
    }

    /// A sidecar that has not yet seen llama-server: `probe()` or `superviseEngine()` make it ready.
    public init(engineURL: String, slotSavePath: String, source: PrefixSource, modelPath: String? = nil,
                chunkTokens: Int = 256, prefillCost: PrefillCost = PrefillCost(),
                threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                logger: Logger = Logger(label: "kvstore.sidecar")) throws {
        guard threads > 0 else { throw SidecarError.config("threads must be positive") }
        self.threads = threads
        engine = try LlamaServerClient(url: engineURL)
        let chunk = source.chunkTokens ?? chunkTokens
        guard chunk > 0 else { throw SidecarError.config("chunk size must be positive") }
        self.source = source
        self.slotSavePath = slotSavePath
        self.chunkTokens = chunk
        self.prefillCost = prefillCost
        self.modelPath = modelPath
        self.logger = logger
        engineState = Mutex(.waiting("llama-server at \(engineURL) not probed yet"))
    }

    /// A sidecar ready for requests: fails when llama-server does not answer its probe.
    public static func start(engineURL: String, slotSavePath: String, source: PrefixSource, modelPath: String? = nil,
                             chunkTokens: Int = 256, prefillCost: PrefillCost = PrefillCost(),
                             threads: Int = ProcessInfo.processInfo.activeProcessorCount,
                             logger: Logger = Logger(label: "kvstore.sidecar")) async throws -> Sidecar {
        let sidecar = try Sidecar(engineURL: engineURL, slotSavePath: slotSavePath, source: source, modelPath: modelPath,
                                  chunkTokens: chunkTokens, prefillCost: prefillCost, threads: threads, logger: logger)
        _ = try await sidecar.probe()
        return sidecar
    }

    /// What the last probe found, nil while waiting for llama-server.
    public var ready: EngineInfo? {
        engineState.withLock { state -> EngineInfo? in
            if case .ready(let info) = state { return info }
            return nil
        }
    }

    public var model: GGUFModel? { ready?.model }
    public var layout: LlamaEngineLayout? { ready?.layout }

    /// Why the sidecar is not ready, nil when it is.
    public var waitingReason: String? {
        engineState.withLock { state -> String? in
            if case .waiting(let why) = state { return why }
            return nil
        }
    }

    /// Asks llama-server what it runs (`GET /props`), opens that model file (identity and KV
    /// shape) and learns how its states are laid out from one probe slot save; the sidecar is
    /// ready afterwards. The model file is hashed again only when it changed.
    @discardableResult
    public func probe() async throws -> EngineInfo {
        let props = try await engine.props()
        let path = modelPath ?? props.modelPath
        let known = ready
        let model: GGUFModel
        let stamp = Self.fileStamp(path)
        if let known, known.modelFile == path, stamp != nil, stamp == known.modelStamp {
            model = known.model
        } else {
            model = try GGUFModel(path: path)
        }
        // A slot file of such a model holds only the window of its sliding layers: a stored prefix
        // could not be cut shorter. The in-process path (python kvstore.llama) captures all of it.
        guard !model.cacheLayout.hasSlidingLayers else {
            throw SidecarError.config("\(model.name) has sliding-window layers; the sidecar supports models with one KV cache (use the in-process path: docs/python.md)")
        }
        // The probe: a one-token prompt in slot 0, saved, tells stream count and V layout.
        _ = try await engine.json(.POST, "/completion", ["prompt": "Hi", "n_predict": 1, "id_slot": 0, "cache_prompt": true])
        let probe = "kvstore-probe.bin"
        _ = try await engine.slotAction("save", slot: 0, filename: probe)
        defer { try? FileManager.default.removeItem(atPath: slotSavePath + "/" + probe) }
        let state = try LlamaSlotFile.read(slotSavePath + "/" + probe, shape: model.kvShape).state
        // Requests holding slots keep them across a re-probe unless llama-server's slot count changed.
        let slots = known.flatMap { $0.totalSlots == props.totalSlots ? $0.slots : nil } ?? SlotPool(count: props.totalSlots)
        let info = EngineInfo(model: model, layout: LlamaEngineLayout(of: state), modelFile: path, totalSlots: props.totalSlots,
                              modelStamp: stamp, slots: slots)
        engineState.withLock { $0 = .ready(info) }
        metrics.setEngineReady(true)
        logger.info("llama-server ready: \(model.identity), \(info.layout), \(props.totalSlots) slot(s)")
        return info
    }

    /// Marks llama-server as gone (a failed call or health check): requests are answered 503 and
    /// `superviseEngine` probes it again, so a restarted llama-server (maybe with another model or
    /// layout) is learnt anew before the next request.
    func engineLost(_ reason: String) {
        let was = engineState.withLock { s -> Bool in
            defer { s = .waiting(reason) }
            if case .ready = s { return true } else { return false }
        }
        metrics.setEngineReady(false)
        if was { logger.warning("llama-server lost: \(reason); waiting for it") }
    }

    /// Keeps the sidecar's view of llama-server current until the task is cancelled: probes it
    /// while it is not ready (not started, loading its model, restarting), and checks `/health`
    /// while it is. Each change is logged once.
    public func superviseEngine(every interval: Duration = .seconds(1)) async {
        var lastProblem = ""
        while !Task.isCancelled {
            if ready == nil {
                do {
                    try await probe()
                    lastProblem = ""
                } catch {
                    let problem = "\(error)"
                    engineState.withLock { $0 = .waiting(problem) }
                    if problem != lastProblem { logger.info("waiting for llama-server: \(problem)") }
                    lastProblem = problem
                }
            } else {
                do {
                    let (status, body) = try await engine.exchange.call(method: .GET, path: "/health", limit: 1 << 16)
                    if status != 200 { engineLost("GET /health: HTTP \(status) \(String(decoding: body.prefix(200), as: UTF8.self))") }
                } catch { engineLost("GET /health: \(error)") }
            }
            try? await Task.sleep(for: interval)
        }
    }

    /// Size and modification time of a file, to tell whether a model file changed since it was hashed.
    static func fileStamp(_ path: String) -> String? {
        guard let a = try? FileManager.default.attributesOfItem(atPath: path) else { return nil }
        return "\(a[.size] ?? "?")@\((a[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
    }

    /// One request's step times and outcome, logged as one line when it is done.
    struct Trace: Sendable {
        var route: String
        var slot = -1
        var promptTokens = 0
        var restoredTokens = 0
        var storedTokens = 0
        var steps: [(String, Double)] = []
        var notes: [String] = []

        var line: String {
            let times = steps.map { "\($0.0)=\(String(format: "%.1f", $0.1 * 1000))ms" }.joined(separator: " ")
            return "\(route) slot=\(slot) prompt=\(promptTokens) restored=\(restoredTokens) stored=\(storedTokens) \(times)"
                + (notes.isEmpty ? "" : " [\(notes.joined(separator: "; "))]")
        }
    }

    /// Runs `body` as step `name`: its time goes to the trace and the metrics.
    func step<T>(_ name: String, _ trace: inout Trace, _ body: () async throws -> T) async rethrows -> T {
        let start = ContinuousClock.now
        defer {
            let s = (ContinuousClock.now - start).seconds
            trace.steps.append((name, s))
            metrics.observe(name, seconds: s)
        }
        return try await body()
    }

    func fallback(_ reason: String, _ error: Error, _ trace: inout Trace) {
        metrics.countFallback(reason)
        trace.notes.append("\(reason) failed, prefilling: \(error)")
    }

    /// The upstream response: status, content type and the body as it arrives.
    public struct Forwarded: Sendable {
        public var status: Int
        public var contentType: String
        public var restoredTokens: Int
        public var body: AsyncThrowingStream<ByteBuffer, Error>
    }

    /// Handles one completion request (`route` is the upstream path: /completion, /v1/completions
    /// or /v1/chat/completions).
    public func handle(route: String, body: [UInt8]) async throws -> Forwarded {
        metrics.countRequest(route: route)
        var trace = Trace(route: route)
        var request: [String: Any]
        do { request = try Self.requestObject(body) } catch {
            metrics.countRejected()
            throw error
        }
        guard let engineInfo = ready else {
            metrics.countNotReady()
            throw SidecarError.notReady(waitingReason ?? "llama-server is not ready")
        }
        let model = engineInfo.model, slots = engineInfo.slots

        // Tokens of the prompt, by the engine's own tokenizer and template.
        var tokens: [Int32]?
        do {
            tokens = try await step("tokenize", &trace) { try await promptTokens(route: route, request: request) }
        } catch { fallback("tokenize", error, &trace) }
        let prompt = tokens ?? []
        trace.promptTokens = prompt.count
        metrics.addTokens(prompt: prompt.count)

        // The stored prefix, leaving at least one prompt token for the engine to evaluate.
        var stored: PrefixSource.StoredPrefix?
        if prompt.count > 1 {
            do {
                let found = try await step("lookup", &trace) {
                    try await source.lookup(Array(prompt.dropLast()), model: model, layout: engineInfo.layout,
                                      recomputeSecondsPerToken: prefillCost.secondsPerToken)
                }
                if let found { stored = try await step("decode", &trace) { try await source.decode(found, threads: threads) } }
            } catch { fallback("lookup", error, &trace) }
        }
        let slot: Int
        do { slot = try await slots.acquire(for: prompt) } catch {
            clientGone(&trace, "waiting for a slot")
            logger.info("\(trace.line)")
            throw error
        }
        trace.slot = slot
        var releaseHolding: [Int32]? = prompt
        do {
            // Always restored, even when the slot may still hold the prefix: llama-server can
            // clear or reuse slots on its own, so the sidecar's idea of a slot's KV can be stale.
            if let stored {
                try await restore(stored, slot: slot, layout: engineInfo.layout, trace: &trace)
                trace.restoredTokens = stored.tokens.count
                metrics.addTokens(restored: stored.tokens.count)
            }
        } catch {
            fallback("restore", error, &trace)
            releaseHolding = nil
        }

        if Task.isCancelled {
            await slots.release(slot, holding: nil)
            clientGone(&trace, "before forwarding")
            logger.info("\(trace.line)")
            throw CancellationError()
        }

        request["id_slot"] = slot
        request["cache_prompt"] = true
        let forwardBody: [UInt8]
        do { forwardBody = Array(try JSONSerialization.data(withJSONObject: request)) } catch {
            await slots.release(slot, holding: nil)
            metrics.countRejected()
            throw SidecarError.request("the request cannot be re-encoded as JSON (\(error))")
        }

        let (stream, sink) = AsyncThrowingStream<ByteBuffer, Error>.makeStream()
        let head = HeadLatch()
        let sent = ContinuousClock.now
        let storedCount = stored?.tokens.count ?? 0
        let traceBefore = trace, holding = releaseHolding
        // The first byte follows the prefill closely when it is streamed or little is generated.
        let promptFollows = request["stream"] as? Bool == true || ((request["n_predict"] ?? request["max_tokens"]) as? Int).map { $0 <= 4 } == true
        // The completion is never sent twice (llama-server may have started on it).
        let exchange = { var e = engine.exchange; e.retryUnanswered = false; return e }()
        let forward = Task {
            var trace = traceBefore
            var firstByte: Double?
            do {
                try await exchange.send(method: .POST, path: route, contentType: "application/json", body: forwardBody,
                                               onHead: { status, type in head.resolve(.success((status, type))) },
                                               onBody: { piece in
                                                   if firstByte == nil { firstByte = (ContinuousClock.now - sent).seconds }
                                                   sink.yield(piece)
                                               })
                sink.finish()
                head.resolve(.failure(SidecarError.engine("no response head")))
            } catch {
                head.resolve(.failure(error is TransportError ? SidecarError.engine("\(route): \(error)") : error))
                sink.finish(throwing: error)
                // No connection to llama-server (it stopped or restarts): probed again before the next request.
                if !Task.isCancelled, error is TransportError { engineLost("\(route): \(error)") }
            }
            let total = (ContinuousClock.now - sent).seconds
            trace.steps.append(("first_byte", firstByte ?? total))
            trace.steps.append(("response", total))
            metrics.observe("first_byte", seconds: firstByte ?? total)
            if let firstByte, promptFollows { prefillCost.record(tokens: prompt.count - storedCount, seconds: firstByte) }
            metrics.observe("response", seconds: total)
            if Task.isCancelled {
                // The client went away and the upstream connection was closed, which makes llama-server
                // stop the task: the slot holds an unfinished prompt, nothing to save.
                await slots.release(slot, holding: nil)
                clientGone(&trace, "during the response")
            } else {
                await self.afterResponse(prompt: prompt, stored: storedCount, slot: slot, holding: holding, engine: engineInfo, trace: &trace)
            }
            logger.info("\(trace.line)")
        }
        // A client that hangs up cancels its request: while the head is awaited (the prefill), or
        // while the body streams (the response writer stops reading it).
        sink.onTermination = { if case .cancelled = $0 { forward.cancel() } }
        let (status, type) = try await withTaskCancellationHandler {
            try await head.value()
        } onCancel: {
            forward.cancel()
            head.resolve(.failure(CancellationError()))
        }
        return Forwarded(status: status, contentType: type, restoredTokens: storedCount, body: stream)
    }

    /// Notes a request whose client went away before it was answered.
    func clientGone(_ trace: inout Trace, _ when: String) {
        metrics.countCancelled()
        trace.notes.append("client went away \(when)")
    }

    func promptTokens(route: String, request: [String: Any]) async throws -> [Int32]? {
        if route.hasSuffix("/chat/completions") {
            return try await engine.tokenize(try await engine.applyTemplate(request))
        }
        if let text = request["prompt"] as? String { return try await engine.tokenize(text) }
        if let ids = request["prompt"] as? [Int] { return ids.map { Int32(truncatingIfNeeded: $0) } }
        return nil   // several prompts or multimodal input: forwarded as they are
    }

    /// Writes `prefix` as a slot file into llama-server's slot directory (built straight from its
    /// chunks, in one buffer) and restores it into `slot`.
    func restore(_ context: PrefixSource.StoredPrefix, slot: Int, layout: LlamaEngineLayout, trace: inout Trace) async throws {
        let name = "kvstore-restore-\(slot).bin"
        let path = slotSavePath + "/" + name
        try await step("slot_write", &trace) {
            let bytes = try LlamaSlotFile.encoded(tokens: context.tokens, parts: context.parts, layout: layout, threads: threads)
            try FileIO.writeAtomically([bytes], to: path, tempDirectory: slotSavePath, sync: false)
        }
        defer { try? FileManager.default.removeItem(atPath: path) }
        let reply = try await step("restore", &trace) { try await engine.slotAction("restore", slot: slot, filename: name) }
        guard (reply["n_restored"] as? Int) == context.tokens.count else {
            throw SidecarError.engine("restore of \(context.tokens.count) tokens reported \(reply["n_restored"] ?? "nothing")")
        }
    }

    /// After the answer: when the prompt has whole chunks beyond the stored prefix, saves the slot,
    /// frees it, and stores those chunks' KV as the engine computed them.
    func afterResponse(prompt: [Int32], stored: Int, slot: Int, holding: [Int32]?, engine info: EngineInfo, trace: inout Trace) async {
        let model = info.model, slots = info.slots
        let whole = prompt.count > 1 ? (prompt.count - 1) / chunkTokens * chunkTokens : 0
        guard whole > stored else {
            await slots.release(slot, holding: holding)
            return
        }
        let name = "kvstore-save-\(slot).bin"
        let path = slotSavePath + "/" + name
        var file: LlamaSlotFile?
        do {
            file = try await step("save", &trace) {
                _ = try await engine.slotAction("save", slot: slot, filename: name)
                return try LlamaSlotFile.read(path, shape: model.kvShape)
            }
        } catch { fallback("save", error, &trace) }
        try? FileManager.default.removeItem(atPath: path)
        await slots.release(slot, holding: holding)
        guard let file else { return }
        do {
            try await step("store", &trace) {
                let saved = try file.textTokens()
                if let problem = Self.savedPrefixProblem(saved: saved, prompt: prompt, whole: whole) {
                    throw SidecarError.engine(problem)
                }
                let context = try file.state.context(tokens: saved, count: whole, model: model)
                try await source.store(context, quantized: info.layout.isQuantized)
            }
            trace.storedTokens = whole
            metrics.addTokens(stored: whole)
        } catch { fallback("store", error, &trace) }
    }
}

extension Sidecar {
    /// The request body as a JSON object, or a `.request` error saying what it is instead. Checked
    /// before llama-server is called: a body the sidecar cannot read is the client's error (400).
    public static func requestObject(_ body: [UInt8]) throws -> [String: Any] {
        guard !body.isEmpty else { throw SidecarError.request("the request body is empty; a JSON object is expected") }
        // JSON between systems is UTF-8 (RFC 8259); the parser would also take UTF-16 or UTF-32,
        // whose NUL bytes give them away (a NUL is never valid JSON text).
        guard String(validating: body, as: UTF8.self) != nil, !body.contains(0) else {
            throw SidecarError.request("the request body is not valid UTF-8; a JSON object is expected")
        }
        if let problem = Self.structureProblem(body) { throw SidecarError.request("the request body \(problem)") }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: Data(body), options: [.fragmentsAllowed]) } catch {
            throw SidecarError.request("the request body is not valid JSON (\(body.count) bytes); a JSON object is expected")
        }
        guard let object = parsed as? [String: Any] else {
            let kind = parsed is [Any] ? "an array" : parsed is NSNull ? "null" : parsed is String ? "a string" : "a number or boolean"
            throw SidecarError.request("the request body is \(kind), not a JSON object")
        }
        // A number the parser took but JSON cannot carry (an overflow to infinity) could not be forwarded.
        guard JSONSerialization.isValidJSONObject(object) else {
            throw SidecarError.request("the request body holds a value that cannot be forwarded as JSON (a number out of range?)")
        }
        return object
    }

    /// Deeper than any completion request needs; checked before parsing so that a hostile body
    /// cannot exhaust a recursive parser's stack.
    static let maxNesting = 256

    /// What JSON forbids but the parser would take or choke on, found by one scan outside strings:
    /// nesting deeper than `maxNesting`, or a comma before a closing bracket (a trailing comma).
    static func structureProblem(_ body: [UInt8]) -> String? {
        var depth = 0, inString = false, escaped = false
        var last: UInt8 = 0   // the last byte outside strings that is not whitespace
        for b in body {
            if inString {
                if escaped { escaped = false } else if b == UInt8(ascii: "\\") { escaped = true } else if b == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch b {
            case UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r"): continue
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > maxNesting { return "nests arrays or objects deeper than \(maxNesting) levels" }
            case UInt8(ascii: "]"), UInt8(ascii: "}"):
                if last == UInt8(ascii: ",") { return "has a trailing comma; a JSON object is expected" }
                depth -= 1
            default: break
            }
            last = b
        }
        return nil
    }

    /// Why a saved slot cannot give the prompt's first `whole` tokens, or nil when it can. A slot
    /// that holds fewer tokens (the engine stopped early, e.g. a cancelled request) and one that
    /// holds others (the slot was reused) call for different fixes, so they are told apart.
    public static func savedPrefixProblem(saved: [Int32], prompt: [Int32], whole: Int) -> String? {
        precondition(whole <= prompt.count)
        guard saved.count >= whole else {
            return "the saved slot holds \(saved.count) tokens, fewer than the prompt's \(whole) in whole chunks (did the engine stop early?)"
        }
        guard let i = (0..<whole).first(where: { saved[$0] != prompt[$0] }) else { return nil }
        return "the saved slot differs from the prompt at token \(i) of \(whole) (\(saved[i]), the prompt \(prompt[i]))"
    }
}

/// The upstream status and content type, handed from the forwarding task to the route once.
final class HeadLatch: Sendable {
    private let state = Mutex<(result: Result<(Int, String), Error>?, waiter: CheckedContinuation<(Int, String), Error>?)>((nil, nil))

    func resolve(_ r: Result<(Int, String), Error>) {
        let waiter: CheckedContinuation<(Int, String), Error>? = state.withLock { s in
            guard s.result == nil else { return nil }
            s.result = r
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(with: r)
    }

    func value() async throws -> (Int, String) {
        try await withCheckedThrowingContinuation { c in
            let ready: Result<(Int, String), Error>? = state.withLock { s in
                if s.result == nil { s.waiter = c }
                return s.result
            }
            if let ready { c.resume(with: ready) }
        }
    }
}
