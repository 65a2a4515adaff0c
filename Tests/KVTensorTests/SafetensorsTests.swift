import Testing
import KVTensor
import TestSupport

@Suite struct SafetensorsTests {
    @Test func readsRealFixturesOfEveryDType() throws {
        for (file, dtype, tokens) in [("smollm2_ctx96_f16.safetensors", DType.f16, 96),
                                      ("smollm2_ctx40_bf16.safetensors", .bf16, 40),
                                      ("smollm2_ctx40_f32.safetensors", .f32, 40)] {
            let ctx = try Safetensors.readContext(TestSupport.fixture(file))
            #expect(ctx.kv.dtype == dtype)
            #expect(ctx.kv.tokens == tokens)
            #expect(ctx.kv.shape == KVShape(layers: 30, kvHeads: 3, headDim: 64))
            #expect(ctx.metadata["model"] == "SmolLM2-135M-Instruct")
        }
    }

    @Test func serializeRoundTripsBitExactly() throws {
        let ctx = try TestSupport.realContext()
        let bytes = Safetensors.serialize(ctx).flatMap { $0 }
        let again = try SafetensorsFile(bytes: bytes).context()
        #expect(again == ctx)
    }

    /// The 96-token fixture's bytes with its header rewritten by `edit`.
    func withHeader(_ edit: (String) -> String) throws -> [UInt8] {
        let ctx = try TestSupport.realContext()
        let parts = Safetensors.serialize(ctx)
        let header = String(decoding: parts[0].dropFirst(8), as: UTF8.self)
        return TestSupport.safetensorsBytes(header: edit(header), data: parts[1] + parts[2])
    }

    func error(_ bytes: [UInt8]) -> String? {
        do { _ = try SafetensorsFile(bytes: bytes).context(); return nil } catch { return "\(error)" }
    }

    @Test func truncatedFilesAreRejected() throws {
        let bytes = Safetensors.serialize(try TestSupport.realContext()).flatMap { $0 }
        for cut in [0, 4, 7, 8, 20, 200, bytes.count / 2, bytes.count - 1] {
            let message = error(Array(bytes[0..<cut]))
            #expect(message?.contains("truncated") == true, "cut at \(cut): \(message ?? "accepted")")
        }
    }

    @Test func headerLengthBeyondFileIsRejected() {
        var bytes = withUnsafeBytes(of: UInt64(1 << 20).littleEndian) { Array($0) }
        bytes += Array("{}".utf8)
        #expect(error(bytes)?.contains("header length 1048576 runs past the end") == true)
        var huge = withUnsafeBytes(of: UInt64.max.littleEndian) { Array($0) }
        huge += [0x7B, 0x7D]
        #expect(error(huge)?.contains("exceeds") == true)
    }

    @Test func offsetsBeyondDataAreRejected() throws {
        let bytes = try withHeader { $0.replacingOccurrences(of: "\"data_offsets\":[0,", with: "\"data_offsets\":[0,9") }
        #expect(error(bytes)?.contains("data section holds") == true || error(bytes)?.contains("spans") == true)
    }

    @Test func wrongRankIsRejected() throws {
        let bytes = try withHeader { $0.replacingOccurrences(of: "[30, 2, 96, 3, 64]", with: "[60, 96, 3, 64]") }
        #expect(error(bytes) == "bad shape: kv has rank 4, expected 5 [layers, 2, tokens, kv_heads, head_dim]")
    }

    @Test func unknownDTypeIsRejected() throws {
        let bytes = try withHeader { $0.replacingOccurrences(of: "\"F16\"", with: "\"F8_E4M3\"") }
        #expect(error(bytes) == "unknown dtype: tensor kv has dtype F8_E4M3")
        let i16 = try withHeader { $0.replacingOccurrences(of: "\"F16\"", with: "\"I16\"") }
        #expect(error(i16) == "unknown dtype: kv has dtype I16, expected F16, BF16 or F32")
    }

    @Test func tokenCountMismatchIsRejected() throws {
        // 95 tokens in the tokens tensor against 96 in kv (offsets shrunk to stay consistent).
        let bytes = try withHeader {
            $0.replacingOccurrences(of: "\"shape\":[96]", with: "\"shape\":[95]")
                .replacingOccurrences(of: "[2211840,2212224]", with: "[2211840,2212220]")
        }
        #expect(error(bytes) == "mismatch: kv holds 96 tokens but the tokens tensor holds 95")
    }

    @Test func missingTensorsAndBadJSONAreRejected() throws {
        #expect(error(TestSupport.safetensorsBytes(header: "{}", data: [])) == "missing tensor: no `kv` tensor")
        #expect(error(TestSupport.safetensorsBytes(header: "{not json", data: [])) == "bad safetensors header: header is not valid JSON")
        #expect(error(TestSupport.safetensorsBytes(header: "[1,2]", data: [])) == "bad safetensors header: header is not a JSON object")
    }

    @Test func negativeOrOutOfRangeTokenIdsAreRejected() throws {
        var data = [UInt8](repeating: 0, count: 8)
        data.withUnsafeMutableBytes { $0.storeBytes(of: Int64(1 << 40).littleEndian, as: Int64.self) }
        let header = "{\"tokens\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}"
        #expect(throws: TensorError.badShape("token id 1099511627776 at 0 is outside 0...2147483647")) {
            try SafetensorsFile(bytes: TestSupport.safetensorsBytes(header: header, data: data)).tokens()
        }
    }

    @Test func hugeShapesAreRejectedBeforeAllocating() throws {
        let header = "{\"kv\":{\"dtype\":\"F16\",\"shape\":[100000,2,100000,100000,64],\"data_offsets\":[0,0]}}"
        let message = error(TestSupport.safetensorsBytes(header: header, data: []))
        #expect(message?.contains("too large") == true, "\(message ?? "accepted")")
    }
}
