import ArgumentParser
import KVCodec
import KVTensor

struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Encode a context file to a standalone .kvc file.")

    @Argument(help: "Input safetensors context.") var input: String
    @Option(name: .shortAndLong, help: "Output .kvc file.") var output: String
    @Option(help: "Compression level 0...4 (0 = lossless).") var level: UInt8 = 0
    @Option(help: "Tokens per chunk.") var chunkTokens = 256
    @Option(help: "Codec profile file of the model (default: derived from the KV; see kvstore calibrate).") var profile: String?
    @OptionGroup var threads: ThreadsOption
    @OptionGroup var out: OutputOptions

    struct Report: Encodable { var inputBytes: Int; var outputBytes: Int; var level: UInt8 }

    func run() throws {
        let ctx = try Safetensors.readContext(input)
        let model = try codecProfile(file: profile, for: ctx, model: nil)
        let bytes = try ContextFile.encode(ctx, level: level, chunkTokens: chunkTokens, model: model, threads: threads.count)
        try FileIO.writeAtomically([bytes], to: output, sync: false)
        out.emit(Report(inputBytes: ctx.kv.bytes.count, outputBytes: bytes.count, level: level)) {
            "\(input): \(Format.bytes(ctx.kv.bytes.count)) -> \(Format.bytes(bytes.count)) (\(Format.ratio(ctx.kv.bytes.count, bytes.count)), level \(level))"
        }
    }
}

struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Decode a .kvc file to safetensors.")

    @Argument(help: "Input .kvc file.") var input: String
    @Option(name: .shortAndLong, help: "Output safetensors file.") var output: String
    @OptionGroup var threads: ThreadsOption

    func run() throws {
        let ctx = try ContextFile.decode(FileIO.readAll(input), threads: threads.count)
        try Safetensors.write(ctx, to: output)
        print("\(input): \(ctx.tokens.count) tokens -> \(output)")
    }
}
