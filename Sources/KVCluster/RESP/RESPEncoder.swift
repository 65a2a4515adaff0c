/// Encodes commands as RESP arrays of bulk strings (the only form Redis accepts from clients).
public enum RESPEncoder {
    /// Appends `args` as one command. An argument may be given in parts (e.g. a record header and
    /// the container bytes) so large values are copied once, into `out`.
    public static func append(_ args: [[[UInt8]]], to out: inout [UInt8]) {
        header(UInt8(ascii: "*"), args.count, to: &out)
        for parts in args {
            header(UInt8(ascii: "$"), parts.reduce(0) { $0 + $1.count }, to: &out)
            for p in parts { out.append(contentsOf: p) }
            out.append(13); out.append(10)
        }
    }

    public static func command(_ args: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        append(args.map { [$0] }, to: &out)
        return out
    }

    /// `type`, the decimal digits of `n` (≥ 0) and CRLF, without allocating (hot in pipelines).
    static func header(_ type: UInt8, _ n: Int, to out: inout [UInt8]) {
        out.append(type)
        var divisor = 1
        while divisor <= n / 10 { divisor *= 10 }
        var rest = n
        repeat {
            out.append(UInt8(48 + rest / divisor))
            rest %= divisor
            divisor /= 10
        } while divisor > 0
        out.append(13); out.append(10)
    }
}
