import ArgumentParser
import Foundation
import KVCluster
import KVStore

struct Pin: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Keep a context from GC eviction, forever or for a while; --list shows pins.")

    @Argument(help: "Context id (or a unique prefix of at least 6 hex digits) or name.")
    var context: String?

    @Option(name: .customLong("for"), help: "Pin expiry, e.g. 12h or 7d (default: never).")
    var duration: String?

    @Flag(help: "List pins instead.")
    var list = false

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var clusterOptions: ClusterOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if list == (context != nil) { throw ValidationError(list ? "--list takes no context" : "give a context to pin, or --list") }
        _ = try usage { try duration.map(DurationText.parse) }
    }

    func run() throws {
        if clusterOptions.cluster != nil { return try runCluster() }
        let store = try storeOptions.open()
        if list {
            let pins = try store.pins()
            output.emit(pins) {
                pins.isEmpty ? "(no pins)" : pins.map { "\($0.context.prefix(16))  \(Pin.describe($0.expires))" }.joined(separator: "\n")
            }
            return
        }
        let seconds = try duration.map(DurationText.parse)
        let pin = try store.pin(context: store.resolveContext(context!), duration: seconds)
        output.emit(pin) { "pinned \(pin.context.prefix(16)) \(Pin.describe(pin.expires))" }
    }

    /// With --cluster: the context's keys in the cluster lose their expiry (docs/cluster.md, "Pins");
    /// in cache mode the local store pins it too when it holds it.
    func runCluster() throws {
        guard duration == nil else { throw ValidationError("--for: a pin in the cluster lasts until unpinned") }
        let (store, tier, cluster) = try ClusterPinning.open(storeOptions, clusterOptions)
        if list {
            let pins = try cluster.pins()
            output.emit(pins.map(\.hex)) { pins.isEmpty ? "(no pins in the cluster)" : pins.map(\.hex).joined(separator: "\n") }
            return
        }
        let id = try ClusterPinning.resolve(context!, store: store)
        let report = try cluster.pin(context: id)
        if let local = tier.localCache, (try? local.resolveContext(id.hex)) != nil { try local.pin(context: id) }
        output.emit(report) { "pinned \(id.hex.prefix(16)) in the cluster: \(report.keysFound) keys, \(report.keysChanged) made persistent" }
    }

    static func describe(_ expires: Int?) -> String {
        guard let expires else { return "until unpinned" }
        return "until " + ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: Double(expires)))
    }
}

struct Unpin: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Let GC evict a pinned context again.")

    @Argument(help: "Context id (or a unique prefix of at least 6 hex digits) or name.")
    var context: String

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var clusterOptions: ClusterOptions

    func run() throws {
        if clusterOptions.cluster != nil {
            let (store, tier, cluster) = try ClusterPinning.open(storeOptions, clusterOptions)
            let id = try ClusterPinning.resolve(context, store: store)
            let report = try cluster.unpin(context: id)
            if let local = tier.localCache { _ = try? local.unpin(context: id) }
            let expiry = cluster.ttlSeconds.map { "\(report.keysChanged) keys expire in \($0) s again" } ?? "no --cluster-ttl: its keys stay without expiry"
            print("unpinned \(id.hex.prefix(16)) in the cluster: \(expiry)")
            return
        }
        let store = try storeOptions.open()
        let id = try store.resolveContext(context)
        guard try store.unpin(context: id) else { throw StoreError.notFound("context \(id.hex.prefix(16)) is not pinned") }
        print("unpinned \(id.hex.prefix(16))")
    }
}

/// What pin and unpin share with --cluster.
enum ClusterPinning {
    static func open(_ storeOptions: StoreOptions, _ clusterOptions: ClusterOptions) throws -> (ChunkStore, any ClusterBackedTier, RedisChunkTier) {
        let store = try storeOptions.open(create: true)
        guard let tier = try clusterOptions.tier(store: store, background: false) else { throw ValidationError("--cluster is required") }
        return (store, tier, tier.clusterTier)
    }

    /// A context id: resolved by the local store (names, id prefixes) when it knows it, else the whole hex id.
    static func resolve(_ text: String, store: ChunkStore) throws -> Hash32 {
        if let id = try? store.resolveContext(text) { return id }
        guard let id = Hash32(hex: text) else { throw ValidationError("\(text): give the whole 64-hex context id (the local store does not know it)") }
        return id
    }
}
