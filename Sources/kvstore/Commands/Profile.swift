import ArgumentParser
import Foundation
import KVCodec
import KVStore
import KVTensor

/// `kvstore profile add|ls|show|rm`: the codec profiles a store keeps per model (schemas/codec-profile.md).
struct Profile: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manage the per-model codec profiles lossy levels are encoded with.",
        subcommands: [Add.self, ListProfiles.self, Show.self, RemoveProfile.self])

    struct Summary: Encodable {
        var model: String, calibrated: Bool, shape: String, source: String
        init(_ p: CodecProfile) { model = p.model; calibrated = p.calibrated; shape = p.kvShape.description; source = p.source }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Store a profile file for its model (replacing any it had).")
        @Argument(help: "Profile file (JSON, written by tools/calibrate_llama.py or kvstore calibrate).") var file: String
        @Option(help: "File it for this model id instead of the file's own: the same weights under another engine's id (e.g. the numpy oracle's KV of a GGUF calibrated through llama.cpp).")
        var model: String?
        @OptionGroup var storeOptions: StoreOptions
        @OptionGroup var output: OutputOptions
        func run() throws {
            var p = try CodecProfile.load(file)
            if let model {
                guard !model.isEmpty else { throw ValidationError("--model needs a model id") }
                p.model = model
            }
            try storeOptions.open(create: true).addProfile(p)
            output.emit(Summary(p)) { "stored the \(p.calibrated ? "calibrated" : "uncalibrated") profile of \(p.model) (\(p.kvShape))" }
        }
    }

    struct ListProfiles: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List stored profiles.")
        @OptionGroup var storeOptions: StoreOptions
        @OptionGroup var output: OutputOptions
        func run() throws {
            let all = try storeOptions.open().profiles().map(Summary.init)
            output.emit(all) {
                all.isEmpty ? "(no profiles: every model runs on the default)"
                    : all.map { "\($0.model)  \($0.shape)  \($0.calibrated ? "calibrated" : "uncalibrated")" }.joined(separator: "\n")
            }
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a model's profile file (or the default it would get).")
        @Argument(help: "Model id.") var model: String
        @OptionGroup var storeOptions: StoreOptions
        func run() throws {
            guard let p = try storeOptions.open().profile(model: model) else {
                throw ValidationError("no profile stored for \(model): its lossy levels run on the default (kvstore calibrate shows it for a KV file)")
            }
            print(String(decoding: try p.encoded(), as: UTF8.self), terminator: "")
        }
    }

    struct RemoveProfile: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove a model's profile (later puts use the default).")
        @Argument(help: "Model id.") var model: String
        @OptionGroup var storeOptions: StoreOptions
        func run() throws {
            guard try storeOptions.open().removeProfile(model: model) else { throw ValidationError("no profile stored for \(model)") }
            print("removed the profile of \(model)")
        }
    }
}

/// `kvstore calibrate`: what can be measured from KV alone. It writes the default profile a store
/// would derive for the context's model; tools/calibrate_llama.py adds what needs the model run in
/// llama.cpp (per-group sensitivity, key-channel query energy, level scales) and writes a calibrated
/// profile (schemas/codec-profile.md, "Calibration").
struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the KV-derived codec profile of a context's model (tools/calibrate_llama.py measures a calibrated one).")
    @Argument(help: "Context file (safetensors with `kv`).") var context: String
    @Option(name: .shortAndLong, help: "Output profile file.") var output: String
    @Option(help: "Model id (default: the file's __metadata__.model).") var model: String?

    func run() throws {
        let ctx = try Safetensors.readContext(context)
        guard let model = model ?? ctx.metadata["model"], !model.isEmpty else {
            throw ValidationError("\(context) names no model in __metadata__.model; pass --model")
        }
        let p = CodecProfile.uncalibrated(model: model, kv: ctx.kv, metadata: ctx.metadata)
        try FileIO.writeAtomically([p.encoded()], to: output, sync: false)
        print("\(output): uncalibrated profile of \(model) (\(p.kvShape), RoPE undo \(p.rope.map { "θ \($0.theta) \($0.pairs)" } ?? "none"))")
    }
}

/// The profile lossy levels of `ctx` are encoded with outside a store: `--profile FILE`, else the
/// default derived from the KV.
func codecProfile(file: String?, for ctx: KVContext, model: String?) throws -> CodecProfile {
    try CodecProfile.forEncoding(ctx, given: try file.map(CodecProfile.load), model: model)
}
