import CLMDB
import Foundation
import KVCodec
import KVTensor

/// The store: chunks of contexts encoded by `KVCodec`, kept as content-addressed blobs, and indexed
/// in LMDB by prefix hash. Safe to use from several processes at once.
///
/// Invariants (see schemas/store.md):
/// - an index blob record exists ⇒ its file exists; a file may exist without a record (an orphan
///   left by a crash before commit), which fsck/gc collect after a grace period;
/// - blob files are removed only inside an index write transaction (moved aside, then deleted after
///   commit), and a put re-creates any file it references whose record it creates;
/// - a context's chunk records hold `refs` (contexts through them) and blob records hold `refs`
///   (chunk encodings using them); nothing referenced is ever removed.
public final class ChunkStore: @unchecked Sendable {
    public let root: String
    public let chunkTokens: Int
    public let blobs: BlobStore
    let env: LMDBEnvironment
    let chunkDB, blobDB, contextDB, partialDB, namespaceDB: MDB_dbi

    /// Seconds since 1970; injectable for tests of time-based policies.
    public var clock: @Sendable () -> Int = { Int(Date().timeIntervalSince1970) }
    /// Access times are refreshed at most this often, so reads rarely write.
    public var accessGranularity = 60

    public static let defaultChunkTokens = 256
    public static let databaseNames = ["chunks", "blobs", "contexts", "partials", "namespaces", "pins", "segments", "vllm"]

    struct Config: Codable {
        var format: Int
        var chunk_tokens: Int
    }

    /// Opens the store at `root`, creating it on first use when `create` (writers do; read-only
    /// commands pass false, so a mistyped path is an error rather than a new empty store).
    /// `chunkTokens` is fixed when the store is created; asking for another value later is an error.
    public init(root: String, chunkTokens: Int? = nil, mapSize: Int = 1 << 36, create: Bool = true) throws {
        self.root = root
        if !create, !FileIO.exists(root + "/config.json") {
            throw StoreError.notFound("no store at \(root) (put or serve creates one)")
        }
        if let c = chunkTokens, !(1...ChunkContainer.maxTokens).contains(c) {
            throw StoreError.config("chunk size \(c) is outside 1...\(ChunkContainer.maxTokens)")
        }
        do {
            for dir in [root, root + "/objects", root + "/tmp", root + "/index"] where !FileIO.exists(dir) {
                try FileIO.makeDirectories(dir)
            }
        } catch let e as TensorError { throw StoreError.notWritable(e.detail) }
        guard access(root, W_OK) == 0 else { throw StoreError.notWritable("\(root): \(FileIO.errnoMessage())") }
        let configPath = root + "/config.json"
        if FileIO.exists(configPath) {
            let config: Config
            do { config = try JSONDecoder().decode(Config.self, from: Data(FileIO.readAll(configPath, limit: 1 << 16))) }
            catch { throw StoreError.config("\(configPath) is unreadable: \(error)") }
            guard config.format == 1 else { throw StoreError.config("store format \(config.format), this build reads 1") }
            if let c = chunkTokens, c != config.chunk_tokens {
                throw StoreError.config("store at \(root) uses \(config.chunk_tokens)-token chunks, not \(c)")
            }
            self.chunkTokens = config.chunk_tokens
        } else {
            let c = chunkTokens ?? Self.defaultChunkTokens
            let json = try JSONEncoder().encode(Config(format: 1, chunk_tokens: c))
            do { try FileIO.writeAtomically([Array(json)], to: configPath, tempDirectory: root + "/tmp") }
            catch let e as TensorError { throw StoreError.notWritable(e.detail) }
            self.chunkTokens = c
        }
        blobs = BlobStore(root: root)
        env = try LMDBEnvironment(path: root + "/index", mapSize: mapSize, databases: Self.databaseNames)
        chunkDB = env.database("chunks")
        blobDB = env.database("blobs")
        contextDB = env.database("contexts")
        partialDB = env.database("partials")
        namespaceDB = env.database("namespaces")
    }

    public func namespace(for context: KVContext, model: String, adapter: String? = nil, salt: String? = nil) -> Namespace {
        Namespace(model: model, dtype: context.kv.dtype, shape: context.kv.shape, chunkTokens: chunkTokens, adapter: adapter, salt: salt)
    }
}

