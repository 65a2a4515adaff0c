import Dispatch
import Foundation

/// Independent pieces of work (chunks code independently) spread over threads. The one way the
/// project fans out coding work: put, encode/decode, the sidecar's restore, the C ABI.
public enum Parallel {
    /// The threads a `--threads` option defaults to: the cores this process may use.
    public static var defaultThreads: Int { ProcessInfo.processInfo.activeProcessorCount }

    /// `body(i)` for every i in 0..<count on up to `threads` threads (the caller's among them); the
    /// results in order, or the first error by index.
    public static func map<T>(_ count: Int, threads: Int, _ body: (Int) throws -> T) throws -> [T] {
        guard count > 0 else { return [] }
        let workers = max(1, min(threads, count))
        if workers == 1 { return try (0..<count).map(body) }
        let results = ResultSlots<T>(count)
        withoutActuallyEscaping(body) { body in
            let work = UncheckedBox(body)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                for i in stride(from: w, to: count, by: workers) { results.set(i, Result { try work.value(i) }) }
            }
        }
        return try results.values()
    }

    /// The same off the caller's (cooperative) thread, for async callers.
    public static func map<T: Sendable>(_ count: Int, threads: Int, _ body: @escaping @Sendable (Int) throws -> T) async throws -> [T] {
        guard count > 0 else { return [] }
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async {
                continuation.resume(with: Result { try map(count, threads: threads, body) })
            }
        }
    }

    /// One result per index, each written by one worker.
    final class ResultSlots<T>: @unchecked Sendable {
        private var slots: [Result<T, Error>?]
        private let lock = NSLock()
        init(_ count: Int) { slots = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ r: Result<T, Error>) { lock.withLock { slots[i] = r } }
        func values() throws -> [T] { try lock.withLock { slots }.map { try $0!.get() } }
    }

    /// The body is only called while `map` waits for every worker, so it may capture non-Sendable state.
    struct UncheckedBox<F>: @unchecked Sendable {
        let value: F
        init(_ value: F) { self.value = value }
    }
}
