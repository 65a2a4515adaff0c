import ArgumentParser
import Foundation
import KVStore
import KVTensor

/// Options of `get --segments` and `get --vllm-hashes`.
struct SegmentGetOptions: ParsableArguments {
    @Option(parsing: .upToNextOption,
            help: "Segments to assemble, in order: token queries (file or inline JSON), each optionally FILE@POSITION.")
    var segments: [String] = []

    @Option(help: "Shared prefix the segments were encoded after (must be stored); placed first.")
    var prefix: String?

    @Option(help: "Tokens at the start of each moved segment to report for recomputation (CacheBlend-style repair).")
    var recomputeTokens = 16

    @Option(help: "vLLM block hashes (hex), comma-separated or a file with one per line: fetch the stored run they name.")
    var vllmHashes: String?

    /// "query" or "query@position"; a trailing @N is a position only when N is an integer.
    static func parse(_ spec: String) throws -> SegmentRequest {
        if let at = spec.lastIndex(of: "@"), let pos = Int(spec[spec.index(after: at)...]) {
            return SegmentRequest(tokens: try TokenQuery.parse(String(spec[..<at])), position: pos)
        }
        return SegmentRequest(tokens: try TokenQuery.parse(spec))
    }

    func hashes() throws -> [Hash32] {
        let text = vllmHashes!
        let body = FileIO.exists(text) ? String(decoding: try FileIO.readAll(text, limit: 1 << 26), as: UTF8.self) : text
        let parts = body.split(whereSeparator: { $0 == "," || $0.isWhitespace })
        guard !parts.isEmpty else { throw ValidationError("--vllm-hashes lists no hashes") }
        return try parts.enumerated().map { i, p in
            guard let h = Hash32(hex: String(p)) else { throw ValidationError("vLLM hash \(i) is not 64 hex digits: \(p.prefix(70))") }
            return h
        }
    }
}

extension Get {
    struct SegmentsReport: Encodable {
        var tokens: Int
        var prefixTokens: Int
        var segments: [PlacedSegment]
        var recompute: [Int]
        var output: String
    }

    func getSegments(dtype: DType?) throws {
        guard try reuse.adapter() == nil else { throw ValidationError("--segments reads base-model segments; drop the adapter options") }
        let requests = try segmentOptions.segments.map(SegmentGetOptions.parse)
        let prefix = try segmentOptions.prefix.map(TokenQuery.parse) ?? []
        let store = try storeOptions.open()
        let assembly: SegmentAssembly
        do {
            let spaces = try store.resolveNamespaces(model: model, dtype: dtype, salt: reuse.tenant)
            let namespace = try store.longestMatch(prefix, in: spaces)?.namespace ?? spaces[0]
            assembly = try store.assembleSegments(requests, namespace: namespace, prefix: prefix, level: level,
                                                  recomputeTokens: segmentOptions.recomputeTokens)
        } catch StoreError.notFound(let why) {
            out.emit(["error": why]) { "no stored segments: \(why)" }
            throw Exit.miss
        }
        var context = assembly.context
        context.metadata["positions"] = Self.ranges(assembly.positions)
        let recompute = assembly.segments.flatMap(\.recompute)
        context.metadata["recompute"] = "\(recompute)"
        try Safetensors.write(context, to: output)
        let report = SegmentsReport(tokens: context.tokens.count, prefixTokens: assembly.prefixTokens,
                                    segments: assembly.segments, recompute: recompute, output: output)
        out.emit(report) {
            var lines = ["assembled \(context.tokens.count) tokens (\(assembly.prefixTokens) prefix + \(assembly.segments.count) segments) -> \(output)"]
            for (i, s) in assembly.segments.enumerated() {
                lines.append("segment \(i) \(s.id.prefix(16)): \(s.tokens) tokens, position \(s.storedStart) -> \(s.position)\(s.exact ? " (exact)" : ", recompute rows \(s.recompute.first ?? 0)..<\((s.recompute.last ?? -1) + 1)")")
            }
            return lines.joined(separator: "\n")
        }
    }

    /// Positions as compact "a-b,c-d" runs (inclusive).
    static func ranges(_ positions: [Int]) -> String {
        var runs: [String] = []
        var i = 0
        while i < positions.count {
            var j = i
            while j + 1 < positions.count, positions[j + 1] == positions[j] + 1 { j += 1 }
            runs.append("\(positions[i])-\(positions[j])")
            i = j + 1
        }
        return runs.joined(separator: ",")
    }

    struct VLLMReport: Encodable { var matchedBlocks: Int; var queryBlocks: Int; var tokens: Int; var output: String? }

    func getVLLM() throws {
        let hashes = try segmentOptions.hashes()
        let store = try storeOptions.open()
        guard let (context, blocks) = try store.getVLLM(hashes, level: level) else {
            out.emit(VLLMReport(matchedBlocks: 0, queryBlocks: hashes.count, tokens: 0)) { "no stored block for the first of \(hashes.count) vLLM hashes" }
            throw Exit.miss
        }
        try Safetensors.write(context, to: output)
        out.emit(VLLMReport(matchedBlocks: blocks.count, queryBlocks: hashes.count, tokens: context.tokens.count, output: output)) {
            "matched \(blocks.count) of \(hashes.count) vLLM blocks (\(context.tokens.count) tokens) -> \(output)"
        }
    }
}
