/// Interleaved rANS (range asymmetric numeral systems) with 12-bit probabilities, 32-bit states and
/// 16-bit renormalisation words, after Fabian Giesen's rans_word. Four states take turns symbol by
/// symbol (symbol i uses state i & 3), so the CPU can work on four independent dependency chains.
///
/// Stream layout (little-endian, see schemas/codec-bitstream.md): the four final encoder states
/// (4 x u32), then the renormalisation words (u16) in the order the decoder consumes them. The
/// encoder starts every state at `lowerBound`; the decoder checks it ends there, which catches most
/// corruption that slipped past the container checksum (there is none in a hostile file).
public enum RANS {
    public static let precisionBits: UInt32 = 12
    public static let total: UInt32 = 1 << precisionBits
    public static let lowerBound: UInt32 = 1 << 16
    public static let ways = 4
}

/// A frequency table over `count` symbols whose frequencies sum to `RANS.total`, with a
/// slot-to-symbol lookup for decoding. Every symbol has frequency ≥ 1.
public struct FrequencyTable: Sendable {
    public let freq: [UInt16]
    public let cum: [UInt16]
    /// slot (0..<4096) → symbol.
    public let slotToSymbol: [UInt8]

    public var count: Int { freq.count }

    /// `freqs` must be non-empty, at most 256 entries, each ≥ 1, summing to `RANS.total`.
    public init(freqs: [UInt32]) {
        precondition(!freqs.isEmpty && freqs.count <= 256)
        precondition(freqs.reduce(0, +) == RANS.total && freqs.allSatisfy { $0 >= 1 })
        var c: [UInt16] = []
        c.reserveCapacity(freqs.count)
        var s2s = [UInt8](repeating: 0, count: Int(RANS.total))
        var acc: UInt32 = 0
        for (s, f) in freqs.enumerated() {
            c.append(UInt16(acc))
            for slot in Int(acc)..<Int(acc + f) { s2s[slot] = UInt8(s) }
            acc += f
        }
        freq = freqs.map { UInt16($0) }
        cum = c
        slotToSymbol = s2s
    }

    /// Normalises non-negative weights to frequencies summing to `RANS.total`, each ≥ 1, with
    /// integer arithmetic only after a single deterministic scaling step.
    public static func normalize(_ weights: [Double]) -> [UInt32] {
        let n = weights.count
        precondition(n >= 1 && n <= Int(RANS.total))
        let sum = weights.reduce(0, +)
        let budget = Int(RANS.total) - n // every symbol gets 1 for free
        var f = [UInt32](repeating: 1, count: n)
        var given = 0
        if sum > 0 {
            for i in 0..<n {
                let share = Int((weights[i] / sum * Double(budget)).rounded(.down))
                f[i] += UInt32(share)
                given += share
            }
        }
        // Hand the remainder out one by one to the largest weights (ties: lowest index), so the
        // result depends only on the order of the weights, not on floating-point summation details.
        var rest = budget - given
        if rest > 0 {
            let order = (0..<n).sorted { weights[$0] != weights[$1] ? weights[$0] > weights[$1] : $0 < $1 }
            var k = 0
            while rest > 0 { f[order[k % n]] += 1; rest -= 1; k += 1 }
        }
        return f
    }
}

/// One symbol prepared for division-free encoding (F. Giesen's RansEncSymbol, widened so the
/// reciprocal is exact for every 32-bit state): x / freq = (x * rcp) >> (32 + shift) with
/// rcp = ceil(2^(32 + shift) / freq) and 2^(shift - 1) < freq ≤ 2^shift (Granlund–Montgomery).
struct RANSEncSymbol {
    var rcp: UInt64
    var xMax: UInt32
    var bias: UInt32
    var cmplFreq: UInt32
    var shift: UInt32

    init(freq: UInt32, cum: UInt32) {
        precondition(freq >= 1 && freq < RANS.total)
        var sh: UInt32 = 0
        while (1 << sh) < freq { sh += 1 }
        shift = sh
        rcp = ((UInt64(1) << (32 + UInt64(sh))) + UInt64(freq) - 1) / UInt64(freq)
        xMax = freq << (32 - RANS.precisionBits)
        bias = cum
        cmplFreq = RANS.total - freq
    }

    /// x → (x / freq) * total + x % freq + cum, written as x + cum + (x / freq) * (total − freq).
    @inline(__always)
    func apply(_ x: UInt32) -> UInt32 {
        let p = UInt64(x).multipliedFullWidth(by: rcp)
        let q = UInt32(truncatingIfNeeded: (p.high << (32 - UInt64(shift))) | (p.low >> (32 + UInt64(shift))))
        return x &+ bias &+ q &* cmplFreq
    }
}

/// Encodes symbols with `ways` interleaved states (4, or 32 for lossy format version 5).
/// Symbols are pushed in reverse order (last first).
struct RANSEncoder {
    /// Words written backwards from the end of `buffer`.
    var buffer: UnsafeMutablePointer<UInt16>
    private let capacity: Int
    var pos: Int
    let ways: Int
    /// The `ways` states, each starting at `lowerBound`.
    let states: UnsafeMutablePointer<UInt32>

    /// `maxSymbols` bounds the words written: at most one per symbol.
    init(maxSymbols: Int, ways: Int = RANS.ways) {
        capacity = maxSymbols + 8
        buffer = .allocate(capacity: capacity)
        pos = capacity
        self.ways = ways
        states = .allocate(capacity: ways)
        states.initialize(repeating: RANS.lowerBound, count: ways)
    }

    func deallocate() { buffer.deallocate(); states.deallocate() }

    @inline(__always)
    static func put(_ x: inout UInt32, freq: UInt32, cum: UInt32, buffer: UnsafeMutablePointer<UInt16>, pos: inout Int) {
        // x_max = ((lowerBound >> precision) << 16) * freq
        let xMax = freq << (32 - RANS.precisionBits)
        if x >= xMax {
            pos -= 1
            buffer[pos] = UInt16(truncatingIfNeeded: x)
            x >>= 16
        }
        x = ((x / freq) << RANS.precisionBits) &+ (x % freq) &+ cum
    }

    @inline(__always)
    static func put(_ x: inout UInt32, _ sym: RANSEncSymbol, buffer: UnsafeMutablePointer<UInt16>, pos: inout Int) {
        // Branch-free: the word is always stored below the stream and kept only when needed
        // (there is always room: the buffer holds one word per symbol plus 8).
        let need = x >= sym.xMax
        buffer[pos &- 1] = UInt16(truncatingIfNeeded: x)
        pos &-= need ? 1 : 0
        x = need ? x &>> 16 : x
        x = sym.apply(x)
    }

    /// Encodes one symbol on state `way` (0..<ways).
    @inline(__always)
    mutating func put(way: Int, freq: UInt32, cum: UInt32) {
        Self.put(&states[way], freq: freq, cum: cum, buffer: buffer, pos: &pos)
    }

    /// The finished stream: states, then words in decoding order.
    func finish(into w: inout ByteWriter) {
        for i in 0..<ways { w.append(states[i]) }
        let words = UnsafeBufferPointer(start: buffer + pos, count: capacity - pos)
        w.append(UnsafeRawBufferPointer(words))
    }

    var byteCount: Int { 4 * ways + 2 * (capacity - pos) }
}

/// Decodes a stream made by `RANSEncoder`. Reads never go past the stream: a hostile stream that
/// asks for more words than it has sets `overrun` and the caller throws.
struct RANSDecoder {
    let words: UnsafeRawPointer
    let wordCount: Int
    var pos = 0
    var x0: UInt32, x1: UInt32, x2: UInt32, x3: UInt32
    var overrun = false

    init(_ stream: UnsafeRawBufferPointer) throws {
        var x = (UInt32(0), UInt32(0), UInt32(0), UInt32(0))
        wordCount = try withUnsafeMutableBytes(of: &x) {
            try Self.readStates(stream, ways: 4, into: $0.baseAddress!.assumingMemoryBound(to: UInt32.self))
        }
        (x0, x1, x2, x3) = x
        words = stream.baseAddress! + 16
    }

    /// Reads the `ways` initial states `RANSEncoder.finish` wrote (each must be ≥ `lowerBound`)
    /// into `states` and returns how many 16-bit words follow them.
    static func readStates(_ stream: UnsafeRawBufferPointer, ways: Int, into states: UnsafeMutablePointer<UInt32>) throws -> Int {
        guard stream.count >= 4 * ways, stream.count % 2 == 0 else { throw CodecError.corrupt("rANS stream of \(stream.count) bytes") }
        for i in 0..<ways {
            states[i] = UInt32(littleEndian: stream.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
            guard states[i] >= RANS.lowerBound else { throw CodecError.corrupt("rANS state below its lower bound") }
        }
        return (stream.count - 4 * ways) / 2
    }

    @inline(__always)
    static func refill(_ x: inout UInt32, words: UnsafeRawPointer, wordCount: Int, pos: inout Int, overrun: inout Bool) {
        if x < RANS.lowerBound {
            if pos < wordCount {
                x = (x << 16) | UInt32(UInt16(littleEndian: words.loadUnaligned(fromByteOffset: 2 * pos, as: UInt16.self)))
                pos += 1
            } else {
                overrun = true
                x = (x << 16) | 0xFFFF // keeps the state in range; the caller throws
            }
        }
    }

    /// Decodes one symbol of `table` on state `way` (0...3).
    @inline(__always)
    mutating func get(way: Int, table: FrequencyTable) -> UInt8 {
        @inline(__always) func step(_ x: inout UInt32, _ pos: inout Int, _ overrun: inout Bool) -> UInt8 {
            let slot = Int(x & (RANS.total - 1))
            let s = table.slotToSymbol[slot]
            x = UInt32(table.freq[Int(s)]) &* (x >> RANS.precisionBits) &+ UInt32(slot) &- UInt32(table.cum[Int(s)])
            Self.refill(&x, words: words, wordCount: wordCount, pos: &pos, overrun: &overrun)
            return s
        }
        switch way {
        case 0: return step(&x0, &pos, &overrun)
        case 1: return step(&x1, &pos, &overrun)
        case 2: return step(&x2, &pos, &overrun)
        default: return step(&x3, &pos, &overrun)
        }
    }

    /// True when every word was consumed and every state is back at its start value.
    var finishedCleanly: Bool {
        !overrun && pos == wordCount && x0 == RANS.lowerBound && x1 == RANS.lowerBound
            && x2 == RANS.lowerBound && x3 == RANS.lowerBound
    }
}

extension RANS {
    /// Codes `symbols` with one static table (4 interleaved states). For tests, the fuzzer and
    /// measurements; the codecs drive `RANSEncoder` directly with a table per symbol.
    public static func encode(_ symbols: [UInt8], table: FrequencyTable) -> [UInt8] {
        var enc = RANSEncoder(maxSymbols: symbols.count)
        defer { enc.deallocate() }
        for i in stride(from: symbols.count - 1, through: 0, by: -1) {
            let s = Int(symbols[i])
            precondition(s < table.count, "symbol outside the table")
            enc.put(way: i & 3, freq: UInt32(table.freq[s]), cum: UInt32(table.cum[s]))
        }
        var w = ByteWriter(capacity: enc.byteCount)
        enc.finish(into: &w)
        return w.bytes
    }

    /// Decodes `count` symbols; throws on a stream that is short, long or does not end cleanly.
    public static func decode(_ stream: [UInt8], count: Int, table: FrequencyTable) throws -> [UInt8] {
        try stream.withUnsafeBytes { raw in
            var d = try RANSDecoder(raw)
            var out = [UInt8](repeating: 0, count: count)
            for i in 0..<count { out[i] = d.get(way: i & 3, table: table) }
            guard d.finishedCleanly else { throw CodecError.corrupt("rANS stream does not end where it should") }
            return out
        }
    }
}
