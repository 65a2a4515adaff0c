import Foundation
import Synchronization

/// Server counters and the lookup latency histogram, rendered in Prometheus text format.
public final class ServerMetrics: Sendable {
    struct State {
        var requests: [String: Int] = [:]  // "route|status"
        var bytesSent = 0
        var bytesReceived = 0
        var levels: [String: Int] = [:]  // "0".."4", "recompute"
        var priors: [String: Int] = [:]  // "hint", "tenant", "default"
        var deadlineMet = 0
        var deadlineMissed = 0
        var lookupBuckets: [Int]
        var lookupCount = 0
        var lookupSum = 0.0
        var streamsActive = 0
    }

    /// Lookup latency bucket bounds, seconds.
    static let buckets: [Double] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]
    private let state = Mutex(State(lookupBuckets: Array(repeating: 0, count: ServerMetrics.buckets.count)))

    public init() {}

    /// Known routes by name, so arbitrary paths cannot blow up the label set.
    static func routeLabel(_ path: String) -> String {
        ["/v1/contexts", "/v1/lookup", "/v1/stream", "/metrics", "/healthz"].contains(path) ? path : "other"
    }

    func countRequest(route: String, status: Int) { state.withLock { $0.requests["\(route)|\(status)", default: 0] += 1 } }
    func addSent(_ n: Int) { state.withLock { $0.bytesSent += n } }
    func addReceived(_ n: Int) { state.withLock { $0.bytesReceived += n } }
    func countLevel(_ label: String) { state.withLock { $0.levels[label, default: 0] += 1 } }
    func countPrior(_ source: String) { state.withLock { $0.priors[source, default: 0] += 1 } }
    func countDeadline(met: Bool) { state.withLock { if met { $0.deadlineMet += 1 } else { $0.deadlineMissed += 1 } } }
    func streamStarted() { state.withLock { $0.streamsActive += 1 } }
    func streamEnded() { state.withLock { $0.streamsActive -= 1 } }

    func observeLookup(seconds: Double) {
        state.withLock { s in
            for (i, b) in Self.buckets.enumerated() where seconds <= b { s.lookupBuckets[i] += 1 }
            s.lookupCount += 1
            s.lookupSum += seconds
        }
    }

    public func render() -> String {
        let s = state.withLock { $0 }
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) { out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n" }
        family("kvstore_requests_total", "counter", "HTTP requests by route and status.")
        for (key, n) in s.requests.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "|")
            out += "kvstore_requests_total{route=\"\(parts[0])\",status=\"\(parts[1])\"} \(n)\n"
        }
        family("kvstore_bytes_sent_total", "counter", "Stream bytes accepted by client connections.")
        out += "kvstore_bytes_sent_total \(s.bytesSent)\n"
        family("kvstore_bytes_received_total", "counter", "Upload body bytes received.")
        out += "kvstore_bytes_received_total \(s.bytesReceived)\n"
        family("kvstore_chunk_levels_total", "counter", "Streamed chunks by chosen level (recompute = text fallback).")
        for (level, n) in s.levels.sorted(by: { $0.key < $1.key }) { out += "kvstore_chunk_levels_total{level=\"\(level)\"} \(n)\n" }
        family("kvstore_stream_priors_total", "counter",
               "Streams by where their first bandwidth figure came from: the request's hint, the tenant's last measurement, or --prior-mbps.")
        for source in ["default", "hint", "tenant"] { out += "kvstore_stream_priors_total{source=\"\(source)\"} \(s.priors[source] ?? 0)\n" }
        family("kvstore_stream_deadline_total", "counter", "Finished streams by whether the sender met slo_ms.")
        out += "kvstore_stream_deadline_total{result=\"met\"} \(s.deadlineMet)\n"
        out += "kvstore_stream_deadline_total{result=\"missed\"} \(s.deadlineMissed)\n"
        family("kvstore_streams_active", "gauge", "Streams being sent now.")
        out += "kvstore_streams_active \(s.streamsActive)\n"
        family("kvstore_lookup_seconds", "histogram", "Prefix lookup latency.")
        for (i, b) in Self.buckets.enumerated() { out += "kvstore_lookup_seconds_bucket{le=\"\(b)\"} \(s.lookupBuckets[i])\n" }
        out += "kvstore_lookup_seconds_bucket{le=\"+Inf\"} \(s.lookupCount)\n"
        out += "kvstore_lookup_seconds_sum \(s.lookupSum)\n"
        out += "kvstore_lookup_seconds_count \(s.lookupCount)\n"
        return out
    }
}
