import Foundation
import KVTensor

/// Shared helpers for the test targets: fixtures, scratch directories and the real binary.
public enum TestSupport {
    /// Tests/Fixtures, found from this file's location so it works from any working directory.
    public static let fixtures: String = {
        var url = URL(fileURLWithPath: #filePath)
        url.deleteLastPathComponent()
        url.deleteLastPathComponent()
        return url.appendingPathComponent("Fixtures").path
    }()

    public static func fixture(_ name: String) -> String { fixtures + "/" + name }

    /// The repository root (two levels above Tests/Fixtures): profiles/, tools/, Sources/.
    public static var repositoryRoot: String {
        URL(fileURLWithPath: fixtures).deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// A shipped codec profile file, e.g. `profile("SmolLM2-135M-Instruct-Q4_1")`.
    public static func profile(_ model: String) -> String { repositoryRoot + "/profiles/" + model + ".json" }

    /// The calibrated profile of the fixtures' model (SmolLM2-135M-Instruct, numpy KV), frozen: it
    /// was made by the retired numpy calibrator and holds the tables that were Swift constants.
    public static var numpyProfile: String { fixture("smollm2_numpy_profile.json") }

    /// The real SmolLM2 context of 96 tokens (F16) used throughout the tests.
    public static func realContext() throws -> KVContext {
        try Safetensors.readContext(fixture("smollm2_ctx96_f16.safetensors"))
    }

    /// 200 token ids of the text the 96-token fixture was computed from.
    public static func textTokens() throws -> [Int32] {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture("smollm2_ctx96_f16.tokens.json")))
        return try (JSONSerialization.jsonObject(with: data) as! [NSNumber]).map { Int32(truncating: $0) }
    }

    /// A fresh empty directory, removed by the caller with `removeTree`.
    public static func scratchDirectory(_ label: String = "kvstore-test") -> String {
        let path = NSTemporaryDirectory() + "\(label)-\(getpid())-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    public static func removeTree(_ path: String) { try? FileManager.default.removeItem(atPath: path) }

    /// The built `kvstore` binary: $KVSTORE_BIN, else next to the test bundle.
    public static var binary: String {
        if let b = ProcessInfo.processInfo.environment["KVSTORE_BIN"], !b.isEmpty { return b }
        let dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for candidate in [dir, dir.deletingLastPathComponent()] {
            let p = candidate.appendingPathComponent("kvstore").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return ".build/debug/kvstore"
    }

    public struct RunResult: Sendable {
        public var status: Int32
        public var stdout: String
        public var stderr: String
    }

    /// Runs the binary to completion with `arguments`.
    @discardableResult
    public static func run(_ arguments: [String], environment: [String: String] = [:]) throws -> RunResult {
        let p = try start(arguments, environment: environment)
        let out = p.out.fileHandleForReading.readDataToEndOfFile()
        let err = p.err.fileHandleForReading.readDataToEndOfFile()
        p.process.waitUntilExit()
        return RunResult(status: p.process.terminationStatus, stdout: String(decoding: out, as: UTF8.self),
                         stderr: String(decoding: err, as: UTF8.self))
    }

    public struct Running {
        public let process: Process
        public let out: Pipe
        public let err: Pipe
    }

    public static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> Running {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: binary)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        return Running(process: p, out: out, err: err)
    }

    /// A safetensors file's bytes, built from raw parts, for feeding bad input.
    public static func safetensorsBytes(header: String, data: [UInt8]) -> [UInt8] {
        var h = Array(header.utf8)
        while h.count % 8 != 0 { h.append(0x20) }
        var out = withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) }
        out += h
        out += data
        return out
    }

    public static func write(_ bytes: [UInt8], to path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}
