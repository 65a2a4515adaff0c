import Foundation
import Synchronization

/// The sidecar's counters and per-step times, rendered in Prometheus text format at `/metrics`.
public final class SidecarMetrics: Sendable {
    /// Steps of a request, in the order they run.
    public static let steps = ["tokenize", "lookup", "decode", "slot_write", "restore", "first_byte", "response", "save", "store"]

    struct State {
        var requests: [String: Int] = [:]       // route
        var fallbacks: [String: Int] = [:]      // reason
        var rejected = 0                        // requests answered 400 before llama-server was called
        var notReady = 0                        // requests answered 503 while waiting for llama-server
        var engineReady = false
        var cancelled = 0                       // requests whose client went away before the answer ended
        var stepSeconds: [String: Double] = [:]
        var stepCount: [String: Int] = [:]
        var promptTokens = 0
        var restoredTokens = 0
        var storedTokens = 0
    }

    private let state = Mutex(State())

    public init() {}

    func countRequest(route: String) { state.withLock { $0.requests[route, default: 0] += 1 } }
    func countRejected() { state.withLock { $0.rejected += 1 } }
    func countNotReady() { state.withLock { $0.notReady += 1 } }
    func setEngineReady(_ ready: Bool) { state.withLock { $0.engineReady = ready } }
    func countCancelled() { state.withLock { $0.cancelled += 1 } }
    func countFallback(_ reason: String) { state.withLock { $0.fallbacks[reason, default: 0] += 1 } }
    func observe(_ step: String, seconds: Double) {
        state.withLock { $0.stepSeconds[step, default: 0] += seconds; $0.stepCount[step, default: 0] += 1 }
    }
    func addTokens(prompt: Int = 0, restored: Int = 0, stored: Int = 0) {
        state.withLock { $0.promptTokens += prompt; $0.restoredTokens += restored; $0.storedTokens += stored }
    }

    /// Fallbacks so far by reason (tests read it).
    public var fallbacks: [String: Int] { state.withLock { $0.fallbacks } }
    public var rejected: Int { state.withLock { $0.rejected } }
    public var cancelled: Int { state.withLock { $0.cancelled } }
    public var restoredTokens: Int { state.withLock { $0.restoredTokens } }
    public var storedTokens: Int { state.withLock { $0.storedTokens } }

    public func render() -> String {
        let s = state.withLock { $0 }
        var out = ""
        out += "# TYPE kvstore_sidecar_requests_total counter\n"
        for (route, n) in s.requests.sorted(by: { $0.key < $1.key }) { out += "kvstore_sidecar_requests_total{route=\"\(route)\"} \(n)\n" }
        out += "# TYPE kvstore_sidecar_rejected_total counter\n"
        out += "kvstore_sidecar_rejected_total \(s.rejected)\n"
        out += "# TYPE kvstore_sidecar_engine_ready gauge\n"
        out += "kvstore_sidecar_engine_ready \(s.engineReady ? 1 : 0)\n"
        out += "# TYPE kvstore_sidecar_not_ready_total counter\n"
        out += "kvstore_sidecar_not_ready_total \(s.notReady)\n"
        out += "# TYPE kvstore_sidecar_cancelled_total counter\n"
        out += "kvstore_sidecar_cancelled_total \(s.cancelled)\n"
        out += "# TYPE kvstore_sidecar_fallbacks_total counter\n"
        for (reason, n) in s.fallbacks.sorted(by: { $0.key < $1.key }) { out += "kvstore_sidecar_fallbacks_total{reason=\"\(reason)\"} \(n)\n" }
        out += "# TYPE kvstore_sidecar_step_seconds summary\n"
        for step in Self.steps {
            out += "kvstore_sidecar_step_seconds_sum{step=\"\(step)\"} \(s.stepSeconds[step] ?? 0)\n"
            out += "kvstore_sidecar_step_seconds_count{step=\"\(step)\"} \(s.stepCount[step] ?? 0)\n"
        }
        out += "# TYPE kvstore_sidecar_tokens_total counter\n"
        out += "kvstore_sidecar_tokens_total{kind=\"prompt\"} \(s.promptTokens)\n"
        out += "kvstore_sidecar_tokens_total{kind=\"restored\"} \(s.restoredTokens)\n"
        out += "kvstore_sidecar_tokens_total{kind=\"stored\"} \(s.storedTokens)\n"
        return out
    }
}
