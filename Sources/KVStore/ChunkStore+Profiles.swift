import Foundation
import KVCodec
import KVTensor

/// Codec profiles kept per model identity: `profiles/<sha256 of the model id>.json` under the store
/// root, each a profile file as `kvstore profile add` was given it (schemas/codec-profile.md).
/// Puts and uploads encode with the model's profile; a model without one gets a profile derived
/// from the KV being stored (`CodecProfile.uncalibrated`), which is not kept.
extension ChunkStore {
    var profilesDirectory: String { root + "/profiles" }

    func profilePath(model: String) -> String {
        "\(profilesDirectory)/\(Hash32.sha256(Array(model.utf8)).hex).json"
    }

    /// Stores (or replaces) the profile of `profile.model`. Chunks already stored keep their bytes.
    public func addProfile(_ profile: CodecProfile) throws {
        try NameRules.checkModelID(profile.model)
        try profile.validate()
        do {
            if !FileIO.exists(profilesDirectory) { try FileIO.makeDirectories(profilesDirectory) }
            try FileIO.writeAtomically([profile.encoded()], to: profilePath(model: profile.model), tempDirectory: blobs.tempDirectory)
        } catch let e as TensorError { throw StoreError.notWritable(e.detail) }
    }

    /// The stored profile of `model`, nil if it has none.
    public func profile(model: String) throws -> CodecProfile? {
        let path = profilePath(model: model)
        guard FileIO.exists(path) else { return nil }
        let p: CodecProfile
        do { p = try CodecProfile.load(path) } catch { throw StoreError.config("codec profile of \(model): \(error)") }
        guard p.model == model else { throw StoreError.config("\(path) holds the profile of \(p.model), not \(model)") }
        return p
    }

    @discardableResult
    public func removeProfile(model: String) throws -> Bool {
        let path = profilePath(model: model)
        guard FileIO.exists(path) else { return false }
        guard unlink(path) == 0 else { throw StoreError.notWritable("cannot remove \(path): \(FileIO.errnoMessage())") }
        return true
    }

    /// Every stored profile, by model id.
    public func profiles() throws -> [CodecProfile] {
        try BlobStore.listDirectory(profilesDirectory).filter { $0.hasSuffix(".json") && !$0.hasPrefix(".") }.sorted()
            .map { name in
                do { return try CodecProfile.load("\(profilesDirectory)/\(name)") }
                catch { throw StoreError.config("codec profile \(name): \(error)") }
            }
            .sorted { $0.model < $1.model }
    }

    /// What lossy levels of `context` are encoded with: the model's stored profile, which must be
    /// for the context's shape, else one derived from this KV.
    public func codecProfile(for context: KVContext, model: String) throws -> CodecProfile {
        guard let p = try profile(model: model) else {
            return CodecProfile.uncalibrated(model: model, kv: context.kv, metadata: context.metadata)
        }
        do { try p.check(matches: context.kv.shape) } catch { throw StoreError.invalidInput("\(error)") }
        return p
    }

    /// The models of `models` (deduplicated, sorted) with no readable calibrated profile stored.
    func uncalibratedModels(_ models: [String]) -> [String] {
        Set(models).sorted().filter { model in (try? profile(model: model))??.calibrated != true }
    }
}
