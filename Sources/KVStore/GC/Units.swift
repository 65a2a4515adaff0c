import Foundation

/// Strict parsers for the sizes and durations that GC policies take on the command line and in
/// server configuration. Anything not understood is an error naming the accepted forms.
public enum ByteSize {
    /// `K M G T` (and `KiB MiB GiB TiB`) are powers of 1024, `KB MB GB TB` powers of 1000, `B` or no
    /// unit are bytes. Case-insensitive; a decimal number is allowed (`1.5GiB`), the result is
    /// rounded down to whole bytes.
    public static func parse(_ text: String) throws -> Int {
        let s = text.trimmingCharacters(in: .whitespaces)
        let number = String(s.prefix { $0.isASCII && ($0.isNumber || $0 == ".") })
        let unit = String(s.dropFirst(number.count)).trimmingCharacters(in: .whitespaces).lowercased()
        guard !number.isEmpty, number.filter({ $0 == "." }).count <= 1, number != ".", let value = Double(number) else {
            throw StoreError.invalidInput("size \"\(text)\" is not a number with an optional unit (e.g. 500M, 10G, 1.5GiB)")
        }
        guard let multiplier = units[unit] else {
            throw StoreError.invalidInput("size \"\(text)\" has unknown unit \"\(unit)\"; use B, K, M, G, T, KiB…TiB or KB…TB")
        }
        let bytes = value * multiplier
        guard bytes < 9.0e18 else { throw StoreError.invalidInput("size \"\(text)\" is too large") }
        return Int(bytes)
    }

    static let units: [String: Double] = [
        "": 1, "b": 1,
        "k": 0x1p10, "kib": 0x1p10, "kb": 1e3,
        "m": 0x1p20, "mib": 0x1p20, "mb": 1e6,
        "g": 0x1p30, "gib": 0x1p30, "gb": 1e9,
        "t": 0x1p40, "tib": 0x1p40, "tb": 1e12,
    ]
}

public enum DurationText {
    /// Seconds in `7d`, `12h`, `30m`, `45s`, `2w` or sums such as `1h30m`. Every part needs a unit.
    public static func parse(_ text: String) throws -> Int {
        let s = Array(text.trimmingCharacters(in: .whitespaces).lowercased())
        guard !s.isEmpty else { throw StoreError.invalidInput("empty duration; use e.g. 30m, 12h, 7d") }
        var total = 0
        var i = 0
        while i < s.count {
            var digits = ""
            while i < s.count, s[i].isASCII, s[i].isNumber { digits.append(s[i]); i += 1 }
            guard !digits.isEmpty, let n = Int(digits) else {
                throw StoreError.invalidInput("duration \"\(text)\" is not whole numbers with units s, m, h, d, w (e.g. 30m, 12h, 7d, 1h30m)")
            }
            guard i < s.count else { throw StoreError.invalidInput("duration \"\(text)\": \(digits) needs a unit (s, m, h, d or w)") }
            guard let unit = seconds[s[i]] else {
                throw StoreError.invalidInput("duration \"\(text)\" has unknown unit \"\(s[i])\"; use s, m, h, d or w")
            }
            i += 1
            let (part, o1) = n.multipliedReportingOverflow(by: unit)
            let (sum, o2) = total.addingReportingOverflow(part)
            guard !o1, !o2, sum <= 100 * 365 * 86400 else { throw StoreError.invalidInput("duration \"\(text)\" is longer than 100 years") }
            total = sum
        }
        return total
    }

    static let seconds: [Character: Int] = ["s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400]

    /// `1h30m`-style text for reports.
    public static func format(_ seconds: Int) -> String {
        if seconds == 0 { return "0s" }
        var rest = seconds, out = ""
        for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] where rest >= size {
            out += "\(rest / size)\(unit)"
            rest %= size
        }
        return out
    }
}
