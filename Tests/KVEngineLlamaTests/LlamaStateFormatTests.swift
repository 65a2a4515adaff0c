import Foundation
import KVEngineLlama
import KVTensor
import TestSupport
import Testing

/// The state format against slot files the real llama-server wrote with SmolLM2.
@Suite(.serialized) struct LlamaStateFormatTests {
    static let model = Result { try GGUFModel(path: LlamaServerProcess.modelPath) }

    @Test func ggufGivesNameHashAndShape() throws {
        let m = try Self.model.get()
        #expect(m.architecture == "llama")
        #expect(m.kvShape == KVShape(layers: 30, kvHeads: 3, headDim: 64))
        #expect(m.sha256.count == 64)
        #expect(m.identity.hasPrefix("llama.cpp/") && m.identity.hasSuffix("@sha256:\(m.sha256.prefix(16))") && !m.identity.contains(" "))
        #expect(m.name.lowercased().contains("smollm2"))
    }

    /// A prompt of `count` tokens of a real text, evaluated in slot 0 and saved; returns the file's bytes.
    static func savedSlot(_ server: LlamaServerProcess, count: Int) async throws -> [UInt8] {
        let text = try String(contentsOfFile: TestSupport.repositoryRoot + "/tools/texts/emma_ch1.txt", encoding: .utf8)
        let tokens = try await server.call("/tokenize", ["content": text, "add_special": true])["tokens"] as! [Int]
        _ = try await server.call("/completion", ["prompt": Array(tokens.prefix(count)), "n_predict": 2, "id_slot": 0,
                                                  "cache_prompt": true, "temperature": 0])
        _ = try await server.call("/slots/0?action=save", ["filename": "real.bin"])
        return try FileIO.readAll(server.slotDirectory + "/real.bin")
    }

    @Test(arguments: [false, true]) func realSlotFileRoundTripsByteIdentical(flashAttention: Bool) async throws {
        let model = try Self.model.get()
        let server = try await LlamaServerProcess(slots: 2, flashAttention: flashAttention)
        defer { server.stop() }
        let bytes = try await Self.savedSlot(server, count: 120)
        let file = try LlamaSlotFile(decoding: bytes, shape: model.kvShape)
        // Flash attention keeps V row-major; without it llama.cpp stores V transposed.
        #expect(file.state.vTransposed == !flashAttention)
        #expect(file.state.cellCount >= 120 && file.state.isContiguousPrefix)
        #expect(file.encoded() == bytes)
        // llama-server packs its token state into the token field; the text tokens are the prompt's.
        let text = try file.textTokens()
        #expect(text.count == file.state.cellCount + 1 || text.count == file.state.cellCount)

        // Through kvstore's tensor and back: the same bytes.
        let context = try file.state.context(tokens: text, count: file.state.cellCount, model: model)
        #expect(context.metadata["model"] == model.identity)
        #expect(context.kv.shape == model.kvShape && context.kv.dtype == .f16)
        let rebuilt = LlamaSlotFile(tokens: file.tokens, state: try LlamaSequenceState(context: context, layout: LlamaEngineLayout(of: file.state)))
        #expect(rebuilt.encoded() == bytes)

        // The other V layout holds the same KV.
        var flipped = file.state
        flipped.vTransposed.toggle()
        let back = try LlamaSequenceState(decoding: flipped.encoded(), shape: model.kvShape)
        #expect(back.kv == file.state.kv && back.vTransposed == flipped.vTransposed)

        // The in-memory form (llama_state_seq_get_data) wraps the same state.
        let memory = file.state.memoryBytes(sourceSeqID: 0)
        #expect(try LlamaSequenceState(decodingMemory: memory, shape: model.kvShape) == file.state)
        #expect(Array(memory[8...]) == Array(bytes[(12 + 4 * file.tokens.count)...]))
    }

    @Test func truncatedAndCorruptFilesFailWithClearErrors() async throws {
        let model = try Self.model.get()
        let server = try await LlamaServerProcess(slots: 1)
        defer { server.stop() }
        let bytes = try await Self.savedSlot(server, count: 40)
        let file = try LlamaSlotFile(decoding: bytes, shape: model.kvShape)

        // Every cut fails with an error, never a trap.
        for cut in Array(0..<64) + stride(from: 64, to: bytes.count, by: max(1, bytes.count / 200)).map({ $0 }) {
            #expect(throws: LlamaStateError.self) { try LlamaSlotFile(decoding: Array(bytes[0..<cut]), shape: model.kvShape) }
        }
        // Trailing bytes (a second cache) are refused.
        #expect(throws: LlamaStateError.self) { try LlamaSlotFile(decoding: bytes + [0, 0, 0, 0], shape: model.kvShape) }

        let state = 12 + 4 * file.tokens.count
        let cellsAt = state + 4 + 4 * file.state.stream
        let afterCells = cellsAt + 4 + 12 * file.state.cellCount
        func patched(_ offset: Int, _ value: UInt32) -> [UInt8] {
            var b = bytes
            withUnsafeBytes(of: value.littleEndian) { for i in 0..<4 { b[offset + i] = $0[i] } }
            return b
        }
        func message(_ b: [UInt8]) -> String {
            do { _ = try LlamaSlotFile(decoding: b, shape: model.kvShape); return "no error" } catch { return "\(error)" }
        }
        #expect(message(patched(0, 0x1234_5678)).contains("magic"))
        #expect(message(patched(4, 2)).contains("version 2"))
        #expect(message(patched(8, 0xFFFF_FFFF)).contains("truncated"))
        #expect(message(patched(cellsAt, 0x7FFF_FFFF)).contains("truncated"))
        #expect(message(patched(afterCells + 4, 29)).contains("29 layers"))
        #expect(message(patched(afterCells + 8, 12)).contains("Q4_K"))         // first layer's K type, unknown here
        #expect(message(patched(afterCells + 8, 8)).contains("384-byte rows of Q8_0"))   // known, but the rows are F16's
        #expect(message(patched(afterCells, 7)).contains("v_trans = 7"))
        #expect(message(patched(cellsAt + 8, 2)).contains("2 sequences"))     // first cell's n_seq_id
        // A model of another shape does not accept it.
        #expect(throws: LlamaStateError.self) { try LlamaSlotFile(decoding: bytes, shape: KVShape(layers: 30, kvHeads: 4, headDim: 64)) }
    }
}
