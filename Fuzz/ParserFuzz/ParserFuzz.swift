// libFuzzer target for the parsers that read what clients send (tools/fuzz_decoder.sh builds it
// with -sanitize=fuzzer and -DFUZZING). Without FUZZING it is a reproducer: `ParserFuzz FILE...`.
//
// Input byte 0 picks the parser, the rest is its input:
//   0: a safetensors context file (SafetensorsFile, then the context it holds);
//   1: a JSON token query (TokenList);
//   2: a stream of frames (FrameReader), fed in pieces whose sizes come from byte 1.
// Every input must either parse or throw the parser's own error type: a crash, a trap or a
// sanitizer report is a bug.
import KVTensor
import KVFrames

enum ParserFuzz {
    static func run(_ data: UnsafeRawBufferPointer) {
        guard let mode = data.first else { return }
        let input = Array(data.dropFirst())
        switch mode % 3 {
        case 0:
            do {
                let file = try SafetensorsFile(bytes: input)
                let ctx = try file.context()
                precondition(ctx.kv.tokens == ctx.tokens.count && ctx.kv.bytes.count == ctx.kv.shape.elementsPerToken * ctx.kv.tokens * ctx.kv.dtype.byteWidth)
            } catch {
                precondition(error is TensorError, "unexpected error type: \(error)")
            }
        case 1:
            do {
                let tokens = try TokenList.parseJSON(input, maxTokens: 1 << 16)
                precondition(tokens.allSatisfy { $0 >= 0 })
            } catch {
                precondition(error is TensorError, "unexpected error type: \(error)")
            }
        default:
            var reader = FrameReader()
            let step = max(1, Int(input.first ?? 1))
            var offset = 0
            do {
                while offset < input.count {
                    reader.append(input[offset..<min(offset + step, input.count)])
                    offset += step
                    while let (frame, payload) = try reader.next() {
                        precondition(payload.count == frame.payloadLength)
                    }
                }
            } catch {
                precondition(error is TransportError, "unexpected error type: \(error)")
            }
        }
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    ParserFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

// SwiftPM links executables with main renamed to <module>_main; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("ParserFuzz_main")
public func parserFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
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
            bytes.withUnsafeBytes { ParserFuzz.run($0) }
            print("\(path): ok")
        }
    }
}
#endif
