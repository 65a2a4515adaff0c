// libFuzzer target for the RESP parser (tools/fuzz_resp.sh builds it with -sanitize=fuzzer and
// -DFUZZING). Without FUZZING it is a reproducer: `RESPFuzz FILE...` runs each input once.
//
// Every input must parse into values or stop cleanly (nil: needs more bytes; RESPError: bad
// input) under small limits: a crash, a trap, a sanitizer report or an allocation beyond the
// limits (libFuzzer's -rss_limit_mb/-malloc_limit_mb) is a bug. A value that parses must also
// parse identically from any longer buffer and must not parse from any shorter prefix.
import KVRESP

enum RESPFuzz {
    static let parser: RESPParser = {
        var l = RESPParser.Limits()
        l.maxBulkBytes = 1 << 16
        l.maxArrayCount = 1 << 12
        l.maxDepth = 6
        l.maxLineBytes = 256
        return RESPParser(limits: l)
    }()

    static func run(_ data: UnsafeRawBufferPointer) {
        var bytes = Array(data)
        var offset = 0
        while offset < bytes.count {
            let rest = Array(bytes[offset...])
            let parsed: (value: RESPValue, consumed: Int)?
            do { parsed = try parser.parse(rest) } catch { return }
            guard let (value, consumed) = parsed else { return }
            precondition(consumed > 0 && consumed <= rest.count, "consumed \(consumed) of \(rest.count)")
            // Prefix property: fewer bytes never yield a value, more bytes yield the same one.
            if consumed > 1, let shorter = try? parser.parse(Array(rest[0..<(consumed - 1)])) {
                preconditionFailure("a \(consumed - 1)-byte prefix parsed as \(shorter.value)")
            }
            let longer = try? parser.parse(rest + [0x2B])
            precondition(longer?.value == value && longer?.consumed == consumed, "parse depends on trailing bytes")
            offset += consumed
        }
        bytes.removeAll()
    }
}

#if FUZZING
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    RESPFuzz.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

// SwiftPM links executables with main renamed to <module>_main; hand control to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("RESPFuzz_main")
public func respFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v) { data, size in fuzzOneInput(data, size) }
}
#else
import Foundation

@main
struct Reproducer {
    static func main() throws {
        for path in CommandLine.arguments.dropFirst() {
            let d = try Data(contentsOf: URL(fileURLWithPath: path))
            d.withUnsafeBytes { RESPFuzz.run($0) }
            print("\(path): ok")
        }
    }
}
#endif
