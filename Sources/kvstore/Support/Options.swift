import ArgumentParser
import Foundation
import KVCodec
import KVStore
import KVTensor

struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: "Store directory (default: $KVSTORE_HOME or ~/.local/share/kvstore).")
    var store: String?

    @Option(name: .long, help: "Tokens per chunk; fixed when the store is created (default 256).")
    var chunkTokens: Int?

    /// Opens the store; only commands that write (`create`) make a missing one.
    func open(create: Bool = false) throws -> ChunkStore {
        try ChunkStore(root: store ?? StoreLocation.defaultPath(), chunkTokens: chunkTokens, create: create)
    }
}

struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON on stdout.")
    var json = false

    func emit<T: Encodable>(_ value: T, human: () -> String) {
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: (try? enc.encode(value)) ?? Data(), as: UTF8.self))
        } else {
            print(human())
        }
    }
}

/// Exit statuses beyond 0/1 that scripts rely on.
enum Exit {
    static let miss = ExitCode(3)
}

enum Format {
    static func bytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var v = Double(n), u = 0
        while v >= 1024, u < units.count - 1 { v /= 1024; u += 1 }
        return u == 0 ? "\(n) B" : String(format: "%.1f %@", v, units[u])
    }

    static func ratio(_ a: Int, _ b: Int) -> String { b == 0 ? "-" : String(format: "%.2fx", Double(a) / Double(b)) }
}

/// Reads a token query: a safetensors file with a `tokens` tensor, a file holding a JSON array,
/// or an inline JSON array.
enum TokenQuery {
    static let maxTokens = KVTensor.maxTokens

    static func parse(_ argument: String) throws -> [Int32] {
        if argument.trimmingCharacters(in: .whitespaces).hasPrefix("[") { return try json(Array(argument.utf8)) }
        let bytes = try FileIO.readAll(argument, limit: 1 << 32)
        if bytes.first(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x09 || $0 == 0x0D) }) == UInt8(ascii: "[") {
            return try json(bytes)
        }
        return try SafetensorsFile(bytes: bytes).tokens()
    }

    static func json(_ bytes: [UInt8]) throws -> [Int32] {
        do { return try TokenList.parseJSON(bytes, maxTokens: maxTokens) } catch let e as TensorError { throw ValidationError(e.detail) }
    }
}

func parseLevels(_ text: String) throws -> [UInt8] {
    do { return try CodecLevel.parseList(text) } catch let e as CodecLevel.ListError { throw ValidationError(e.description) }
}

/// `--threads`: how many threads code chunks (they are independent), the cores available by default.
struct ThreadsOption: ParsableArguments {
    @Option(help: "Threads that encode or decode chunks (default: the cores available).")
    var threads: Int?

    var count: Int { threads ?? Parallel.defaultThreads }

    func validate() throws {
        if let threads, !(1...1024).contains(threads) { throw ValidationError("--threads must be in 1...1024") }
    }
}
