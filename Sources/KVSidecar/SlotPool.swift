/// llama-server's slots, handed out one request at a time: a request holds its slot from the
/// restore until the slot is saved, so no other request's prompt can replace the KV in between.
actor SlotPool {
    private var free: [Int]
    private var waiters: [CheckedContinuation<Int, Never>] = []
    /// The tokens each slot's KV holds, as far as the sidecar knows (llama-server reuses them itself).
    private var held: [Int: [Int32]] = [:]

    init(count: Int) { free = Array((0..<count).reversed()) }

    /// A free slot, preferring the one whose KV shares the longest prefix with `tokens`.
    func acquire(for tokens: [Int32]) async -> Int {
        if !free.isEmpty {
            let best = free.indices.max { commonPrefix(held[free[$0]] ?? [], tokens) < commonPrefix(held[free[$1]] ?? [], tokens) }!
            return free.remove(at: best)
        }
        return await withCheckedContinuation { waiters.append($0) }
    }

    func release(_ slot: Int, holding tokens: [Int32]?) {
        held[slot] = tokens
        if waiters.isEmpty { free.append(slot) } else { waiters.removeFirst().resume(returning: slot) }
    }

    func tokens(of slot: Int) -> [Int32] { held[slot] ?? [] }
}

func commonPrefix(_ a: [Int32], _ b: [Int32]) -> Int {
    var i = 0
    while i < a.count, i < b.count, a[i] == b[i] { i += 1 }
    return i
}
