import Foundation
import Hummingbird
import KVCodec
import KVStore
import KVTensor
import KVFrames
import KVTransport
import Logging
import Synchronization

/// The HTTP API (schemas/openapi.yaml) over one store.
public final class KVService: Sendable {
    public let store: ChunkStore
    /// Where chunks are stored and read: the store itself, or a cluster tier (docs/cluster.md).
    public let tier: any ChunkTier
    public let config: ServerConfiguration
    public let metrics = ServerMetrics()
    /// Memory that uploads in progress may hold together (`ServerConfiguration.maxUploadInflightBytes`).
    let uploadBudget: UploadBudget
    /// Last measured bandwidth per tenant: the next stream's prior.
    private let priors: TenantPriors

    public init(store: ChunkStore, config: ServerConfiguration, tier: (any ChunkTier)? = nil) {
        self.store = store
        self.tier = tier ?? store
        self.config = config
        self.uploadBudget = UploadBudget(limit: config.maxUploadInflightBytes)
        self.priors = TenantPriors(lifetimeSeconds: config.priorLifetimeSeconds)
    }

    /// Each route in the group of who may call it: with --auth-tokens, the tenants' routes check a
    /// tenant token and the operators' routes an operator token; `/healthz` stays open so
    /// orchestrators can probe without secrets.
    public func addRoutes(to router: Router<ServeContext>) {
        let open = router.group(), operators = router.group(), tenants = router.group()
        if let tokens = config.tokens {
            operators.add(middleware: OperatorAuthMiddleware(metricsTokens: config.metricsTokens))
            tenants.add(middleware: TenantAuthMiddleware(tokens: tokens))
        }
        open.get("/healthz") { [tier] _, _ in try Self.health(tier.health) }
        operators.get("/metrics") { [metrics, tier] _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                     body: ResponseBody(byteBuffer: ByteBuffer(string: metrics.render() + tier.metricsText)))
        }
        tenants.post("/v1/contexts") { request, context in try await self.upload(request, context: context) }
        tenants.post("/v1/lookup") { request, context in try await self.lookup(request, context: context) }
        tenants.post("/v1/stream") { request, context in try await self.stream(request, context: context) }
    }

    /// Each route's one method: another method on a known path is 405 with `Allow` (see `ErrorMiddleware`).
    static let routeMethods: [String: String] = ["/healthz": "GET", "/metrics": "GET", "/v1/contexts": "POST",
                                                 "/v1/lookup": "POST", "/v1/stream": "POST"]

    // MARK: upload

    func upload(_ request: Request, context: ServeContext) async throws -> Response {
        let q = request.uri.queryParameters
        let levels = try Self.levels(q["levels"].map(String.init) ?? CodecLevel.storedByDefaultText)
        let name = q["name"].map(String.init) ?? ""
        let queryModel = q["model"].map(String.init)
        try Self.checkName(name, "context name", maxBytes: NameRules.maxContextNameBytes)
        if let queryModel { try Self.checkModelID(queryModel) }
        let reader = UploadReader(maxBytes: config.maxUploadBytes, budget: uploadBudget)
        let report = try await reader.read(request, check: { header in
            // Judged before the tensors arrive: a context needs a model and a kv tensor.
            guard let model = queryModel ?? header.metadata["model"], !model.isEmpty else {
                throw APIError.badRequest("the context names no model in __metadata__.model; pass ?model=")
            }
            try Self.checkModelID(model)
            guard let kv = header.entries["kv"], kv.shape.count == 5, DType(rawValue: kv.dtype) != nil else {
                throw APIError.badRequest("body is not a safetensors context: it needs a kv tensor [layers, 2, tokens, kv_heads, head_dim] of F16, BF16 or F32")
            }
        }) { file in
            metrics.addReceived(file.bytes.count)
            let ctx = try file.context()
            let model = queryModel ?? ctx.metadata["model"]!
            let namespace = store.namespace(for: ctx, model: model, salt: context.tenant.salt)
            return try tier.storeContext(try store.encode(ctx, namespace: namespace, levels: levels, threads: Parallel.defaultThreads), name: name)
        }
        afterPut(logger: context.logger)
        return try Self.json(report, status: .created)
    }

    /// Client-chosen names are bounded and printable (`NameRules`), and never echoed when refused.
    static func checkName(_ value: String, _ what: String, maxBytes: Int) throws {
        do { try NameRules.check(value, what, maxBytes: maxBytes) } catch let e as StoreError { throw APIError.badRequest(e.description) }
    }

    static func checkModelID(_ value: String) throws {
        do { try NameRules.checkModelID(value) } catch let e as StoreError { throw APIError.badRequest(e.description) }
    }

    /// Watermark eviction after a put (`--max-bytes`): least recently used chunks go once the
    /// store passes 90 %, down to 80 %. A failed pass is logged, never the upload's error.
    func afterPut(logger: Logger) {
        guard let maxBytes = config.maxStoreBytes else { return }
        do {
            if let report = try store.evictIfNeeded(maxBytes: maxBytes) {
                logger.info("evicted \(report.chunksEvicted) chunks to stay under \(maxBytes) bytes")
            }
        } catch {
            logger.error("eviction failed: \(error)")
        }
    }

    static func levels(_ text: String) throws -> [UInt8] {
        do { return try CodecLevel.parseList(text) } catch let e as CodecLevel.ListError { throw APIError.badRequest(e.description) }
    }

    // MARK: lookup

    /// The tenant's namespaces the query could mean (one model and dtype), empty on a miss. Only the
    /// tenant's own namespaces are considered, so another tenant's data can never change the answer.
    func namespaces(for query: TokenBody, tenant: Tenant) throws -> [Namespace] {
        do { return try tier.resolveNamespaces(model: query.model, dtype: query.dtype, salt: tenant.salt) }
        catch StoreError.notFound {
            // During an outage only the local store's namespaces are known: a miss there says nothing.
            if let h = tier.health, let outage = h.outage { throw TierUnavailable(tier: h.tier, cause: outage) }
            return []
        }
        catch StoreError.invalidInput { throw APIError.badRequest("several models are stored; pass model and dtype") }
    }

    func match(_ request: Request, context: ServeContext) async throws -> (TokenBody, Namespace?, PrefixMatch) {
        var request = request
        let body = try await request.collectBody(upTo: config.maxQueryBytes)
        let query = try TokenBody.parse(request, body: body)
        let start = ContinuousClock.now
        let found = try tier.longestPrefix(query.tokens, in: namespaces(for: query, tenant: context.tenant))
        metrics.observeLookup(seconds: (ContinuousClock.now - start).seconds)
        return (query, found?.namespace, found?.match ?? .none)
    }

    func lookup(_ request: Request, context: ServeContext) async throws -> Response {
        let (query, _, match) = try await match(request, context: context)
        return try Self.json(LookupResult(match: match, queryTokens: query.tokens.count))
    }

    // MARK: stream

    func stream(_ request: Request, context: ServeContext) async throws -> Response {
        let arrived = ContinuousClock.now
        let q = request.uri.queryParameters
        let sloMs = try q["slo_ms"].map { s in
            guard let v = Double(s), v > 0, v <= 600_000 else { throw APIError.badRequest("slo_ms \(s) is not in (0, 600000]") }
            return v
        } ?? 1000
        let pinned = try q["level"].map { s in
            guard let l = UInt8(s), CodecLevel.all.contains(l) else { throw APIError.badRequest("level \(s) is not in 0...4") }
            return l
        }
        let hint = try q["bandwidth_hint_mbps"].map { s in
            guard let v = Double(s), v > 0, v < 1e7 else { throw APIError.badRequest("bandwidth_hint_mbps \(s) is not a positive number") }
            return v * 1e6 / 8  // bytes per second
        }
        let recomputeCost = try q["recompute_ms_per_token"].map { s in
            guard let v = Double(s), v > 0, v <= 60_000 else { throw APIError.badRequest("recompute_ms_per_token \(s) is not in (0, 60000]") }
            return v / 1000
        }
        let encoding = q["encoding"].map(String.init) ?? "stored"
        guard ["stored", "raw", "zstd"].contains(encoding) else { throw APIError.badRequest("encoding \(encoding) is not stored, raw or zstd") }
        let (query, namespace, match) = try await match(request, context: context)
        guard let namespace, !match.chunks.isEmpty else { throw APIError(.notFound, "no stored prefix for the query") }
        if let pinned, let missing = match.chunks.firstIndex(where: { $0.record.blob(level: pinned) == nil }) {
            let stored = match.chunks[missing].record.levels.map { String($0.level) }.joined(separator: ",")
            throw APIError.badRequest("chunk \(missing) is not stored at level \(pinned) (stored: \(stored))")
        }
        // Baselines (benchmarks only): every chunk as uncompressed or generically zstd'd raw KV,
        // prepared before the clock starts so only the transfer is timed.
        var payloads: [[UInt8]]?
        var started = arrived
        var prepareMs: Double?
        if encoding != "stored" {
            payloads = try match.chunks.map { chunk in
                guard let stored = try tier.fetchBytes(chunk) else { throw APIError(.conflict, "the prefix changed during the request") }
                let raw = try ChunkContainer.encode(try ChunkContainer.decode(stored), level: 0, codec: RawCodec())
                return encoding == "raw" ? raw : try Zstd.compress(raw, level: 3)
            }
            started = ContinuousClock.now
            prepareMs = (started - arrived).seconds * 1000
        }
        let sizes = payloads.map { p in p.map { [LevelSize(level: 0, bytes: $0.count)] } }
            ?? match.chunks.map { $0.record.levels.map { LevelSize(level: $0.level, bytes: $0.bytes) } }
        let controller = LevelController(deadline: sloMs / 1000 * (1 - config.deadlineSafety), chunks: sizes, pinned: payloads == nil ? pinned : 0,
                                         chunkTokens: match.chunks.map(\.range.count), recomputeSecondsPerToken: recomputeCost)
        let header = StreamHeader(
            matchedTokens: match.tokens, queryTokens: query.tokens.count, chunks: match.chunks.count,
            model: namespace.model, dtype: namespace.dtype.rawValue,
            shape: [namespace.shape.layers, namespace.shape.kvHeads, namespace.shape.headDim],
            chunkTokens: store.chunkTokens, sloMs: sloMs, pinnedLevel: pinned,
            encoding: encoding == "stored" ? nil : encoding, prepareMs: prepareMs)
        let tenant = context.tenant.name
        let measured = hint == nil ? priors.prior(for: tenant) : nil
        let prior = hint ?? measured ?? config.priorBitsPerSecond / 8
        metrics.countPrior(hint != nil ? "hint" : measured != nil ? "tenant" : "default")
        let sender = StreamSender(store: tier, match: match, controller: controller, header: header, started: started, payloads: payloads,
                                  prior: prior, config: config, metrics: metrics,
                                  probe: DeliveryProbe(channel: context.channel),
                                  fill: payloads == nil ? tier.streamFill(match, tokens: query.tokens, namespace: namespace) : nil)
        tier.recordAccess(match)
        return Response(status: .ok, headers: [.contentType: StreamSender.contentType],
                        body: ResponseBody { writer in
                            let estimate = try await sender.send(to: &writer)
                            self.priors.record(estimate, for: tenant)
                            try await writer.finish(nil)
                        })
    }

    // MARK: helpers

    /// `/healthz`: ok; degraded (200) while a cache node serves its local store through a cluster
    /// outage; unavailable (503) when the node serves nothing without the tier.
    static func health(_ h: TierHealth?) throws -> Response {
        struct Body: Encodable {
            struct Tier: Encodable { var tier: String; var state: String; var cause: String }
            var status: String
            var tiers: [Tier]?
        }
        guard let h, let outage = h.outage else { return try json(Body(status: "ok")) }
        let body = Body(status: h.servesLocally ? "degraded" : "unavailable", tiers: [.init(tier: h.tier, state: "unavailable", cause: outage)])
        return try json(body, status: h.servesLocally ? .ok : .serviceUnavailable)
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try enc.encode(value))))
    }
}
