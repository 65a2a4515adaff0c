import Foundation
import Testing
import KVCodec
import KVStore
import KVTensor
import TestSupport

/// The store keeps codec profiles per model id and encodes each model's lossy levels with its own.
@Suite struct ProfileStoreTests {
    let dir = TestSupport.scratchDirectory("profiles")
    static let model = "SmolLM2-135M-Instruct"

    /// The single level-2 blob a one-chunk put of `ctx` wrote into a fresh store.
    func storedLevel2(_ ctx: KVContext, profile: CodecProfile?, model: String = Self.model) throws -> Hash32 {
        let root = dir + "/" + UUID().uuidString
        let store = try ChunkStore(root: root, chunkTokens: ctx.tokens.count)
        if let profile { try store.addProfile(profile) }
        try store.put(ctx, namespace: store.namespace(for: ctx, model: model), levels: [2])
        let ids = store.blobs.allIDs()
        try #require(ids.count == 1)
        return ids[0]
    }

    @Test func putsEncodeWithTheModelsProfileOrTheKVDerivedDefault() throws {
        defer { TestSupport.removeTree(dir) }
        let ctx = try TestSupport.realContext()
        let smol = try CodecProfile.load(TestSupport.numpyProfile)
        let calibrated = try ChunkContainer.encode(ctx.kv, level: 2, model: smol)
        let fallback = try ChunkContainer.encode(ctx.kv, level: 2, model: CodecProfile.uncalibrated(model: Self.model, kv: ctx.kv, metadata: ctx.metadata))
        #expect(calibrated != fallback)
        #expect(try storedLevel2(ctx, profile: smol) == Hash32.sha256(calibrated))
        #expect(try storedLevel2(ctx, profile: nil) == Hash32.sha256(fallback))
        // Profiles are keyed by model id, not shape: another model of the same shape gets the default.
        #expect(try storedLevel2(ctx, profile: smol, model: "another-model") == Hash32.sha256(
            ChunkContainer.encode(ctx.kv, level: 2, model: CodecProfile.uncalibrated(model: "another-model", kv: ctx.kv, metadata: ctx.metadata))))
    }

    @Test func statAndListSayWhichModelsRunUncalibrated() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try ChunkStore(root: dir, chunkTokens: 32)
        let ctx = try TestSupport.realContext()
        try store.put(ctx, namespace: store.namespace(for: ctx, model: Self.model), levels: [0])
        #expect(try store.stats().uncalibratedModels == [Self.model])
        #expect(try store.contexts().allSatisfy(\.uncalibrated))
        try store.addProfile(CodecProfile.load(TestSupport.numpyProfile))
        #expect(try store.stats().uncalibratedModels.isEmpty)
        #expect(try store.contexts().allSatisfy { !$0.uncalibrated })
        #expect(try store.profiles().map(\.model) == [Self.model])
        // A stored profile that is itself uncalibrated (kvstore calibrate) still counts as uncalibrated.
        try store.addProfile(CodecProfile.uncalibrated(model: Self.model, kv: ctx.kv))
        #expect(try store.stats().uncalibratedModels == [Self.model])
        #expect(try store.removeProfile(model: Self.model))
        #expect(try store.profile(model: Self.model) == nil)
    }

    @Test func aProfileOfAnotherShapeOrADamagedFileFailsThePutClearly() throws {
        defer { TestSupport.removeTree(dir) }
        let store = try ChunkStore(root: dir, chunkTokens: 32)
        let ctx = try TestSupport.realContext()
        let ns = store.namespace(for: ctx, model: "m")
        try store.addProfile(CodecProfile.flat(model: "m", shape: KVShape(layers: 18, kvHeads: 1, headDim: 256)))
        #expect(throws: StoreError.invalidInput("the codec profile of m is for KV of shape 18x2x1x256, this KV is 30x2x3x64")) {
            try store.put(ctx, namespace: ns, levels: [2])
        }
        // Damage the stored file: the put says so and stores nothing.
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/profiles").filter { $0.hasSuffix(".json") }
        try #require(files.count == 1)
        try Data("{\"format\": 1".utf8).write(to: URL(fileURLWithPath: dir + "/profiles/" + files[0]))
        #expect(throws: StoreError.self) { try store.put(ctx, namespace: ns, levels: [2]) }
        #expect(try store.stats().contexts == 0)
        #expect(try store.stats().uncalibratedModels.isEmpty, "no namespace stored yet")
    }
}
