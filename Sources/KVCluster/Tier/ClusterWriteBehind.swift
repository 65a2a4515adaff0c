import Dispatch
import Foundation
import KVStore
import Synchronization

/// Cache mode's cluster writes of local puts, off the response path. A put is acknowledged once
/// the local store holds it; this queue then copies the context's chunk bytes from the local blob
/// files to the cluster (the bytes the put encoded, never a second encoding). During a cluster
/// outage the writes wait, in order, and are written once the cluster is whole again (backfill).
/// Nothing is dropped unless more than `maxPendingTokens` tokens' worth of contexts wait; then the
/// oldest goes, logged and counted. A queued write holds the context's token ids only, so a
/// restart loses the queue (the chunks stay in the local store; a put of the context again
/// writes them).
final class ClusterWriteBehind: Sendable {
    struct Job: Sendable {
        var seq: Int
        var namespace: Namespace
        var tokens: [Int32]
        var levels: [UInt8]
        var id: String
    }

    struct Counters: Sendable, Equatable {
        var queued = 0
        var written = 0
        /// Attempts that met a cluster outage (the write waited and was tried again).
        var retries = 0
        /// Writes given up for an error other than an outage (logged).
        var failed = 0
        /// Writes dropped because too many waited (logged).
        var dropped = 0
        /// Chunk encodings the local store no longer held when their write ran (evicted; logged).
        var chunksLost = 0
        var pending = 0
    }

    private struct State {
        var jobs: [Job] = []
        var pendingTokens = 0
        var nextSeq = 0
        var inFlight: Int?
        var running = false
        /// Set while the queue waits out an outage (its start and end are logged once).
        var waiting = false
        var counters = Counters()
    }

    let local: ChunkStore
    let remote: RedisChunkTier
    let maxPendingTokens: Int
    let log: @Sendable (String) -> Void
    private let state = Mutex(State())
    private let queue = DispatchQueue(label: "kvstore.cluster-writes")
    private let idle: DispatchGroup

    init(local: ChunkStore, remote: RedisChunkTier, maxPendingTokens: Int, idle: DispatchGroup, log: @escaping @Sendable (String) -> Void) {
        self.local = local
        self.remote = remote
        self.maxPendingTokens = maxPendingTokens
        self.idle = idle
        self.log = log
    }

    var counters: Counters {
        state.withLock { s in
            var c = s.counters
            c.pending = s.jobs.count
            return c
        }
    }

    /// Queues the cluster write of a context the local store holds; never blocks.
    func enqueue(namespace: Namespace, tokens: [Int32], levels: [UInt8], id: String) {
        idle.enter()
        var dropped: [Job] = []
        let start = state.withLock { s -> Bool in
            s.jobs.append(Job(seq: s.nextSeq, namespace: namespace, tokens: tokens, levels: levels, id: id))
            s.nextSeq += 1
            s.pendingTokens += tokens.count
            s.counters.queued += 1
            // Over the bound: the oldest waiting write goes (not the one being written).
            while s.pendingTokens > maxPendingTokens, s.jobs.count > 1 {
                let k = s.jobs[0].seq == s.inFlight ? 1 : 0
                guard k < s.jobs.count - 1 else { break }
                let job = s.jobs.remove(at: k)
                s.pendingTokens -= job.tokens.count
                s.counters.dropped += 1
                dropped.append(job)
            }
            defer { s.running = true }
            return !s.running
        }
        for job in dropped {
            log("cluster write of context \(job.id) dropped: more than \(maxPendingTokens) tokens of contexts wait for the cluster; the local store keeps it, the cluster will not have it")
            idle.leave()
        }
        if start { queue.async { self.drain() } }
    }

    /// Copies one context's chunks from the local store to the cluster; returns the chunk
    /// encodings the local store no longer held. Throws `TierUnavailable` during an outage.
    func write(namespace: Namespace, tokens: [Int32], levels: [UInt8]) throws -> Int {
        let match = try local.longestPrefix(tokens, namespace: namespace)
        return try remote.commit(namespace: namespace, tokens: tokens, levels: levels, inputBytes: 0) { i, range, level in
            guard i < match.chunks.count, match.chunks[i].range == range else { return nil }
            return try? local.streamBytes(match.chunks[i], level: level)
        }.unavailable
    }

    private func drain() {
        while let job = state.withLock({ s -> Job? in
            guard let j = s.jobs.first else { s.running = false; return nil }
            s.inFlight = j.seq
            return j
        }) {
            do {
                let lost = try write(namespace: job.namespace, tokens: job.tokens, levels: job.levels)
                let resumed = finish(job) { c in c.written += 1; c.chunksLost += lost }
                if let resumed { log("cluster writes resumed after the outage; \(resumed) contexts still queued") }
                if lost > 0 {
                    log("cluster write of context \(job.id): \(lost) chunk encodings were gone from the local store (evicted) before their write; the cluster holds a shorter prefix")
                }
            } catch let e as TierUnavailable {
                let queued = state.withLock { s -> Int? in
                    s.counters.retries += 1
                    guard !s.waiting else { return nil }
                    s.waiting = true
                    return s.jobs.count
                }
                if let queued { log("cluster writes wait for the cluster (\(e.cause)): \(queued) contexts queued, written once it is whole again") }
                // The cluster client probes in the background and ends the outage; then try again.
                repeat { Thread.sleep(forTimeInterval: 0.1) } while remote.cluster.outage != nil
            } catch {
                _ = finish(job) { $0.failed += 1 }
                log("cluster write of context \(job.id) failed: \(error); the local store keeps it, the cluster does not have it")
            }
        }
    }

    /// Removes a job that is done; returns the queue length when this ended a wait for an outage.
    private func finish(_ job: Job, _ count: (inout Counters) -> Void) -> Int? {
        defer { idle.leave() }
        return state.withLock { s -> Int? in
            if let k = s.jobs.firstIndex(where: { $0.seq == job.seq }) {
                s.jobs.remove(at: k)
                s.pendingTokens -= job.tokens.count
            }
            s.inFlight = nil
            count(&s.counters)
            guard s.waiting else { return nil }
            s.waiting = false
            return s.jobs.count
        }
    }
}
