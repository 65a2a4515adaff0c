/// Bounds on the names clients choose. They end up in index keys, listings, logs and error
/// messages, so they are short and printable, and a refused name is never echoed back.
public enum NameRules {
    /// Model ids are identifiers: `[A-Za-z0-9._:/@+-]`, 1 to 256 characters (schemas/openapi.yaml, ModelID).
    public static let maxModelBytes = 256
    /// Context names are free text without control characters or line breaks.
    public static let maxContextNameBytes = 1024

    public static func checkModelID(_ value: String) throws {
        guard !value.isEmpty, value.utf8.count <= maxModelBytes else {
            throw StoreError.invalidInput("model id must be 1 to \(maxModelBytes) characters")
        }
        guard value.utf8.allSatisfy(isModelIDByte) else {
            throw StoreError.invalidInput("model id may hold only letters, digits and . _ : / @ + -")
        }
    }

    /// Throws `invalidInput` naming `what` when `value` is longer than `maxBytes` UTF-8 bytes or holds
    /// a control character, a line separator or an unassigned or private-use code point.
    public static func check(_ value: String, _ what: String, maxBytes: Int) throws {
        let length = value.utf8.count
        guard length <= maxBytes else { throw StoreError.invalidInput("\(what) is \(length) bytes long, at most \(maxBytes)") }
        guard value.unicodeScalars.allSatisfy(isPrintable) else {
            throw StoreError.invalidInput("\(what) holds a control character or line break")
        }
    }

    static func isModelIDByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"): true
        case UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: ":"), UInt8(ascii: "/"), UInt8(ascii: "@"), UInt8(ascii: "+"), UInt8(ascii: "-"): true
        default: false
        }
    }

    static func isPrintable(_ s: Unicode.Scalar) -> Bool {
        switch s.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator, .surrogate, .unassigned, .privateUse: false
        default: true
        }
    }
}
