/// Encodes commands as RESP arrays of bulk strings (the only form Redis accepts from clients).
public enum RESPEncoder {
    /// Appends `args` as one command. An argument may be given in parts (e.g. a record header and
    /// the container bytes) so large values are copied once, into `out`.
    public static func append(_ args: [[[UInt8]]], to out: inout [UInt8]) {
        out.append(contentsOf: header(UInt8(ascii: "*"), args.count))
        for parts in args {
            out.append(contentsOf: header(UInt8(ascii: "$"), parts.reduce(0) { $0 + $1.count }))
            for p in parts { out.append(contentsOf: p) }
            out.append(13); out.append(10)
        }
    }

    public static func command(_ args: [[UInt8]]) -> [UInt8] {
        var out: [UInt8] = []
        append(args.map { [$0] }, to: &out)
        return out
    }

    static func header(_ type: UInt8, _ n: Int) -> [UInt8] { [type] + Array(String(n).utf8) + [13, 10] }
}
