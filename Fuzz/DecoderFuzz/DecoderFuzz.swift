// libFuzzer target for the chunk decoder (tools/fuzz_decoder.sh builds it with -sanitize=fuzzer and
// -DFUZZING). Without FUZZING it is a reproducer: `DecoderFuzz FILE...` runs each input once.
//
// Input byte 0 picks the mode:
//   even: the rest is decoded as a whole chunk (header, checksum and all);
//   odd:  a valid chunk of level (byte0 >> 1) % 5 is damaged by the rest, read as
//         (offset u16, xor u8) triples plus an optional truncation, then its checksum is recomputed,
//         so the codec's own validation is what gets exercised (a fuzzer cannot forge XXH64).
// Every input must either decode to a tensor matching its header or throw: a crash, a trap or a
// sanitizer report is a bug.
import KVCodec
import KVTensor

enum DecoderFuzz {
    static let seeds: [[UInt8]] = {
        let shape = KVShape(layers: 2, kvHeads: 1, headDim: 8)
        let tokens = 24
        var s: UInt32 = 12345
        let floats = (0..<(shape.elementsPerToken * tokens)).map { i -> Float in
            s = s &* 1_664_525 &+ 1_013_904_223
            return Float(Int(s >> 20) - 2048) / 512 + (i % 16 == 0 ? 8 : 0)
        }
        let kv = try! KVTensor(shape: shape, tokens: tokens, dtype: .f16, floats: floats)
        return (0...4).map { try! ChunkContainer.encode(kv, level: UInt8($0)) }
    }()

    static func reseal(_ b: inout [UInt8]) {
        guard b.count >= ChunkHeader.size else { return }
        let sum = XXHash64.hash(Array(b[ChunkHeader.size...]), seed: XXHash64.hash(Array(b[0..<40])))
        withUnsafeBytes(of: sum.littleEndian) { for i in 0..<8 { b[40 + i] = $0[i] } }
    }

    static func run(_ data: UnsafeRawBufferPointer) {
        guard let mode = data.first else { return }
        var chunk: [UInt8]
        if mode & 1 == 0 {
            chunk = Array(data.dropFirst())
        } else {
            chunk = seeds[Int(mode >> 1) % seeds.count]
            var i = 1
            while i + 3 <= data.count {
                let off = Int(data[i]) | Int(data[i + 1]) << 8
                if off == 0xFFFF { chunk.removeLast(min(chunk.count, Int(data[i + 2]))); i += 3; continue }
                if !chunk.isEmpty { chunk[off % chunk.count] ^= data[i + 2] }
                i += 3
            }
            reseal(&chunk)
        }
        do {
            let header = try chunk.withUnsafeBytes { try ChunkContainer.header(of: $0) }
            let t = try ChunkContainer.decode(chunk)
            precondition(t.shape == header.shape && t.tokens == header.tokens && t.dtype == header.dtype)
        } catch {
            precondition(error is CodecError, "unexpected error type: \(error)")
        }
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    DecoderFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

// SwiftPM links executables with main renamed to <module>_main; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("DecoderFuzz_main")
public func decoderFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v) { data, size in fuzzOneInput(data, size) }
}
#else
import Foundation

@main struct Reproducer {
    static func main() throws {
        for path in CommandLine.arguments.dropFirst() {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            bytes.withUnsafeBytes { DecoderFuzz.run($0) }
            print("\(path): ok")
        }
    }
}
#endif
