import Testing
import KVTensor
import TestSupport

@Suite struct KVTensorTests {
    @Test func sliceAndConcatenateRoundTrip() throws {
        let kv = try TestSupport.realContext().kv
        let parts = [kv.slice(tokens: 0..<16), kv.slice(tokens: 16..<50), kv.slice(tokens: 50..<96)]
        #expect(parts.map(\.tokens) == [16, 34, 46])
        #expect(try KVTensor.concatenate(parts) == kv)
    }

    @Test func sliceKeepsEachLayersRows() throws {
        let kv = try TestSupport.realContext().kv
        let f = kv.floats()
        let s = kv.slice(tokens: 10..<12).floats()
        let row = kv.shape.rowElements
        // Layer 7, values (index 1), token 11 of the original is token 1 of the slice.
        let original = ((7 * 2 + 1) * kv.tokens + 11) * row
        let sliced = ((7 * 2 + 1) * 2 + 1) * row
        #expect(Array(f[original..<original + row]) == Array(s[sliced..<sliced + row]))
    }

    @Test func halfConversionMatchesTheHardwareTypeForEveryValue() {
        for bits in 0...UInt16.max {
            let f = HalfConversion.floatFromHalfBits(bits)
            let reference = Float(Float16(bitPattern: bits))
            #expect(f.bitPattern == reference.bitPattern || (f.isNaN && reference.isNaN))
            if !f.isNaN { #expect(HalfConversion.halfBitsFromFloat(f) == bits) }
        }
        // Rounding of values between halves agrees with IEEE conversion.
        for x: Float in [1.0009766, 65504.5, 65520, 1e-8, 6.1e-5, -3.14159, 0.333333] {
            #expect(HalfConversion.halfBitsFromFloat(x) == Float16(x).bitPattern, "\(x)")
        }
    }

    @Test func floatsRoundTripForEveryDType() throws {
        for file in ["smollm2_ctx40_bf16.safetensors", "smollm2_ctx40_f32.safetensors", "smollm2_ctx96_f16.safetensors"] {
            let kv = try Safetensors.readContext(TestSupport.fixture(file)).kv
            let again = try KVTensor(shape: kv.shape, tokens: kv.tokens, dtype: kv.dtype, floats: kv.floats())
            #expect(again == kv, "\(file)")
        }
    }

    @Test func wrongByteCountIsRejected() {
        #expect(throws: TensorError.self) {
            try KVTensor(shape: KVShape(layers: 2, kvHeads: 1, headDim: 4), tokens: 3, dtype: .f16, bytes: [0, 1])
        }
    }
}
