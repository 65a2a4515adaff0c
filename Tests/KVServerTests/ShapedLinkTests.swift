import Foundation
import KVTensor
import TestSupport
import Testing

/// A network namespace whose loopback is shaped by a `tbf` qdisc, with the real `kvstore` binary
/// serving and fetching inside it. Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and `ip`/`tc`.
struct ShapedNamespace {
    let name: String

    static var binary: String { TestSupport.binary }

    @discardableResult
    static func run(_ args: [String], allowFailure: Bool = false) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let result = (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        if !allowFailure, result.0 != 0 { throw ShapedError("\(args.joined(separator: " ")) failed: \(result.2)") }
        return result
    }

    /// Whether namespaces and tbf work here (creates and removes a probe namespace).
    static let available: Bool = {
        let probe = "kvs-probe-\(getpid())"
        guard (try? run(["ip", "netns", "add", probe], allowFailure: true).status) == 0 else { return false }
        defer { _ = try? run(["ip", "netns", "del", probe], allowFailure: true) }
        let ok = (try? run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "tbf",
                            "rate", "100mbit", "burst", "32kb", "latency", "50ms"], allowFailure: true).status) == 0
        return ok && FileManager.default.isExecutableFile(atPath: binary)
    }()

    init(rate: String) throws {
        name = "kvs-e2e-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Self.run(["ip", "netns", "add", name])
        // An Ethernet MTU: with lo's 64 KiB MTU, packets larger than the 32 KiB tbf bucket never pass.
        try exec(["ip", "link", "set", "lo", "mtu", "1500", "up"])
        try exec(["tc", "qdisc", "add", "dev", "lo", "root", "tbf", "rate", rate, "burst", "32kb", "latency", "50ms"])
    }

    @discardableResult
    func exec(_ args: [String], allowFailure: Bool = false) throws -> (status: Int32, out: String, err: String) {
        try Self.run(["ip", "netns", "exec", name] + args, allowFailure: allowFailure)
    }

    /// Starts `kvstore serve` inside the namespace; returns the process and its port.
    func serve(store: String, chunkTokens: Int, portFile: String) throws -> (Process, Int) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["ip", "netns", "exec", name, Self.binary, "serve", "--store", store, "--chunk-tokens", String(chunkTokens),
                       "--listen", "127.0.0.1:0", "--port-file", portFile]
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        let start = Date()
        while Date().timeIntervalSince(start) < 30 {
            if let s = try? String(contentsOfFile: portFile, encoding: .utf8), let port = Int(s.trimmingCharacters(in: .whitespacesAndNewlines)) {
                return (p, port)
            }
            guard p.isRunning else { throw ShapedError("kvstore serve exited with \(p.terminationStatus)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        p.terminate()
        throw ShapedError("kvstore serve did not start within 30 s")
    }

    func remove() { _ = try? Self.run(["ip", "netns", "del", name], allowFailure: true) }
}

struct ShapedError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

@Suite(.serialized, .enabled(if: ShapedNamespace.available,
                             "skipped: needs root with `ip netns` and a tbf qdisc, and the kvstore binary (set KVSTORE_BIN)"))
struct ShapedLinkTests {
    static let fixture = TestSupport.fixture("smollm2_ctx96_f16.safetensors")

    struct Report: Decodable {
        struct Chunk: Decodable { var level: String; var bytes: Int }
        var matchedTokens: Int
        var writtenTokens: Int
        var bytes: Int
        var ttlbMs: Double
        var deadlineMet: Bool
        var chunks: [Chunk]
    }

    func fetch(_ ns: ShapedNamespace, port: Int, slo: Int, out: String) throws -> Report {
        let r = try ns.exec([ShapedNamespace.binary, "get", "--remote", "http://127.0.0.1:\(port)", "--tokens", Self.fixture,
                             "--slo-ms", String(slo), "--bandwidth-hint-mbps", "100", "-o", out, "--json"])
        return try JSONDecoder().decode(Report.self, from: Data(r.out.utf8))
    }

    @Test func streamingOverA100MbitLinkAdaptsAndStaysExact() throws {
        let dir = NSTemporaryDirectory() + "kvs-shaped-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let ns = try ShapedNamespace(rate: "100mbit")
        defer { ns.remove() }
        try ShapedNamespace.run([ShapedNamespace.binary, "put", Self.fixture, "--store", dir + "/store", "--chunk-tokens", "16", "--levels", "0"])
        let (server, port) = try ns.serve(store: dir + "/store", chunkTokens: 16, portFile: dir + "/port")
        defer { server.terminate(); server.waitUntilExit() }
        let fixture = try Safetensors.readContext(Self.fixture)

        // A generous deadline: every chunk lossless and bit-exact, at no more than the shaped rate.
        let relaxed = try fetch(ns, port: port, slo: 5000, out: dir + "/relaxed.safetensors")
        print("shaped 100mbit, slo 5000 ms: \(relaxed.chunks.map(\.level)) \(relaxed.bytes) B in \(relaxed.ttlbMs) ms")
        #expect(relaxed.chunks.map(\.level) == Array(repeating: "L0", count: 6))
        #expect(try Safetensors.readContext(dir + "/relaxed.safetensors").kv == fixture.kv)
        let mbps = Double(relaxed.bytes) * 8 / (relaxed.ttlbMs / 1000) / 1e6
        #expect(mbps < 100 * 1.2, "the link is not shaped: \(mbps) Mbit/s")

        // A deadline shorter than the lossless prefix needs at 100 Mbit/s: the late chunks become
        // recompute frames, and what was sent is the exact stored KV.
        let tight = try fetch(ns, port: port, slo: 60, out: dir + "/tight.safetensors")
        print("shaped 100mbit, slo 60 ms: \(tight.chunks.map(\.level)) \(tight.bytes) B in \(tight.ttlbMs) ms, met: \(tight.deadlineMet)")
        #expect(tight.chunks.contains { $0.level == "text" })
        #expect(tight.chunks.allSatisfy { $0.level == "L0" || $0.level == "text" })
        let sent = tight.chunks.prefix { $0.level == "L0" }.count
        #expect(tight.writtenTokens == sent * 16)
        if sent > 0 {
            #expect(try Safetensors.readContext(dir + "/tight.safetensors").kv == fixture.kv.slice(tokens: 0..<(sent * 16)))
        }
    }
}
