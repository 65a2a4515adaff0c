/// llama-server's slots, handed out one request at a time: a request holds its slot from the
/// restore until the slot is saved, so no other request's prompt can replace the KV in between.
actor SlotPool {
    private var free: [Int]
    /// Requests waiting for a slot, first come first served.
    private var waiters: [(id: Int, continuation: CheckedContinuation<Int, Error>)] = []
    private var nextWaiter = 0
    /// Waiters cancelled before they were queued (the cancellation handler can run first).
    private var cancelledEarly: Set<Int> = []
    /// The tokens each slot's KV holds, as far as the sidecar knows (llama-server reuses them itself).
    private var held: [Int: [Int32]] = [:]

    init(count: Int) { free = Array((0..<count).reversed()) }

    /// A free slot, preferring the one whose KV shares the longest prefix with `tokens`. Waits
    /// while all are taken; a request whose client went away (its task cancelled) stops waiting
    /// and throws `CancellationError`, so it never takes a slot from the requests behind it.
    func acquire(for tokens: [Int32]) async throws -> Int {
        try Task.checkCancellation()
        if !free.isEmpty {
            let best = free.indices.max { commonPrefix(held[free[$0]] ?? [], tokens) < commonPrefix(held[free[$1]] ?? [], tokens) }!
            return free.remove(at: best)
        }
        let id = nextWaiter
        nextWaiter += 1
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { c in
                if cancelledEarly.remove(id) != nil { c.resume(throwing: CancellationError()) } else { waiters.append((id, c)) }
            }
        } onCancel: {
            Task { await self.cancel(waiter: id) }
        }
    }

    private func cancel(waiter id: Int) {
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { cancelledEarly.insert(id); return }
        waiters.remove(at: i).continuation.resume(throwing: CancellationError())
    }

    func release(_ slot: Int, holding tokens: [Int32]?) {
        held[slot] = tokens
        if waiters.isEmpty { free.append(slot) } else { waiters.removeFirst().continuation.resume(returning: slot) }
    }

    /// Slots not held by a request (tests and /healthz read it).
    var freeCount: Int { free.count }

    func tokens(of slot: Int) -> [Int32] { held[slot] ?? [] }
}

func commonPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
    var i = 0
    while i < a.count, i < b.count, a[i] == b[i] { i += 1 }
    return i
}
